// Answers blob upload requests from a session Portier holds in the upstream's storage (upstreams[].storage_uploads), with registry 2.8's statuses and headers; the registry's own sessions and mounts stay the registry's.
import type { ServerResponse } from 'node:http'
import type { ExchangeResult, RouteContext } from '../forward/forward.js'
import { LimitExceeded } from '../pipeline/limits.js'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { hasBody, tooLarge, uploadWriteShape } from '../uploads/session.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { StorageUploads, uploadPlace, WriteStopped, type UploadPlace } from './upload-store.js'

/** What uploads into storage did, for metrics and the log. */
export interface UploadServerEvents {
  /** A request on a session held in storage was answered with this status. */
  answered?(upstream: string, status: number): void
  /** Body bytes written into storage. */
  bytes?(upstream: string, count: number): void
}

/** Turns the session's Location at the gateway into the URL the client continues with (routing's signer). */
export type LocationSigner = (location: string, upstream: Upstream) => string

/** What the router learns of an upload answered here: the blob's size when one was committed (events, audit, access log). */
export interface UploadOutcome extends ExchangeResult {
  blobBytes?: number
}

const API_VERSION = { 'Docker-Distribution-Api-Version': 'registry/2.0' } as const

export function isStorageUpload(upstream: Upstream, request: RegistryRequest): boolean {
  if (upstream.storageUploads !== true || upstream.storage === undefined || request.repository === undefined) return false
  switch (request.op) {
    case 'upload.start':
    case 'upload.monolithic':
    case 'upload.status':
    case 'upload.chunk':
    case 'upload.finish':
    case 'upload.cancel':
      return true
    default:
      return false
  }
}

export class UploadServer {
  constructor(
    readonly store: StorageUploads,
    private readonly events: UploadServerEvents = {},
  ) {}

  /**
   * Answers the request when it opens a session (POST) or continues one Portier holds in storage;
   * resolves undefined, nothing sent, when the registry must answer: a session of the registry's
   * own (its URL carries `_state`), or a request that is not an upload. Throws RegistryError before
   * anything is sent.
   */
  async serve(upstream: Upstream, context: RouteContext, sign: LocationSigner | undefined, claim?: (served: string) => void): Promise<UploadOutcome | undefined> {
    const { request } = context
    const root = upstream.storage
    const repository = request.repository
    if (root === undefined || repository === undefined || !isStorageUpload(upstream, request)) return undefined
    const answer = async (): Promise<UploadOutcome> => {
      // A `POST ?digest=` without a body opens a session, as registry 2.8 answers it (and Portier relaying it).
      if (request.op === 'upload.start' || (request.op === 'upload.monolithic' && !hasBody(context.req))) return await this.start(upstream, root, repository, context, sign)
      if (request.op === 'upload.monolithic') return await this.monolithic(upstream, root, repository, context)
      return await this.continued(upstream, uploadPlace(root, repository, request.uploadId ?? ''), context, sign, held)
    }
    // A registry session (from before storage_uploads, or relayed) is the registry's to answer.
    const held = heldState(request.params.get('_state'))
    if (request.uploadId !== undefined && held === undefined) return undefined
    const served = `storage:${upstream.name}`
    // Portier's own answers, errors included, are the storage's in the access log.
    claim?.(served)
    try {
      const outcome = await answer()
      this.events.answered?.(upstream.name, outcome.status)
      return { ...outcome, served }
    } catch (error) {
      const answered = storageError(error)
      this.events.answered?.(upstream.name, answered.status)
      throw answered
    }
  }

  /** `POST /blobs/uploads/`: a new, empty session. */
  private async start(upstream: Upstream, root: string, repository: string, context: RouteContext, sign: LocationSigner | undefined): Promise<UploadOutcome> {
    context.req.resume()
    const place = await this.store.create(root, repository)
    this.progress(context.res, 202, place, 0, context, upstream, sign)
    return { status: 202 }
  }

