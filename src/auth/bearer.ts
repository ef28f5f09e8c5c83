// Token mode at the registry API: verifies Bearer tokens and answers with the Bearer challenge Docker clients follow.
import type { IncomingHttpHeaders } from 'node:http'
import { RegistryError } from '../registry/errors.js'
import type { Authenticator, AuthContext, ChallengeError } from './basic.js'
// The token modules that need no JWT library: jose and node-forge load only in token mode (auth/index.ts).
import { bearerToken, challengeFor } from './token/scope.js'
import { TokenError } from './token/errors.js'
import type { Verifier } from './token/verifier.js'

export interface BearerOptions {
  verifier: Verifier
  service: string
  /** Token server URL for challenges; empty means this gateway's own /auth/token. */
  realm: string
  /** Whether the access token (tok_…) a bearer token was issued for is still live: a revoked one refuses its JWTs at once. */
  accessTokenLive?: (id: string) => boolean | Promise<boolean>
}

export function createBearerAuthenticator(options: BearerOptions): Authenticator {
  const realmFor = (context: AuthContext): string => options.realm || `${context.publicOrigin}/auth/token`
  const challenge = (context: AuthContext, detail?: unknown, error?: ChallengeError, cause?: unknown): RegistryError =>
    new RegistryError('UNAUTHORIZED', detail, { 'WWW-Authenticate': challengeFor(context.scopes, realmFor(context), options.service, error) }, undefined, { cause })
  return {
    challenge,
    asksForCredentials: true,
    anonymousReachesAcl: false,
    async authenticate(headers: IncomingHttpHeaders, context: AuthContext) {
      if (headers.authorization === undefined) return { user: '', via: 'anonymous' }
      const token = bearerToken(headers.authorization)
      if (!token) throw challenge(context, { reason: 'expected a Bearer token from the token server' })
      try {
        const verified = await options.verifier.verify(token)
        if (verified.accessToken !== undefined && options.accessTokenLive && !(await options.accessTokenLive(verified.accessToken))) {
          throw challenge(context, { reason: 'the access token this was issued for is revoked or expired' }, 'invalid_token')
        }
        // A JWT issued on an access token names it: the audit trail's login rows do too.
        return { user: verified.subject, via: 'token', access: verified.access, ...(verified.accessToken !== undefined ? { accessToken: verified.accessToken } : {}) }
      } catch (error) {
        if (error instanceof TokenError) throw challenge(context, { reason: error.problem }, 'invalid_token', error)
        throw error
      }
    },
  }
}
