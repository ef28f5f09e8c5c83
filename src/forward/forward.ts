// One exchange with an upstream registry: headers in, bodies streamed both ways, aborts propagated.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { RegistryError } from '../registry/errors.js'
import type { RegistryRequest } from '../registry/classify.js'
import { isValidDigest } from '../registry/names.js'
import { clientResponseHeaders, type ClientView, type Headers, upstreamRequestHeaders } from './headers.js'
import { ByteLimitStream, LimitExceeded, type SizeLimit } from '../pipeline/limits.js'
import { relayBody } from './relay-body.js'
import { stateOffset, UploadBody } from '../uploads/state.js'
import type { Upstream } from '../upstreams/upstreams.js'

export interface Exchange {
  request: RegistryRequest
  req: IncomingMessage
  res: ServerResponse
  client: ClientView
  upstream: Upstream
  limit: SizeLimit | undefined
  /** Rewrites a successful JSON response (small bodies only, e.g. the catalog filtered by ACL). */
  filterJson?: (body: unknown) => unknown
  /** Body bytes moved for this request, kept up to date while it runs (read after it ends, also on failure). */
  bytes: ByteCounts
  /** Routing: upstreams that may serve this read instead when `upstream` cannot be reached. */
  fallbacks?: Upstream[]
  /** Routing: a 404 sends the read on to the next fallback (a mirror may not hold everything everywhere). */
  nextOnNotFound?: boolean
  /** Routing: called when a read moves on to another upstream (then `upstream` is the new one). */
  onFailover?: (from: Upstream, to: Upstream, reason: FailoverReason) => void
  /** Routing: turns an upload Location (already pointing at the gateway) into the URL the client continues with. */
  uploadLocation?: (location: string, upstream: Upstream) => string
}

export type FailoverReason = 'connect' | 'not_found'

export interface ByteCounts {
  /** Request body bytes taken from the client and passed upstream. */
  received: number
  /** Response body bytes sent to the client. */
  sent: number
}

/** Largest JSON body the gateway reads to filter; registries page catalogs far below this. */
const MAX_FILTERED_BODY = 16 * 1024 * 1024

export interface ExchangeResult {
  status: number
  /** Set when the gateway cancelled an upstream upload session (limit, client abort). */
  cancelledUpload?: string
}

export type UpstreamResponse = Dispatcher.ResponseData

export const connectErrorCodes: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT',
])
/** Failures before any response header after which a read may be sent to another upstream (a kept-alive socket that died counts). */
const retryableReadCodes: ReadonlySet<string> = new Set([...connectErrorCodes, 'UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'])
/** What the gateway's own 502/503 answers suggest clients wait before trying again. */
export const RETRY_AFTER_SECONDS = '5'

function errorCode(error: unknown): string | undefined {
  const direct = (error as NodeJS.ErrnoException | undefined)?.code
  const cause = (error as { cause?: NodeJS.ErrnoException } | undefined)?.cause?.code
  if (direct && connectErrorCodes.has(direct)) return direct
  return cause && connectErrorCodes.has(cause) ? cause : direct ?? cause
}

