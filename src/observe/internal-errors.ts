// Errors the gateway did not expect: which request they belonged to, one log line each, and the internal-error counter.
import { AsyncLocalStorage } from 'node:async_hooks'
import { causeChain } from '../errors/cause.js'
import type { Logger } from './log.js'

/** Where an unexpected error surfaced; a bounded metric label. */
export const INTERNAL_ERROR_KINDS = ['uncaught_exception', 'unhandled_rejection', 'request_handler', 'admin_handler', 'health_check'] as const
export type InternalErrorKind = (typeof INTERNAL_ERROR_KINDS)[number]

/** The request a piece of work belongs to, as far as an error far from its handler can tell. */
export interface RequestScope {
  requestId: string
  method: string
  /** As the client sent it; only its path is logged (the query may carry upload state). */
  url: string
}

/**
 * The request being handled, carried through its callbacks and stream events, so an error that
 * escapes every handler can still be logged with the request it broke. Read only on an error.
 */
export const requestScope = new AsyncLocalStorage<RequestScope>()

/** The counter side (Metrics.internalError), absent when metrics are disabled. */
export interface InternalErrorCounter {
  internalError(kind: InternalErrorKind): void
}

/**
 * Programming errors: a bad call or a missing value in Portier's own code, never a client, an
 * upstream or the network (those are plain Errors with a code, RegistryErrors, or undici's errors).
 */
export function isProgrammingError(error: unknown): boolean {
  return error instanceof TypeError || error instanceof RangeError || error instanceof ReferenceError
}

/** Logs an unexpected error once (with its request when known) and counts it. */
export function reportInternalError(
  log: Logger,
  counter: InternalErrorCounter | undefined,
  kind: InternalErrorKind,
  error: unknown,
  scope: RequestScope | undefined = requestScope.getStore(),
): void {
  counter?.internalError(kind)
  const causes = causeChain(error)
  const err =
    error instanceof Error
      ? { message: error.message, stack: error.stack, ...(codeOf(error) ? { code: codeOf(error) } : {}), ...(causes ? { cause: causes } : {}) }
      : { message: String(error) }
  const request = scope ? { request_id: scope.requestId, method: scope.method, path: scope.url.split('?')[0] } : {}
  const fatal = kind === 'uncaught_exception' || kind === 'unhandled_rejection'
  if (fatal) log.fatal({ kind, ...request, err }, 'internal error: draining and exiting so the supervisor restarts the gateway')
  else log.error({ kind, ...request, err }, 'internal error')
}

function codeOf(error: Error): string | undefined {
  const code = (error as NodeJS.ErrnoException).code
  return typeof code === 'string' ? code : undefined
}
