// One client upload request, resolved once: the upstream session(s) it continues, their offset, its Content-Range and size limit; and chunk, finish and cancel over one or N upstreams.
import type { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import { RegistryError } from '../registry/errors.js'
import type { RegistryRequest } from '../registry/classify.js'
import { isValidDigest } from '../registry/names.js'
import { LimitExceeded } from '../pipeline/limits.js'
import { FanOut } from '../forward/fanout.js'
import type { BodyKind, Exchange, RouteContext, UpstreamResponse } from '../forward/forward.js'
import { upstreamFailure } from '../forward/failure.js'
import type { Headers } from '../forward/headers.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { sessionFromLocation, sessionPath, type UpstreamSession } from './token.js'
import { stateOffset, UPLOAD_QUEUE_BYTES, UploadBody } from './state.js'

export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true
  const length = req.headers['content-length']
  return length !== undefined && length !== '0'
}

export function declaredLength(req: IncomingMessage): number | undefined {
  const length = req.headers['content-length']
  if (length === undefined || !/^\d+$/.test(length)) return undefined
  return Number(length)
}

/** Content-Range of a chunk: "start-end" (inclusive), as distribution defines it for PATCH. */
export function declaredRange(req: IncomingMessage): { start: number; end: number } | undefined {
  const value = req.headers['content-range']
  const match = value ? /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(value.trim()) : null
  if (!match) return undefined
  return { start: Number(match[1]), end: Number(match[2]) }
}

export function tooLarge(error: LimitExceeded): RegistryError {
  return new RegistryError(
    'TOO_LARGE',
    { limit: error.limit.name, max_bytes: error.limit.maxBytes, bytes: error.bytes },
    {},
    error.message,
  )
}

/** Path and query of a Location the upstream returned (absolute or relative). */
export function upstreamPath(location: string, upstream: Upstream): string {
  const url = new URL(location, `${upstream.origin}/`)
  return `${url.pathname}${url.search}`
}

export function withParam(path: string, name: string, value: string | undefined): string {
  const url = new URL(path, 'http://upstream.invalid')
  if (value === undefined) url.searchParams.delete(name)
  else url.searchParams.set(name, value)
  return `${url.pathname}${url.search}`
}

/** What an upload write asks for, checked before anything is sent upstream. */
export interface UploadWriteShape {
  length: number | undefined
  range: { start: number; end: number } | undefined
  /** The client means to finish the upload with this request (PUT ?digest=, monolithic POST). */
  finishing: boolean
  digest: string | undefined
}

export function uploadWriteShape(request: RegistryRequest, req: IncomingMessage): UploadWriteShape {
  const length = declaredLength(req)
  const range = request.op === 'upload.chunk' ? declaredRange(req) : undefined
  const finishing = request.op !== 'upload.chunk'
  const digest = request.op === 'upload.monolithic' ? request.reference : request.params.get('digest') ?? undefined
  if (finishing && (digest === undefined || !isValidDigest(digest))) {
    throw new RegistryError('DIGEST_INVALID', { digest: digest ?? null }, {}, 'digest missing or invalid')
  }
  if (range && range.end < range.start) throw new RegistryError('RANGE_INVALID', { range: req.headers['content-range'] })
  if (range && length !== undefined && range.end - range.start + 1 !== length) {
    throw new RegistryError('SIZE_INVALID', { range: req.headers['content-range'], length }, {}, 'Content-Range does not match Content-Length')
  }
  return { length, range, finishing, digest }
}

/** One upstream's part of an upload: the upstream, its session as its Location named it, and the path that reaches it. */
export interface UploadTarget {
  upstream: Upstream
  /** The upstream's own path and query for the session, without `digest`. */
  path: string
  /** UUID and `_state`; undefined when the upstream's Location is not a distribution upload URL. */
  session?: UpstreamSession
}

/** A target whose session is a distribution upload URL of the client's repository (what signed upload URLs carry). */
export type SignedTarget = UploadTarget & { session: UpstreamSession }

/** What one upstream answered to one step of the upload, or the error that kept it from answering. */
export interface UpstreamOutcome {
  upstream: Upstream
  response?: UpstreamResponse
  error?: unknown
}

/** A step's outcome on one of the upload's targets. */
export interface StepOutcome extends UpstreamOutcome {
  target: UploadTarget
}

