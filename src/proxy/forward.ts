// One exchange with an upstream registry: headers in, bodies streamed both ways, aborts propagated.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import { RegistryError } from '../registry/errors.js'
import type { RegistryRequest } from '../registry/classify.js'
import { clientResponseHeaders, type ClientView, type Headers, upstreamRequestHeaders } from './headers.js'
import { ByteLimitStream, LimitExceeded, type SizeLimit } from './limits.js'
import type { Upstream } from './upstreams.js'

export interface Exchange {
  request: RegistryRequest
  req: IncomingMessage
  res: ServerResponse
  client: ClientView
  upstream: Upstream
  limit: SizeLimit | undefined
}

export interface ExchangeResult {
  status: number
  /** Set when the gateway cancelled an upstream upload session (limit, client abort). */
  cancelledUpload?: string
}

type UpstreamResponse = Dispatcher.ResponseData

const connectErrorCodes = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT',
])
const RETRY_AFTER_SECONDS = '5'

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

function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true
  const length = req.headers['content-length']
  return length !== undefined && length !== '0'
}

function declaredLength(req: IncomingMessage): number | undefined {
  const length = req.headers['content-length']
  if (length === undefined || !/^\d+$/.test(length)) return undefined
  return Number(length)
}

/** Content-Range of a chunk: "start-end" (inclusive), as distribution defines it for PATCH. */
function declaredRange(req: IncomingMessage): { start: number; end: number } | undefined {
  const value = req.headers['content-range']
  const match = value ? /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(value.trim()) : null
  if (!match) return undefined
  return { start: Number(match[1]), end: Number(match[2]) }
}

function tooLarge(error: LimitExceeded): RegistryError {
  return new RegistryError(
    'TOO_LARGE',
    { limit: error.limit.name, max_bytes: error.limit.maxBytes, bytes: error.bytes },
    { Connection: 'close' },
    error.message,
  )
}

function drain(response: UpstreamResponse): void {
  response.body.on('error', () => undefined)
  response.body.resume()
}

export class Forwarder {
  constructor(private readonly onCancelError: (error: unknown, path: string) => void) {}

  /** Streams one client request to the upstream and the answer back. Throws RegistryError before headers are sent. */
  async forward(exchange: Exchange): Promise<ExchangeResult> {
    const { request, req, res } = exchange
    const controller = new AbortController()
    let responded = false
    const onClose = (): void => {
      if (!res.writableFinished) controller.abort(new Error('client closed the connection'))
    }
    res.on('close', onClose)
    try {
      if (request.op === 'upload.monolithic' && hasBody(req)) {
        return await this.monolithicUpload(exchange, controller.signal)
      }
      const { body, limiter } = await this.prepareBody(exchange, controller.signal)
      const path = request.query ? `${request.path}?${request.query}` : request.path
      let response: UpstreamResponse
      try {
        response = await this.send(exchange, request.method, path, body, controller.signal)
      } catch (error) {
        return await this.failedSend(exchange, error, limiter, path)
      }
      responded = true
      await this.relay(exchange, response)
      return { status: response.statusCode }
    } catch (error) {
      if (!responded && controller.signal.aborted && isUploadWrite(request)) {
        await this.cancelUpload(exchange, uploadUrl(request))
        return { status: 499, cancelledUpload: uploadUrl(request) }
      }
      throw error
    } finally {
      res.off('close', onClose)
    }
  }

  /** Checks declared sizes before anything is sent, and wraps the body in a counter when a limit applies. */
  private async prepareBody(exchange: Exchange, signal: AbortSignal): Promise<{ body: Readable | null; limiter?: ByteLimitStream }> {
    const { request, req, limit } = exchange
    if (request.method === 'GET' || request.method === 'HEAD' || request.method === 'DELETE') {
      req.resume() // a body on these methods means nothing to a registry: discard it
      return { body: null }
    }
    if (!hasBody(req)) return { body: null }
    if (!limit) return { body: req }

    let alreadyStored = 0
    const length = declaredLength(req)
    if (request.op === 'upload.chunk' || request.op === 'upload.finish') {
      const range = declaredRange(req)
      if (range) {
        alreadyStored = range.start
        if (range.end + 1 > limit.maxBytes) await this.reject(exchange, new LimitExceeded(limit, range.end + 1, true))
      } else {
        alreadyStored = await this.uploadedSoFar(exchange, signal)
      }
    }
    if (length !== undefined && alreadyStored + length > limit.maxBytes) {
      await this.reject(exchange, new LimitExceeded(limit, alreadyStored + length, true))
    }
    const limiter = new ByteLimitStream(limit, alreadyStored)
    req.on('error', (error) => limiter.destroy(error))
    return { body: req.pipe(limiter), limiter }
  }

  /** Rejects an oversized body: cancels the upload session upstream, then answers 413. */
  private async reject(exchange: Exchange, error: LimitExceeded): Promise<never> {
    if (isUploadWrite(exchange.request)) await this.cancelUpload(exchange, uploadUrl(exchange.request))
    throw tooLarge(error)
  }

