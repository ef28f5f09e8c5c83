// The token endpoint's refusals (catalogue group "token") and their wire format: the registry's `errors` list plus OAuth2's error fields.
import { catalogue, isErrorCode, type TokenErrorCode } from '../../errors/catalogue.js'
import { PortierError } from '../../errors/portier-error.js'

export type { TokenErrorCode }

export class TokenRefusal extends PortierError<TokenErrorCode> {
  /** `cause`: the error behind the refusal (a refresh token's verification failure, say), for logs only. */
  constructor(code: TokenErrorCode, message?: string, headers: Record<string, string> = {}, options?: ErrorOptions) {
    const known = isErrorCode(code) && catalogue[code].subsystem === 'token' ? code : 'TOKEN_INTERNAL'
    super(known, { headers, ...(message === undefined ? {} : { message }), cause: options?.cause })
  }

  /** RFC 6749 §5.2 error code. */
  get oauthCode(): string {
    return catalogue[this.code].oauth ?? 'server_error'
  }
}

/**
 * The body of a refusal: docker clients print the registry-format `errors` list, OAuth2 clients read
 * `error` and `error_description` (RFC 6749 §5.2). Messages never contain a credential.
 */
export function tokenErrorBody(refusal: TokenRefusal): { errors: Array<{ code: string; message: string }>; error: string; error_description: string } {
  return { errors: [{ code: refusal.wireCode, message: refusal.message }], error: refusal.oauthCode, error_description: refusal.message }
}