/** The upstream calls an upload makes (the Forwarder provides them). */
export interface UploadCalls {
  send(exchange: Exchange, method: string, path: string, body: Readable | Buffer | null, kind: BodyKind, signal?: AbortSignal, extraHeaders?: Headers): Promise<UpstreamResponse>
  /** Best effort: asks the upstream to drop a session; failures are reported, never thrown. */
  cancelUpload(exchange: Exchange, path: string): Promise<void>
}

/** A target for a session named by a signed upload URL (or an upstream's Location). */
export function targetOf(upstream: Upstream, repository: string, session: UpstreamSession): SignedTarget {
  return { upstream, session, path: sessionPath(repository, session) }
}

/** Status endpoint's "0-<last>" as the number of bytes stored ("0-0" is what distribution reports for an empty session). */
function storedFromRange(range: unknown): number {
  const match = typeof range === 'string' ? /^(?:bytes=)?0-(\d+)$/.exec(range) : null
  return match && Number(match[1]) > 0 ? Number(match[1]) + 1 : 0
}

/**
 * The client's upload request, over the upstream session(s) it continues (one, or one per mirror).
 * Its `_state` gives the offset the upstreams hold; with the Content-Range and the size limit that
 * decides, before any byte is sent, whether the write may go on. The steps (`chunk`, `finish`,
 * `cancel`) run on every target at once and return each one's outcome: a single upstream's answer
 * is relayed by the forwarder, several are weighed by the mirror's quorum.
 */
export class UploadSession {
  private shapeOf: UploadWriteShape | undefined

  constructor(
    private readonly calls: UploadCalls,
    readonly context: RouteContext,
    /** The sessions this request continues, in the order the client's URL names them. */
    public targets: UploadTarget[],
  ) {}

  /** The session the client's own URL names on a single upstream (the registry's UUID, `_state` and any other query). */
  static fromUrl(calls: UploadCalls, context: RouteContext, upstream: Upstream): UploadSession {
    const { request } = context
    const state = request.params.get('_state')
    const session: UpstreamSession = { upstream: upstream.name, uuid: request.uploadId ?? '', ...(state !== null ? { state } : {}) }
    const path = withParam(request.query ? `${request.path}?${request.query}` : request.path, 'digest', undefined)
    return new UploadSession(calls, context, [{ upstream, session, path }])
  }

  get request(): RegistryRequest {
    return this.context.request
  }

  /** Length, Content-Range, whether the client finishes, and the digest; a malformed write is refused before anything is sent. */
  get shape(): UploadWriteShape {
    this.shapeOf ??= uploadWriteShape(this.context.request, this.context.req)
    return this.shapeOf
  }

  /** Bytes the upstreams hold, from the first session's `_state`; undefined when it carries none. */
  get offset(): number | undefined {
    return stateOffset(this.targets[0]?.session?.state)
  }