  /** `POST /blobs/uploads/?digest=` with the whole blob: a session of its own, written and committed, or removed. */
  private async monolithic(upstream: Upstream, root: string, repository: string, context: RouteContext): Promise<UploadOutcome> {
    const { limit } = context
    const { length, digest } = uploadWriteShape(context.request, context.req)
    if (limit && length !== undefined && length > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, length, true))
    const place = await this.store.create(root, repository)
    try {
      const written = await this.write(upstream, place, 0, context)
      if (written === 'client') {
        await this.store.cancel(place)
        return { status: 499 }
      }
      return await this.commit(place, digest as string, context)
    } catch (error) {
      await this.store.cancel(place)
      throw error
    }
  }

  /** PATCH, PUT, GET and DELETE on a session's URL. */
  private async continued(upstream: Upstream, place: UploadPlace | undefined, context: RouteContext, sign: LocationSigner | undefined, held: HeldState | undefined): Promise<UploadOutcome> {
    const { request, req, res } = context
    const stored = place === undefined ? undefined : await this.store.size(place)
    if (place === undefined || stored === undefined) {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { uuid: request.uploadId })
    }
    switch (request.op) {
      case 'upload.status':
        req.resume()
        this.progress(res, 204, place, stored, context, upstream, sign)
        return { status: 204 }
      case 'upload.cancel':
        req.resume()
        await this.store.cancel(place)
        res.writeHead(204, { ...API_VERSION, 'Content-Length': 0 })
        res.end()
        return { status: 204 }
      default:
        // PATCH, and PUT ?digest= with the last bytes or none.
        return await this.written(upstream, place, context, sign, held)
    }
  }

  /**
   * A write or a commit holds the session's lock (across workers and instances) and reads the size
   * again under it: a commit never runs while bytes are still being written, nor two writes at once.
   */
  private async written(upstream: Upstream, place: UploadPlace, context: RouteContext, sign: LocationSigner | undefined, held: HeldState | undefined): Promise<UploadOutcome> {
    const { request, req, res } = context
    const finishing = request.op === 'upload.finish'
    const digest = finishing ? uploadWriteShape(request, req).digest : undefined
    const lock = await this.store.lock(place)
    if (lock === undefined) throw new RegistryError('BLOB_UPLOAD_INVALID', { uuid: place.uuid }, {}, 'another request is writing to this upload')
    let size: number
    try {
      const stored = await this.store.size(place)
      if (stored === undefined) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { uuid: place.uuid })
      this.checkOffset(place, stored, held, context, upstream, sign)
      size = stored
      if (!finishing || hasBody(req)) {
        const written = await this.append(upstream, place, stored, context, sign)
        if (written === 'client') return { status: 499 }
        size = written
      } else {
        req.resume()
      }
      if (finishing) return await this.commit(place, digest as string, context)
    } finally {
      await lock.release()
    }
    // Answered once the lock is gone: a client sends its next chunk or its PUT as soon as it reads the
    // 202, and that request must find the session free (it got 400 BLOB_UPLOAD_INVALID otherwise).
    this.progress(res, 202, place, size, context, upstream, sign)
    return { status: 202 }
  }

  /** Checks a write into a session before any byte is stored (Content-Range, the size limit), then writes it. Resolves the size the session holds after it. */
  private async append(upstream: Upstream, place: UploadPlace, stored: number, context: RouteContext, sign: LocationSigner | undefined): Promise<number | 'client'> {
    const { req, limit } = context
    const { range, length } = uploadWriteShape(context.request, req)
    // Registry 2.8 ignores Content-Range and appends; a chunk that does not start where the session ends would corrupt the blob.
    if (range && range.start !== stored) throw this.notSatisfiable(place, stored, context, upstream, sign, 'the chunk does not start where the upload ends')
    if (limit) {
      const declared = range ? range.end + 1 : length === undefined ? undefined : stored + length
      if (declared !== undefined && declared > limit.maxBytes) {
        await this.store.cancel(place)
        throw tooLarge(new LimitExceeded(limit, declared, true))
      }
    }
    if (!hasBody(req)) {
      req.resume()
      return stored
    }
    try {
      const written = await this.write(upstream, place, stored, context)
      return written === 'client' ? 'client' : stored + written
    } catch (error) {
      // Past the limit the session goes, as a relayed one does; the client is told 413.
      if (error instanceof RegistryError && error.code === 'TOO_LARGE') await this.store.cancel(place)
      throw error
    }
  }

  /** Streams the client's body into the session at `offset`; 'client' when the client left (the session is as before). */
  private async write(upstream: Upstream, place: UploadPlace, offset: number, context: RouteContext): Promise<number | 'client'> {
    const { req, limit } = context
    // Past the limit nothing more of the body is read: the gateway answers 413 and lingers on the rest.
    try {
      const written = await this.store.append(place, offset, req, (received) => {
        if (limit && offset + received > limit.maxBytes) throw new WriteStopped('limit', new LimitExceeded(limit, offset + received, false))
      })
      context.bytes.received += written
      this.events.bytes?.(upstream.name, written)
      return written
    } catch (error) {
      if (!(error instanceof WriteStopped)) throw error
      if (error.reason === 'client') return 'client'
      throw tooLarge(error.cause as LimitExceeded)
    }
  }

  /** Stores the session's bytes as the blob `digest` in the repository, or refuses them (the session is removed either way). */
  private async commit(place: UploadPlace, digest: string, context: RouteContext): Promise<UploadOutcome> {
    const committed = await this.store.commit(place, digest)
    if (committed.kind === 'unsupported') {
      await this.store.cancel(place)
      throw new RegistryError('DIGEST_INVALID', { digest }, {}, 'unsupported digest algorithm')
    }
    if (committed.kind === 'mismatch') throw new RegistryError('DIGEST_INVALID', { digest, actual: committed.actual })
    const { res, client } = context
    res.writeHead(201, {
      ...API_VERSION,
      'Content-Length': 0,
      'Docker-Content-Digest': digest,
      Location: `${client.publicOrigin}/v2/${place.repository}/blobs/${digest}`,
    })
    res.end()
    return { status: 201, blobBytes: committed.size }
  }

  /**
   * A write on a URL whose offset is not what the session holds (an old URL: a chunk sent again after
   * its answer was lost) is 416 with where the upload really is, as for a relayed session; otherwise
   * the bytes would be appended twice. A URL without Portier's `_state` is not checked.
   */
  private checkOffset(place: UploadPlace, stored: number, held: HeldState | undefined, context: RouteContext, upstream: Upstream, sign: LocationSigner | undefined): void {
    if (held?.offset !== undefined && held.offset !== stored) {
      throw this.notSatisfiable(place, stored, context, upstream, sign, 'the upload URL is not the latest one: the upload holds more (or less) than it says')
    }
  }

  private notSatisfiable(place: UploadPlace, stored: number, context: RouteContext, upstream: Upstream, sign: LocationSigner | undefined, reason: string): RegistryError {
    const range = context.req.headers['content-range']
    return new RegistryError(
      'RANGE_INVALID',
      { stored, ...(typeof range === 'string' ? { range } : {}), reason },
      { Range: rangeOf(stored), Location: this.location(place, stored, context, upstream, sign), 'Docker-Upload-UUID': place.uuid },
    )
  }

  /** A session's 202 or 204: where it continues, what it holds. */
  private progress(res: ServerResponse, status: 202 | 204, place: UploadPlace, stored: number, context: RouteContext, upstream: Upstream, sign: LocationSigner | undefined): void {
    res.writeHead(status, {
      ...API_VERSION,
      'Content-Length': 0,
      'Docker-Upload-UUID': place.uuid,
      Location: this.location(place, stored, context, upstream, sign),
      Range: rangeOf(stored),
    })
    res.end()
  }

  /** The session's URL at the gateway, with the size it holds in `_state` (signed by routing when it signs upload URLs). */
  private location(place: UploadPlace, stored: number, context: RouteContext, upstream: Upstream, sign: LocationSigner | undefined): string {
    const location = `${context.client.publicOrigin}/v2/${place.repository}/blobs/uploads/${place.uuid}?_state=${HELD_STATE_PREFIX}${stored}`
    return sign ? sign(location, upstream) : location
  }
}