/** Maps a failure to reach the upstream (before any response header) onto a registry error. */
export function upstreamFailure(error: unknown, upstream: Upstream): RegistryError {
  if (error instanceof RegistryError) return error
  const code = errorCode(error)
  const detail = { upstream: upstream.name, reason: code ?? (error instanceof Error ? error.message : String(error)) }
  if (code && connectErrorCodes.has(code)) {
    return new RegistryError('UNAVAILABLE', detail, { 'Retry-After': RETRY_AFTER_SECONDS }, 'upstream registry is unreachable')
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return new RegistryError('GATEWAY_TIMEOUT', detail)
  return new RegistryError('BAD_GATEWAY', detail, { 'Retry-After': RETRY_AFTER_SECONDS }, 'upstream registry failed before answering')
}

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

export function drain(response: UpstreamResponse): void {
  response.body.on('error', () => undefined)
  response.body.resume()
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

/** Which of the client's headers travel with a request the gateway makes. */
export type BodyKind = 'client' | 'none' | 'stream'

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

export class Forwarder {
  constructor(private readonly onCancelError: (error: unknown, path: string) => void) {}

  /** Streams one client request to the upstream and the answer back. Throws RegistryError before headers are sent. */
  async forward(exchange: Exchange): Promise<ExchangeResult> {
    const { request, req, res } = exchange
    if (isUploadWrite(request) && hasBody(req)) return await this.uploadWrite(exchange)

    const controller = new AbortController()
    let responded = false
    let limiter: ByteLimitStream | undefined
    const onClose = (): void => {
      if (!res.writableFinished) controller.abort(new Error('client closed the connection'))
    }
    res.on('close', onClose)
    try {
      const prepared = this.prepareBody(exchange)
      const body = prepared.body
      limiter = prepared.limiter
      const path = pathOf(request)
      let response: UpstreamResponse
      try {
        response = await this.sendOrFailOver(exchange, request.method, path, body, controller.signal)
      } catch (error) {
        const exceeded = limiter?.errored instanceof LimitExceeded ? limiter.errored : error instanceof LimitExceeded ? error : undefined
        if (exceeded) throw tooLarge(exceeded)
        // The client left before the upstream answered: nothing failed upstream, and nobody is there to answer.
        if (controller.signal.aborted && request.op !== 'upload.finish') return { status: 499 }
        throw upstreamFailure(error, exchange.upstream)
      }
      responded = true
      await this.relay(exchange, response)
      return { status: response.statusCode }
    } catch (error) {
      if (!responded && controller.signal.aborted && request.op === 'upload.finish') {
        await this.cancelUpload(exchange, pathOf(request))
        return { status: 499, cancelledUpload: pathOf(request) }
      }
      throw error
    } finally {
      res.off('close', onClose)
      if (limiter) exchange.bytes.received += limiter.bytes
    }
  }

  /**
   * Sends the client's request. A read (no body) that cannot reach its upstream, or with
   * `nextOnNotFound` finds nothing there, moves on to the next fallback: nothing has reached the
   * client yet, so the client only ever sees one answer.
   */
  private async sendOrFailOver(exchange: Exchange, method: string, path: string, body: Readable | null, signal: AbortSignal): Promise<UpstreamResponse> {
    const fallbacks = body === null && (method === 'GET' || method === 'HEAD') ? [...(exchange.fallbacks ?? [])] : []
    for (;;) {
      let response: UpstreamResponse
      try {
        response = await this.send(exchange, method, path, body, 'client', signal)
      } catch (error) {
        const next = fallbacks.shift()
        const code = errorCode(error)
        if (next === undefined || signal.aborted || code === undefined || !retryableReadCodes.has(code)) throw error
        exchange.onFailover?.(exchange.upstream, next, 'connect')
        exchange.upstream = next
        continue
      }
      const next = response.statusCode === 404 && exchange.nextOnNotFound ? fallbacks.shift() : undefined
      if (next === undefined) return response
      drain(response)
      exchange.onFailover?.(exchange.upstream, next, 'not_found')
      exchange.upstream = next
    }
  }

  /** Requests that are not upload writes: a declared size is checked up front, a streamed one counted. */
  private prepareBody(exchange: Exchange): { body: Readable | null; limiter?: ByteLimitStream } {
    const { request, req, limit } = exchange
    if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'DELETE') {
      req.resume() // a body on these methods means nothing to a registry: discard it
      return { body: null }
    }
    if (!hasBody(req)) return { body: null }
    const length = declaredLength(req)
    if (limit && length !== undefined && length > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, length, true))
    const limiter = new ByteLimitStream(limit, 0)
    // The limit's error is read from limiter.errored; undici lets go of the body's errors once it has an answer.
    limiter.on('error', () => undefined)
    req.on('error', (error) => limiter.destroy(error))
    return { body: req.pipe(limiter), limiter }
  }

  /**
   * Every request that carries blob bytes into an upload session (PATCH, PUT ?digest= with a body,
   * monolithic POST ?digest=) is sent upstream as one streamed PATCH, followed by an empty
   * `PUT ?digest=` when the client meant to finish. That one shape gives the gateway what it needs:
   * registry:2 ignores the body of `POST ?digest=`; the size limit counts bytes across all chunks
   * of a session; and when the limit is crossed, the client aborts or the digest does not match,
   * the PATCH still ends cleanly with a fresh session state, so the session can be cancelled.
   */
  private async uploadWrite(exchange: Exchange): Promise<ExchangeResult> {
    const { request, req, limit } = exchange
    const { length, range, finishing, digest } = uploadWriteShape(request, req)

    let sessionPath: string
    let alreadyStored = 0
    const ownSession = request.op === 'upload.monolithic'
    if (ownSession) {
      if (limit && length !== undefined && length > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, length, true))
      const started = await this.send(exchange, 'POST', request.path, null, 'none').catch((error: unknown) => {
        throw upstreamFailure(error, exchange.upstream)
      })
      const location = started.headers.location
      if (started.statusCode !== 202 || typeof location !== 'string') {
        req.resume()
        await this.relay(exchange, started)
        return { status: started.statusCode }
      }
      drain(started)
      sessionPath = upstreamPath(location, exchange.upstream)
    } else {
      sessionPath = withParam(pathOf(request), 'digest', undefined)
      const offset = stateOffset(request.params.get('_state'))
      if (limit) {
        alreadyStored = offset ?? range?.start ?? (await this.uploadedSoFar(exchange))
        if (range && range.end + 1 > limit.maxBytes) await this.reject(exchange, sessionPath, new LimitExceeded(limit, range.end + 1, true))
        if (length !== undefined && alreadyStored + length > limit.maxBytes) {
          await this.reject(exchange, sessionPath, new LimitExceeded(limit, alreadyStored + length, true))
        }
      }
      // registry 2.8 ignores Content-Range and would append an out-of-order chunk where it does not belong.
      if (range && offset !== undefined && range.start !== offset) {
        throw new RegistryError('RANGE_INVALID', { range: req.headers['content-range'], stored: offset }, { Range: `0-${Math.max(offset - 1, 0)}` })
      }
    }

    const body = new UploadBody(req, limit, alreadyStored)
    try {
      return await this.sendUploadBody(exchange, body, { sessionPath, ownSession, finishing, digest })
    } finally {
      exchange.bytes.received += body.bytes
    }
  }

  /** Streams the upload body as one PATCH, then finishes the session when the client meant to. */
  private async sendUploadBody(
    exchange: Exchange,
    body: UploadBody,
    session: { sessionPath: string; ownSession: boolean; finishing: boolean; digest: string | undefined },
  ): Promise<ExchangeResult> {
    const { sessionPath, ownSession, finishing, digest } = session
    let patched: UpstreamResponse
    try {
      // Finishing requests become a PATCH of the same bytes: the registry only accepts octet-stream there.
      const headers: Headers = finishing ? { 'content-type': 'application/octet-stream' } : {}
      patched = await this.send(exchange, 'PATCH', sessionPath, body, finishing ? 'none' : 'stream', undefined, headers)
    } catch (error) {
      body.destroy()
      if (ownSession) await this.cancelUpload(exchange, sessionPath)
      if (body.stopped === 'client') return { status: 499 }
      throw upstreamFailure(error, exchange.upstream)
    }
    body.release()
    const location = patched.headers.location
    const next = patched.statusCode === 202 && typeof location === 'string' ? upstreamPath(location, exchange.upstream) : undefined

    if (body.stopped) {
      drain(patched)
      const cancelled = next ?? sessionPath
      await this.cancelUpload(exchange, cancelled)
      if (body.stopped === 'limit' && body.exceeded) throw tooLarge(body.exceeded)
      return { status: 499, cancelledUpload: cancelled }
    }
    if (next === undefined) {
      // The upstream refused the bytes: its answer is the client's answer.
      if (ownSession) await this.cancelUpload(exchange, sessionPath)
      await this.relay(exchange, patched)
      return { status: patched.statusCode }
    }
    if (!finishing) {
      await this.relay(exchange, patched)
      return { status: patched.statusCode }
    }

    drain(patched)
    let finished: UpstreamResponse
    try {
      finished = await this.send(exchange, 'PUT', withParam(next, 'digest', digest), null, 'none')
    } catch (error) {
      await this.cancelUpload(exchange, next)
      throw upstreamFailure(error, exchange.upstream)
    }
    // registry 2.8 cannot cancel a session whose commit failed (digest mismatch): the fresh state can.
    if (finished.statusCode >= 400) await this.cancelUpload(exchange, next)
    await this.relay(exchange, finished)
    return { status: finished.statusCode }
  }

  /** Rejects an oversized body before any of it is sent: cancels the upload session upstream, then answers 413. */
  private async reject(exchange: Exchange, sessionPath: string, error: LimitExceeded): Promise<never> {
    await this.cancelUpload(exchange, sessionPath)
    throw tooLarge(error)
  }

  /** Bytes the upstream already holds for this upload session, from its status endpoint. */
  async uploadedSoFar(exchange: Exchange): Promise<number> {
    try {
      const response = await this.send(exchange, 'GET', withParam(pathOf(exchange.request), 'digest', undefined), null, 'none')
      drain(response)
      const range = response.headers.range
      const match = typeof range === 'string' ? /^(?:bytes=)?0-(\d+)$/.exec(range) : null
      // "0-0" is what distribution reports for an empty session.
      return match && Number(match[1]) > 0 ? Number(match[1]) + 1 : 0
    } catch (error) {
      throw upstreamFailure(error, exchange.upstream)
    }
  }

  send(
    exchange: Exchange,
    method: string,
    path: string,
    body: Readable | Buffer | null,
    kind: BodyKind,
    signal?: AbortSignal,
    extraHeaders: Headers = {},
  ): Promise<UpstreamResponse> {
    const headers = upstreamRequestHeaders(exchange.req.headers, exchange.client)
    // The client's credentials are for the gateway: the upstream gets its own, or the client's only when configured.
    if (!exchange.upstream.forwardAuthorization) delete headers.authorization
    if (exchange.upstream.authorization) headers.authorization = exchange.upstream.authorization
    if (kind !== 'client') {
      // The gateway's own request: the client's framing headers describe a different body.
      delete headers['content-length']
      if (kind === 'none') {
        delete headers['content-type']
        delete headers['content-range']
        if (body === null && (method === 'PUT' || method === 'POST' || method === 'PATCH')) headers['content-length'] = '0'
      }
    }
    Object.assign(headers, extraHeaders)
    const options: Dispatcher.RequestOptions = {
      origin: exchange.upstream.origin,
      method: method as Dispatcher.HttpMethod,
      path,
      headers,
      body,
      highWaterMark: 1 << 20,
      // undici closes the connection after every HEAD (for servers that wrongly send a body);
      // registries do not, and docker checks blobs and manifests with HEAD all the time.
      reset: false,
    }
    if (signal) options.signal = signal
    return exchange.upstream.pool.request(options)
  }

  /** Writes the upstream's status and headers, then streams its body with backpressure. */
  async relay(exchange: Exchange, response: UpstreamResponse): Promise<void> {
    const { res, client, upstream } = exchange
    const headers = clientResponseHeaders(response.headers, response.statusCode, upstream.origin, client)
    if (exchange.uploadLocation && typeof headers.location === 'string') headers.location = exchange.uploadLocation(headers.location, upstream)
    if (exchange.filterJson && response.statusCode === 200) {
      const body = Buffer.from(JSON.stringify(exchange.filterJson(await readJson(response))))
      headers['content-length'] = String(body.length)
      res.writeHead(response.statusCode, headers)
      if (exchange.request.method === 'HEAD') {
        res.end()
      } else {
        exchange.bytes.sent += body.length
        res.end(body)
      }
      return
    }
    res.writeHead(response.statusCode, headers)
    const counts = exchange.bytes
    // A failure mid-body destroys the client response: the client sees a broken transfer, never a short 200.
    await relayBody(response.body, res, (count) => {
      counts.sent += count
    })
  }

  /** Best effort: asks the upstream to drop an upload session so nothing half-written stays. */
  async cancelUpload(exchange: Exchange, path: string): Promise<void> {
    try {
      const response = await this.send(exchange, 'DELETE', withParam(path, 'digest', undefined), null, 'none')
      drain(response)
    } catch (error) {
      this.onCancelError(error, path)
    }
  }
}

export async function readJson(response: UpstreamResponse): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  // Leaving the loop early destroys the body, whose RequestAbortedError may come after the loop let go of it.
  response.body.on('error', () => undefined)
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length
    if (size > MAX_FILTERED_BODY) throw new RegistryError('BAD_GATEWAY', { reason: 'upstream JSON response too large to filter' })
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
  } catch {
    throw new RegistryError('BAD_GATEWAY', { reason: 'upstream answered with invalid JSON' })
  }
}

export function isUploadWrite(request: RegistryRequest): boolean {
  return request.op === 'upload.chunk' || request.op === 'upload.finish' || request.op === 'upload.monolithic'
}

export function pathOf(request: RegistryRequest): string {
  return request.query ? `${request.path}?${request.query}` : request.path
}
