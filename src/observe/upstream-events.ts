// Watches every request Portier sends upstream through undici's diagnostics channels: duration, in-flight, errors by kind.
import diagnostics from 'node:diagnostics_channel'
import type { Upstream } from '../upstreams/upstreams.js'
import { connectErrorCodes as CONNECT } from '../forward/forward.js'
import type { UpstreamErrorKind } from './metrics.js'

export interface UpstreamObserver {
  started(upstream: Upstream): void
  /** Response headers arrived after `seconds`. */
  answered(upstream: Upstream, seconds: number): void
  /** The exchange is over (body complete or failed): it leaves the in-flight count. */
  ended(upstream: Upstream): void
  failed(upstream: Upstream, kind: UpstreamErrorKind, code: string): void
}

interface UndiciRequest {
  origin?: unknown
}

const TIMEOUT = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
/** Errors that are the gateway's own doing (the client went away and the request was aborted). */
const ABORTED = new Set(['UND_ERR_ABORTED', 'ABORT_ERR'])

export function errorKind(code: string): UpstreamErrorKind | undefined {
  if (ABORTED.has(code)) return undefined
  if (CONNECT.has(code)) return 'connect'
  if (TIMEOUT.has(code)) return 'timeout'
  if (RESET.has(code)) return 'reset'
  return 'other'
}

function codeOf(error: unknown): string {
  const value = error as { code?: unknown; name?: unknown; cause?: { code?: unknown } } | undefined
  if (typeof value?.cause?.code === 'string' && CONNECT.has(value.cause.code)) return value.cause.code
  if (typeof value?.code === 'string') return value.code
  if (value?.name === 'AbortError') return 'ABORT_ERR'
  return 'unknown'
}

/** Subscribes to undici's request channels; returns the unsubscribe function. */
export function observeUpstreams(upstreams: Upstream[], observer: UpstreamObserver): () => void {
  const byOrigin = new Map(upstreams.map((upstream) => [upstream.origin, upstream]))
  const startedAt = new WeakMap<object, number>()
  const upstreamOf = (request: UndiciRequest): Upstream | undefined => {
    const origin = request.origin
    return byOrigin.get(typeof origin === 'string' ? origin.replace(/\/$/, '') : origin instanceof URL ? origin.origin : '')
  }

  const onCreate = (message: unknown): void => {
    const request = (message as { request: UndiciRequest }).request
    const upstream = upstreamOf(request)
    if (!upstream) return
    startedAt.set(request, performance.now())
    observer.started(upstream)
  }
  const onHeaders = (message: unknown): void => {
    const request = (message as { request: UndiciRequest }).request
    const started = startedAt.get(request)
    const upstream = upstreamOf(request)
    if (started !== undefined && upstream) observer.answered(upstream, (performance.now() - started) / 1000)
  }
  const onComplete = (message: unknown): void => {
    const request = (message as { request: UndiciRequest }).request
    const upstream = upstreamOf(request)
    if (upstream && startedAt.delete(request)) observer.ended(upstream)
  }
  const onError = (message: unknown): void => {
    const { request, error } = message as { request: UndiciRequest; error: unknown }
    const upstream = upstreamOf(request)
    if (!upstream) return
    if (startedAt.delete(request)) observer.ended(upstream)
    const code = codeOf(error)
    const kind = errorKind(code)
    if (kind) observer.failed(upstream, kind, code)
  }

  const subscriptions: Array<[string, (message: unknown) => void]> = [
    ['undici:request:create', onCreate],
    ['undici:request:headers', onHeaders],
    ['undici:request:trailers', onComplete],
    ['undici:request:error', onError],
  ]
  for (const [name, handler] of subscriptions) diagnostics.subscribe(name, handler)
  return () => {
    for (const [name, handler] of subscriptions) diagnostics.unsubscribe(name, handler)
  }
}
