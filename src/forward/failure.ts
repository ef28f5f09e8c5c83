// What a failure to reach an upstream (before any response header) means to the client: which error, and whether a read may move on.
import { RegistryError } from '../registry/errors.js'
import type { Upstream } from '../upstreams/upstreams.js'

export const connectErrorCodes: ReadonlySet<string> = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT',
])
/** Failures before any response header after which a read may be sent to another upstream (a kept-alive socket that died counts). */
export const retryableReadCodes: ReadonlySet<string> = new Set([...connectErrorCodes, 'UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'])
/** What the gateway's own 502/503 answers suggest clients wait before trying again. */
export const RETRY_AFTER_SECONDS = '5'

export function errorCode(error: unknown): string | undefined {
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
    return new RegistryError('UNAVAILABLE', detail, { 'Retry-After': RETRY_AFTER_SECONDS }, 'upstream registry is unreachable', { cause: error })
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') return new RegistryError('GATEWAY_TIMEOUT', detail, {}, undefined, { cause: error })
  return new RegistryError('BAD_GATEWAY', detail, { 'Retry-After': RETRY_AFTER_SECONDS }, 'upstream registry failed before answering', { cause: error })
}
