// Access tokens as credentials: Basic `user:portier_…` at the registry API and at the token endpoint, under the login throttle.
import { RegistryError } from '../../registry/errors.js'
import { parseBasic, type Authenticator, type Identity } from '../basic.js'
import type { Throttle } from '../throttle.js'
import { looksLikeAccessToken } from './secret.js'
import type { AccessTokens } from './tokens.js'

/** The identity a token stands for and the token's id, false when refused, 'locked' while the user or address is locked out. */
export type TokenLogin = (user: string, secret: string, clientIp: string) => Promise<{ identity: Identity; tokenId: string } | false | 'locked'>

/**
 * Checks a token like a password: refused while locked out, counted as an attempt before the check,
 * a failure counts towards the lockout of this user and address like a wrong password.
 */
export function createTokenLogin(tokens: AccessTokens, throttle: Throttle): TokenLogin {
  return async (user, secret, clientIp) => {
    // With shared counters (shared.redis) another instance may hold the lock: asked as for passwords.
    if ((await throttle.check(user, clientIp)) > 0) return 'locked'
    const attempt = throttle.attempt(user, clientIp)
    if (!attempt) return 'locked'
    let check
    try {
      check = await tokens.verify(secret, user, clientIp)
    } catch (error) {
      // The store could not be read (a token not in the cache while PostgreSQL is away; a 503): not a wrong token.
      attempt.cancelled()
      throw error
    }
    if (!check.ok) {
      attempt.failed()
      await throttle.settled()
      return false
    }
    attempt.succeeded()
    throttle.succeeded(user, clientIp)
    const { record } = check
    // A token made from a single sign-on or directory session carries the groups its owner had then (see AccessTokenRecord.groups).
    const identity: Identity = { user: record.owner, via: 'access-token', limit: record.scopes, accessToken: record.id, ...(record.robot ? { robot: true } : {}), ...(record.groups ? { groups: record.groups } : {}) }
    return { identity, tokenId: record.id }
  }
}

/** Whether a password is an access token (then it is never checked as a password). */
export const isTokenPassword = looksLikeAccessToken

/**
 * Basic authentication that takes access tokens as the password beside the inner authenticator's
 * passwords; everything else (challenges, anonymous callers, passwords) is the inner one's.
 */
export function withAccessTokens(inner: Authenticator, login: TokenLogin, throttle: Throttle): Authenticator {
  return {
    challenge: (context, detail, error) => inner.challenge(context, detail, error),
    asksForCredentials: inner.asksForCredentials,
    anonymousReachesAcl: inner.anonymousReachesAcl,
    async authenticate(headers, context) {
      const credentials = parseBasic(headers.authorization)
      if (!credentials || !looksLikeAccessToken(credentials.password)) return inner.authenticate(headers, context)
      const outcome = await login(credentials.user, credentials.password, context.clientIp)
      if (outcome === 'locked') {
        throw new RegistryError('TOOMANYREQUESTS', { reason: 'too many failed logins; try later' }, { 'Retry-After': String(Math.max(1, throttle.retryAfter(credentials.user, context.clientIp))) })
      }
      if (!outcome) throw inner.challenge(context, { reason: 'invalid, expired or revoked access token' })
      return outcome.identity
    },
  }
}