/** How a session held in storage names its state in its URL: `_state=portier.<bytes held>` (a registry's `_state` is base64url, without a dot). */
const HELD_STATE_PREFIX = 'portier.'

interface HeldState {
  /** The bytes the session held when this URL was given out; undefined for a URL without `_state`. */
  offset?: number
}

/** A session URL's `_state` read as Portier's own, or undefined when it is the registry's. */
function heldState(state: string | null): HeldState | undefined {
  if (state === null) return {}
  if (!state.startsWith(HELD_STATE_PREFIX)) return undefined
  const digits = state.slice(HELD_STATE_PREFIX.length)
  return /^\d{1,15}$/.test(digits) ? { offset: Number(digits) } : undefined
}

/**
 * A file-system failure as the client hears it: a session removed meanwhile (a DELETE, the purger)
 * is unknown; anything else is a 500 whose cause (with the path) goes to the log, not to the client.
 */
function storageError(error: unknown): RegistryError {
  if (error instanceof RegistryError) return error
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT' || code === 'ENOTDIR') return new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, {}, undefined, { cause: error })
  return new RegistryError('INTERNAL', { reason: `storage error${code ? ` (${code})` : ''}` }, {}, undefined, { cause: error })
}

/** Registry 2.8's Range for a session: "0-<last byte>", "0-0" when empty. */
function rangeOf(stored: number): string {
  return `0-${Math.max(stored - 1, 0)}`
}
