// The newest upload state the gateway relayed for each session, so that an old upload URL is answered from the session's real offset instead of reaching the registry.
import type { IncomingMessage } from 'node:http'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { declaredRange, hasBody } from '../forward/forward.js'
import { sessionFromLocation, sessionRequest } from './token.js'
import { targetOf, type SignedTarget } from './session.js'
import { stateOffset } from './state.js'
import { BoundedCache } from '../lib/bounded-cache.js'

/**
 * Sessions remembered at once; the oldest is forgotten first. An entry is a few hundred bytes, and
 * a forgotten session only loses the stale-URL answers below (the registry's own behaviour).
 */
export const MAX_TRACKED_UPLOADS = 10_000

export interface KnownState {
  /** The upstream's newest `_state` for the session. */
  state: string
  /** Bytes the upstream holds, from that state. */
  offset: number
}

/** What to do with a request on an upload URL. */
export type StaleCheck =
  | { kind: 'as-is' }
  /** The client's URL was stale: the same request on the newest state. */
  | { kind: 'freshened'; request: RegistryRequest; latest: KnownState }
  /** A chunk that does not start at the real offset (a re-sent or out-of-order chunk): 416. */
  | { kind: 'refused'; latest: KnownState }

/**
 * registry 2.8 cancels an upload session when a request carries a `_state` whose offset is not the
 * session's size (blobupload.go: "upload resumed at wrong offset"), so a client that re-sends its
 * previous chunk, or asks for the status on an earlier URL, loses the whole upload. The gateway
 * relays every answer with a new state, so it knows the newest one and never forwards an older one.
 */
export class UploadOffsets {
  // Order is that of the newest state noted (reads peek): the session quiet the longest is forgotten first.
  private readonly sessions: BoundedCache<string, KnownState>

  constructor(max = MAX_TRACKED_UPLOADS) {
    this.sessions = new BoundedCache({ max })
  }

  get size(): number {
    return this.sessions.size
  }

  /** Records the state in an upload Location the upstream answered with. */
  note(upstream: string, location: string): void {
    const found = sessionFromLocation(upstream, location)
    const state = found?.session.state
    const offset = stateOffset(state)
    if (!found || state === undefined || offset === undefined) return
    const key = keyOf(upstream, found.repository, found.session.uuid)
    const known = this.sessions.peek(key)
    // Answers can arrive out of order (a status GET racing a PATCH): offsets only grow.
    if (known && known.offset > offset) return
    this.sessions.set(key, { state, offset })
  }

  /** The session is finished or cancelled: nothing to remember. */
  forget(upstream: string, request: RegistryRequest): void {
    if (request.repository !== undefined && request.uploadId !== undefined) this.sessions.delete(keyOf(upstream, request.repository, request.uploadId))
  }

  /** Decides how a request on an upload URL (as the upstream would see it) goes on. */
  check(upstream: string, request: RegistryRequest, req: IncomingMessage): StaleCheck {
    if (request.repository === undefined || request.uploadId === undefined) return { kind: 'as-is' }
    const latest = this.sessions.peek(keyOf(upstream, request.repository, request.uploadId))
    const offset = stateOffset(request.params.get('_state'))
    if (!latest || offset === undefined || offset >= latest.offset) return { kind: 'as-is' }
    const writes = request.op === 'upload.chunk' || (request.op === 'upload.finish' && hasBody(req))
    if (writes) {
      // Only a chunk that says it starts where the session really ends may continue from an old URL;
      // without Content-Range it could be the previous chunk again.
      const range = declaredRange(req)
      if (!range || range.start !== latest.offset) return { kind: 'refused', latest }
    }
    return { kind: 'freshened', request: sessionRequest(request, { upstream, uuid: request.uploadId, state: latest.state }), latest }
  }
}

/** What to do with a request on a mirrored upload URL: its sessions on their newest states, or 416. */
export type MirrorCheck =
  | { kind: 'go-on'; sessions: SignedTarget[] }
  /** The write does not start where the sessions end; `sessions` are the newest ones, to continue from. */
  | { kind: 'refused'; latest: KnownState; sessions: SignedTarget[] }

/**
 * The mirror's sessions (one per upstream, all in one signed URL) checked one by one: a stale
 * `_state` is replaced by the newest one relayed, and a chunk that does not start where the
 * sessions end is refused before any upstream sees it (registry 2.8 would cancel its session).
 */
export function checkMirrored(offsets: UploadOffsets, request: RegistryRequest, sessions: SignedTarget[], req: IncomingMessage): MirrorCheck {
  const repository = request.repository ?? ''
  let refused: KnownState | undefined
  const newest = sessions.map((target) => {
    const decision = offsets.check(target.upstream.name, sessionRequest(request, target.session), req)
    if (decision.kind === 'as-is') return target
    if (decision.kind === 'refused') refused ??= decision.latest
    return targetOf(target.upstream, repository, { ...target.session, state: decision.latest.state })
  })
  return refused ? { kind: 'refused', latest: refused, sessions: newest } : { kind: 'go-on', sessions: newest }
}

/** 416 with the session's real extent and the URL to continue from. */
export function rangeNotSatisfiable(request: RegistryRequest, latest: KnownState, location: string, contentRange: string | undefined): RegistryError {
  return new RegistryError(
    'RANGE_INVALID',
    { stored: latest.offset, ...(contentRange !== undefined ? { range: contentRange } : {}), reason: 'the chunk does not start where the upload ends' },
    { Range: `0-${Math.max(latest.offset - 1, 0)}`, Location: location, 'Docker-Upload-UUID': request.uploadId ?? '' },
  )
}

function keyOf(upstream: string, repository: string, uuid: string): string {
  return `${upstream}\n${repository}\n${uuid}`
}
