// The one error type Portier answers with: a catalogue code (status, subsystem, wire code), detail, headers and the error that caused it.
import { catalogue, isErrorCode, type ErrorCode, type Subsystem } from './catalogue.js'

export interface PortierErrorOptions {
  /** Goes into the answer (the registry format's `detail`): never a secret. */
  detail?: unknown
  /** Response headers the answer must carry (WWW-Authenticate, Retry-After, Allow, …). */
  headers?: Record<string, string>
  /** Replaces the catalogue's default message. */
  message?: string
  /** The underlying error (an upstream's, a socket's, a parser's): for logs, never sent to the client. */
  cause?: unknown
}

export class PortierError<Code extends ErrorCode = ErrorCode> extends Error {
  readonly code: Code
  readonly status: number
  readonly subsystem: Subsystem
  readonly detail: unknown
  readonly headers: Record<string, string>

  constructor(code: Code, options: PortierErrorOptions = {}) {
    // A code from outside the catalogue (a cast from an upstream's answer) is the gateway's own fault;
    // subclasses narrow to their subsystem's codes before this.
    const known = isErrorCode(code) ? code : ('INTERNAL' as Code)
    const entry = catalogue[known]
    super(options.message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = known
    this.status = entry.status
    this.subsystem = entry.subsystem
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }

  /** The code the registry's error format carries. */
  get wireCode(): string {
    return catalogue[this.code].wire
  }
}