  private async failedSend(exchange: Exchange, error: unknown, limiter: ByteLimitStream | undefined, path: string): Promise<never> {
    const exceeded = limiter?.errored instanceof LimitExceeded ? limiter.errored : error instanceof LimitExceeded ? error : undefined
    if (exceeded) {
      if (isUploadWrite(exchange.request)) await this.cancelUpload(exchange, path)
      throw tooLarge(exceeded)
    }
    throw upstreamFailure(error, exchange.upstream)
  }

  /** Bytes the upstream already holds for this upload session, from its status endpoint. */
  private async uploadedSoFar(exchange: Exchange, signal: AbortSignal): Promise<number> {
    try {
      const response = await this.send(exchange, 'GET', uploadUrl(exchange.request), null, signal)
      drain(response)
      const range = response.headers.range
      const match = typeof range === 'string' ? /^(?:bytes=)?0-(\d+)$/.exec(range) : null
      // "0-0" is what distribution reports for an empty session.
      return match && Number(match[1]) > 0 ? Number(match[1]) + 1 : 0
    } catch (error) {
      throw upstreamFailure(error, exchange.upstream)
    }
  }

  /**
   * registry:2 ignores the body of `POST ?digest=` and answers 202, so the gateway performs the
   * monolithic upload itself: open a session, then stream the body in one `PUT ?digest=`.
   */
  private async monolithicUpload(exchange: Exchange, signal: AbortSignal): Promise<ExchangeResult> {
    const { request, req, limit } = exchange
    const length = declaredLength(req)
    if (limit && length !== undefined && length > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, length, true))

    let started: UpstreamResponse
    try {
      started = await this.send(exchange, 'POST', request.path, null, signal, { 'content-length': '0' })
    } catch (error) {
      throw upstreamFailure(error, exchange.upstream)
    }
    const location = started.headers.location
    if (started.statusCode !== 202 || typeof location !== 'string') {
      req.resume()
      await this.relay(exchange, started)
      return { status: started.statusCode }
    }
    drain(started)
    const session = new URL(location, `${exchange.upstream.origin}/`)
    session.searchParams.set('digest', request.reference as string)
    const sessionPath = `${session.pathname}${session.search}`

    const limiter = limit ? new ByteLimitStream(limit, 0) : undefined
    if (limiter) req.on('error', (error) => limiter.destroy(error))
    const body = limiter ? req.pipe(limiter) : req
    let finished: UpstreamResponse
    try {
      finished = await this.send(exchange, 'PUT', sessionPath, body, signal)
    } catch (error) {
      if (signal.aborted) {
        await this.cancelUpload(exchange, sessionPath)
        return { status: 499, cancelledUpload: sessionPath }
      }
      return await this.failedSend(exchange, error, limiter, sessionPath).catch(async (failure: unknown) => {
        if (!(failure instanceof RegistryError && failure.code === 'TOO_LARGE')) await this.cancelUpload(exchange, sessionPath)
        throw failure
      })
    }
    if (finished.statusCode >= 400) await this.cancelUpload(exchange, sessionPath)
    await this.relay(exchange, finished)
    return { status: finished.statusCode }
  }

  private send(
    exchange: Exchange,
    method: string,
    path: string,
    body: Readable | null,
    signal: AbortSignal,
    extraHeaders: Headers = {},
  ): Promise<UpstreamResponse> {
    const headers = upstreamRequestHeaders(exchange.req.headers, exchange.client, extraHeaders)
    if (body === null && method !== exchange.req.method) {
      delete headers['content-length']
      delete headers['content-type']
      delete headers['content-range']
    }
    return exchange.upstream.pool.request({
      origin: exchange.upstream.origin,
      method: method as Dispatcher.HttpMethod,
      path,
      headers,
      body,
      signal,
      highWaterMark: 1 << 20,
    })
  }

  /** Writes the upstream's status and headers, then streams its body with backpressure. */
  private async relay(exchange: Exchange, response: UpstreamResponse): Promise<void> {
    const { res, client, upstream } = exchange
    const headers = clientResponseHeaders(response.headers, response.statusCode, upstream.origin, client)
    res.writeHead(response.statusCode, headers)
    // A failure mid-body destroys the client response: the client sees a broken transfer, never a short 200.
    await pipeline(response.body, res)
  }

  /** Best effort: asks the upstream to drop an upload session so nothing half-written stays. */
  async cancelUpload(exchange: Exchange, path: string): Promise<void> {
    try {
      const response = await exchange.upstream.pool.request({
        origin: exchange.upstream.origin,
        method: 'DELETE',
        path,
        headers: upstreamRequestHeaders(
          Object.fromEntries(Object.entries(exchange.req.headers).filter(([name]) => !['content-length', 'content-type', 'content-range', 'transfer-encoding'].includes(name))),
          exchange.client,
        ),
      })
      drain(response)
    } catch (error) {
      this.onCancelError(error, path)
    }
  }
}

function isUploadWrite(request: RegistryRequest): boolean {
  return request.op === 'upload.chunk' || request.op === 'upload.finish'
}

function uploadUrl(request: RegistryRequest): string {
  return request.query ? `${request.path}?${request.query}` : request.path
}