  /** A new upload's whole body (monolithic) checked against the limit by its declared length, before a session is opened. */
  admitNew(): void {
    const { limit } = this.context
    const { length } = this.shape
    if (limit && length !== undefined && length > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, length, true))
  }

  /**
   * Checks a write into the sessions before any byte is sent, and answers how many bytes they
   * already hold. Past the limit (the chunk's declared end, or what is stored plus its length) the
   * sessions are cancelled and the client gets 413. A Content-Range that does not start at the
   * stored offset is 416: registry 2.8 ignores Content-Range and would append the chunk where it does not belong.
   */
  async admit(): Promise<number> {
    const { limit, req } = this.context
    const { range, length } = this.shape
    const offset = this.offset
    let stored = 0
    if (limit) {
      stored = offset ?? range?.start ?? (await this.storedOnUpstream())
      if (range && range.end + 1 > limit.maxBytes) await this.refuse(new LimitExceeded(limit, range.end + 1, true))
      if (length !== undefined && stored + length > limit.maxBytes) await this.refuse(new LimitExceeded(limit, stored + length, true))
    }
    if (range && offset !== undefined && range.start !== offset) {
      throw new RegistryError('RANGE_INVALID', { range: req.headers['content-range'], stored: offset }, { Range: `0-${Math.max(offset - 1, 0)}` })
    }
    return stored
  }

  /** The client's body on its way upstream, counted against the limit across all chunks of the session. */
  body(stored: number): UploadBody {
    return new UploadBody(this.context.req, this.context.limit, stored)
  }

  /**
   * Opens a fresh session on each upstream (`POST` with no digest): a monolithic upload goes
   * through a session of the gateway's own, so its bytes are counted and it can be cancelled.
   */
  async open(upstreams: Upstream[]): Promise<UpstreamOutcome[]> {
    const path = `/v2/${this.request.repository ?? ''}/blobs/uploads/`
    return await Promise.all(
      upstreams.map(async (upstream) => {
        try {
          return { upstream, response: await this.calls.send(this.exchange(upstream), 'POST', path, null, 'none') }
        } catch (error) {
          return { upstream, error }
        }
      }),
    )
  }

  /**
   * Streams the body as one PATCH to every target (one read of the client's body; the slowest
   * upstream sets the pace). Finishing requests become a PATCH of the same bytes: the registry
   * only accepts octet-stream there, and `finish` commits them.
   */
  async chunk(body: UploadBody, finishing: boolean, targets: UploadTarget[] = this.targets): Promise<StepOutcome[]> {
    const headers: Headers = finishing ? { 'content-type': 'application/octet-stream' } : {}
    const kind: BodyKind = finishing ? 'none' : 'stream'
    try {
      const [only] = targets
      if (only && targets.length === 1) {
        const target = only
        try {
          return [{ target, upstream: target.upstream, response: await this.calls.send(this.exchange(target.upstream), 'PATCH', target.path, body, kind, undefined, headers) }]
        } catch (error) {
          return [{ target, upstream: target.upstream, error }]
        }
      }
      const fan = new FanOut(body, targets.length, UPLOAD_QUEUE_BYTES)
      const branches = targets.flatMap((target, index) => {
        const branch = fan.branches[index]
        return branch ? [{ target, branch, index }] : []
      })
      return await Promise.all(
        branches.map(async ({ target, branch, index }): Promise<StepOutcome> => {
          try {
            const response = await this.calls.send(this.exchange(target.upstream), 'PATCH', target.path, branch, kind, undefined, headers)
            // An upstream that answered no longer reads; if it answered early, the others must not wait for it.
            fan.drop(index)
            return { target, upstream: target.upstream, response }
          } catch (error) {
            fan.drop(index)
            return { target, upstream: target.upstream, error }
          }
        }),
      )
    } finally {
      this.context.bytes.received += body.bytes
    }
  }

  /** Commits what each target holds: `PUT ?digest=` with no body. */
  async finish(targets: UploadTarget[], digest: string): Promise<StepOutcome[]> {
    return await Promise.all(
      targets.map(async (target): Promise<StepOutcome> => {
        try {
          return { target, upstream: target.upstream, response: await this.calls.send(this.exchange(target.upstream), 'PUT', withParam(target.path, 'digest', digest), null, 'none') }
        } catch (error) {
          return { target, upstream: target.upstream, error }
        }
      }),
    )
  }

  /** Drops the sessions upstream (best effort), so nothing half-written stays. */
  async cancel(targets: UploadTarget[] = this.targets): Promise<void> {
    await Promise.all(targets.map((target) => this.calls.cancelUpload(this.exchange(target.upstream), target.path)))
  }

  /**
   * The session an upstream continues with after a step (its 202's Location), or undefined when it
   * gave none. Any Location will do for a single upstream's own URLs; `signed` takes only an upload
   * URL of this repository (the mirror and by-repository sign its session into the client's URL).
   */
  next(upstream: Upstream, status: number | undefined, location: unknown): UploadTarget | undefined {
    if (status !== 202 || typeof location !== 'string') return undefined
    return this.signed(upstream, status, location) ?? { upstream, path: upstreamPath(location, upstream) }
  }

  signed(upstream: Upstream, status: number | undefined, location: unknown): SignedTarget | undefined {
    if (status !== 202 || typeof location !== 'string') return undefined
    const found = sessionFromLocation(upstream.name, location)
    if (!found || found.repository !== this.request.repository) return undefined
    return { upstream, session: found.session, path: upstreamPath(location, upstream) }
  }

  /** Bytes the first upstream holds for its session, from its status endpoint (when the URL carries no `_state` offset). */
  private async storedOnUpstream(): Promise<number> {
    const target = this.targets[0]
    if (!target) return 0
    const response = await this.calls.send(this.exchange(target.upstream), 'GET', target.path, null, 'none').catch((error: unknown) => {
      throw upstreamFailure(error, target.upstream)
    })
    response.body.on('error', () => undefined)
    response.body.resume()
    return storedFromRange(response.headers.range)
  }

  /** Refuses an oversized write before any of it is sent: cancels the sessions upstream, then answers 413. */
  private async refuse(error: LimitExceeded): Promise<never> {
    await this.cancel()
    throw tooLarge(error)
  }

  private exchange(upstream: Upstream): Exchange {
    return { ...this.context, upstream }
  }
}
