// Why a token, a refresh token or a token request was refused: one typed error for the token modules.

/**
 * `reason` is the RFC 6750 / RFC 6749 error code a caller puts on the wire (`error="invalid_token"` in
 * a Bearer challenge, `invalid_grant` from the token endpoint); `problem` says which check failed,
 * for logs and tests. Messages never contain the token.
 */
export type TokenErrorReason = 'invalid_token' | 'insufficient_scope' | 'invalid_request' | 'invalid_grant'

export type TokenProblem =
  | 'malformed'
  | 'algorithm'
  | 'type'
  | 'unknown_key'
  | 'certificate'
  | 'signature'
  | 'issuer'
  | 'audience'
  | 'expired'
  | 'not_yet_valid'
  | 'lifetime'
  | 'credential'
  | 'claims'
  | 'scope'
  | 'invalid'

export class TokenError extends Error {
  readonly reason: TokenErrorReason
  readonly problem: TokenProblem

  /** `options.cause`: the error behind the refusal (jose's, say), for logs only. */
  constructor(reason: TokenErrorReason, problem: TokenProblem, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'TokenError'
    this.reason = reason
    this.problem = problem
  }
}
