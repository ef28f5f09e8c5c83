// One exchange with an upstream registry: headers in, bodies streamed both ways, aborts propagated.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { RegistryError } from '../registry/errors.js'
import type { RegistryRequest } from '../registry/classify.js'
import { clientResponseHeaders, type ClientView, type Headers, upstreamRequestHeaders } from './headers.js'
import { ByteLimitStream, LimitExceeded, type SizeLimit } from '../pipeline/limits.js'
import { relayBody } from './relay-body.js'
import { parseJson, readCapped } from '../lib/body.js'
import { errorCode, retryableReadCodes, upstreamFailure } from './failure.js'
import { declaredLength, hasBody, tooLarge, UploadSession, withParam } from '../uploads/session.js'
import type { ManifestCache } from './manifest-cache.js'

export { connectErrorCodes, RETRY_AFTER_SECONDS, upstreamFailure } from './failure.js'
export { declaredLength, declaredRange, hasBody, tooLarge, upstreamPath, uploadWriteShape, withParam, type UploadWriteShape } from '../uploads/session.js'
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
  /** Keeps small manifests the upstream sends (cache.manifests). */
  manifestCache?: ManifestCache
  /** Told the upstream's status and headers before they are relayed (the tag cache keeps resolutions from them). */
  onUpstreamAnswer?: (status: number, headers: Record<string, string | string[] | undefined>) => void
  /** Asked before the upstream's answer is relayed: an error it returns is answered instead (the upstream's body discarded). */
  refuseAnswer?: (status: number) => RegistryError | undefined
}

export type FailoverReason = 'connect' | 'not_found'

/** Everything an exchange has except the upstream, which routing supplies. */
export type RouteContext = Omit<Exchange, 'upstream'>

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
  /** The upstream that answered, when a read failed over to another one than routing chose. */
  served?: string
}

export type UpstreamResponse = Dispatcher.ResponseData

export function drain(response: UpstreamResponse): void {
  response.body.on('error', () => undefined)
  response.body.resume()
}

/** Which of the client's headers travel with a request the gateway makes. */
export type BodyKind = 'client' | 'none' | 'stream'

export class Forwarder {
  constructor(private readonly onCancelError: (error: unknown, path: string) => void) {}

  /** Streams one client request to the upstream and the answer back. Throws RegistryError before headers are sent. */
  async forward(given: Exchange): Promise<ExchangeResult> {
    // A read that fails over moves this copy on to the next upstream; the caller's exchange stays as routed.
    const exchange: Exchange = { ...given }
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
      const refused = exchange.refuseAnswer?.(response.statusCode)
      if (refused) {
        drain(response)
        throw refused
      }
      responded = true
      await this.relay(exchange, response)
      return { status: response.statusCode, served: exchange.upstream.name }
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
   * A request the gateway makes for itself (the web UI), sent as a client's would be: with the same
   * failover to the fallbacks. The answer is the caller's to read.
   */
  async read(given: Exchange): Promise<{ response: UpstreamResponse; upstream: Upstream }> {
    const exchange: Exchange = { ...given }
    try {
      const response = await this.sendOrFailOver(exchange, exchange.request.method, pathOf(exchange.request), null, new AbortController().signal)
      return { response, upstream: exchange.upstream }
    } catch (error) {
      throw upstreamFailure(error, exchange.upstream)
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
    const { request, req, upstream } = exchange
    const upload = UploadSession.fromUrl(this, exchange, upstream)
    const { finishing, digest } = upload.shape
    let stored = 0
    const ownSession = request.op === 'upload.monolithic'
    if (ownSession) {
      upload.admitNew()
      const [started] = await upload.open([upstream])
      if (!started?.response) throw upstreamFailure(started?.error, upstream)
      const opened = upload.next(upstream, started.response.statusCode, started.response.headers.location)
      if (!opened) {
        req.resume()
        await this.relay(exchange, started.response)
        return { status: started.response.statusCode }
      }
      drain(started.response)
      upload.targets = [opened]
    } else {
      stored = await upload.admit()
    }
    const body = upload.body(stored)
    const [patched] = await upload.chunk(body, finishing)
    if (!patched?.response) {
      body.destroy()
      if (ownSession) await upload.cancel()
      if (body.stopped === 'client') return { status: 499 }
      throw upstreamFailure(patched?.error, upstream)
    }
    const response = patched.response
    body.release()
    const next = upload.next(upstream, response.statusCode, response.headers.location)

    if (body.stopped) {
      drain(response)
      // The fresh state the upstream answered with can cancel the session; without one, the state the client sent.
      const cancelled = next ? [next] : upload.targets
      await upload.cancel(cancelled)
      if (body.stopped === 'limit' && body.exceeded) throw tooLarge(body.exceeded)
      const path = cancelled[0]?.path
      return path === undefined ? { status: 499 } : { status: 499, cancelledUpload: path }
    }
    if (next === undefined) {
      // The upstream refused the bytes: its answer is the client's answer.
      if (ownSession) await upload.cancel()
      await this.relay(exchange, response)
      return { status: response.statusCode }
    }
    if (!finishing) {
      await this.relay(exchange, response)
      return { status: response.statusCode }
    }

    drain(response)
    const [finished] = await upload.finish([next], digest as string)
    if (!finished?.response) {
      await upload.cancel([next])
      throw upstreamFailure(finished?.error, upstream)
    }
    // registry 2.8 cannot cancel a session whose commit failed (digest mismatch): the fresh state can.
    if (finished.response.statusCode >= 400) await upload.cancel([next])
    await this.relay(exchange, finished.response)
    return { status: finished.response.statusCode }
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
    exchange.onUpstreamAnswer?.(response.statusCode, response.headers)
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
    if (exchange.manifestCache?.wants(exchange.request, response.statusCode, response.headers)) {
      // Small (under the per-entry cap, by Content-Length): read whole, kept when it hashes to its digest, then sent.
      const tooLong = (): RegistryError => new RegistryError('BAD_GATEWAY', { reason: 'upstream manifest longer than its Content-Length' })
      const body = await readCapped(response.body, { maxBytes: Number(response.headers['content-length']), tooLarge: tooLong, rest: 'destroy' })
      exchange.manifestCache.keep(exchange.request, response.headers, body)
      res.writeHead(response.statusCode, headers)
      exchange.bytes.sent += body.length
      res.end(body)
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
  const tooLarge = (): RegistryError => new RegistryError('BAD_GATEWAY', { reason: 'upstream JSON response too large to filter' })
  const body = await readCapped(response.body, { maxBytes: MAX_FILTERED_BODY, tooLarge, rest: 'destroy' })
  return parseJson(body, () => new RegistryError('BAD_GATEWAY', { reason: 'upstream answered with invalid JSON' }))
}

export function isUploadWrite(request: RegistryRequest): boolean {
  return request.op === 'upload.chunk' || request.op === 'upload.finish' || request.op === 'upload.monolithic'
}

export function pathOf(request: RegistryRequest): string {
  return request.query ? `${request.path}?${request.query}` : request.path
}
