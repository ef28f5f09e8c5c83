// Signs registry access tokens (distribution token spec JWTs that registry:2 verifies) and Portier's refresh tokens.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { SignJWT, jwtVerify, errors as joseErrors, type JWTHeaderParameters } from 'jose'
import type { Scope } from './scope.js'
import type { TokenKey } from './keys.js'
import { TokenError } from './errors.js'

export interface IssuerOptions {
  key: TokenKey
  /** `iss`: registry:2's `auth.token.issuer` must equal it. */
  issuer: string
  /** `aud`: the registry's `auth.token.service`. */
  service: string
  /** Access token lifetime, default 300 s; at least 60 (clients treat less as 60 anyway). */
  ttlSeconds?: number
  /** Refresh token lifetime, default 30 days. */
  refreshTtlSeconds?: number
  /** Put the certificate chain into the header as `x5c` (needs `key.chain`); `kid` is always set. */
  includeX5c?: boolean
  /**
   * What `kid` holds: the libtrust key ID registry 2.x looks up (default), or the RFC 7638 thumbprint
   * registry 3.x looks up. Both registries check `x5c` first and ignore `kid` when it is there.
   */
  keyId?: 'libtrust' | 'thumbprint'
  /** Clock, in ms since the epoch; for tests. */
  now?: () => number
}

export interface IssuedToken {
  token: string
  /** Seconds until `exp`. */
  expiresIn: number
  /** `iat` as RFC 3339. */
  issuedAt: string
}

export interface Issuer {
  readonly service: string
  readonly issuer: string
  /** `accessToken`: the id of the access token the caller logged in with (claim ACCESS_TOKEN_CLAIM), so the token can be refused once it is revoked. */
  issue(request: { subject: string; access: Scope[]; accessToken?: string }): Promise<IssuedToken>
  /**
   * A refresh token for `subject`. With `credential` (the user's stored password hash) the token is bound
   * to it: a keyed hash of it goes into the token, and verifyRefresh refuses it once the password changed.
   */
  issueRefresh(subject: string, credential?: string): Promise<string>
  /**
   * The subject of a refresh token this issuer signed for this service, and the token's id (`jti`, which the
   * audit trail names); throws TokenError('invalid_grant') otherwise. With `credentialOf`, the token must be
   * bound to the subject's current credential.
   */
  verifyRefresh(token: string, credentialOf?: (subject: string) => string | undefined): Promise<{ subject: string; id?: string }>
}

/** Header `typ` of refresh tokens; access tokens carry `JWT`, and verifiers of access tokens refuse any other. */
export const REFRESH_TOKEN_TYPE = 'portier-refresh+jwt'

/** The claim naming the access token (tok_…) a token was issued for. */
export const ACCESS_TOKEN_CLAIM = 'portier_access_token'

/** Refresh tokens are addressed to the token server, never to the registry: registry:2 rejects them on `aud`. */
export function refreshAudience(service: string): string {
  return `portier-token-refresh:${service}`
}

export function createIssuer(options: IssuerOptions): Issuer {
  const { key, issuer, service } = options
  const ttlSeconds = options.ttlSeconds ?? 300
  const refreshTtlSeconds = options.refreshTtlSeconds ?? 30 * 24 * 3600
  const now = options.now ?? Date.now
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 60) throw new RangeError('token ttlSeconds must be a whole number of at least 60')
  if (!Number.isInteger(refreshTtlSeconds) || refreshTtlSeconds < ttlSeconds) throw new RangeError('refreshTtlSeconds must be a whole number no shorter than ttlSeconds')
  if (issuer === '' || service === '') throw new RangeError('issuer and service must not be empty')
  if (options.includeX5c && key.chain.length === 0) throw new RangeError('includeX5c needs the signing certificate (load the key with its certificate)')

  const kid = options.keyId === 'thumbprint' ? key.thumbprint : key.kid
  const header: JWTHeaderParameters = { alg: key.alg, typ: 'JWT', kid }
  if (options.includeX5c) header.x5c = key.chain.map((der) => der.toString('base64'))
  const refreshHeader: JWTHeaderParameters = { alg: key.alg, typ: REFRESH_TOKEN_TYPE, kid }
  const jti = (): string => randomBytes(16).toString('base64url')
  // Keyed by the signing key, so every instance sharing the key computes the same binding and the
  // token (which its holder can read) reveals nothing about the password hash.
  const bindingKey = createHash('sha256').update('portier refresh credential binding\0').update(key.privateKey.export({ type: 'pkcs8', format: 'der' })).digest()
  const binding = (subject: string, credential: string): string =>
    createHmac('sha256', bindingKey).update(subject).update('\0').update(credential).digest().subarray(0, 18).toString('base64url')

  return {
    service,
    issuer,

    async issue({ subject, access, accessToken }) {
      const iat = Math.floor(now() / 1000)
      const token = await new SignJWT({
        access: access.map((scope) => ({ type: scope.type, name: scope.name, actions: [...scope.actions] })),
        ...(accessToken !== undefined ? { [ACCESS_TOKEN_CLAIM]: accessToken } : {}),
      })
        .setProtectedHeader(header)
        .setIssuer(issuer)
        .setSubject(subject)
        .setAudience(service)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + ttlSeconds)
        .setJti(jti())
        .sign(key.privateKey)
      return { token, expiresIn: ttlSeconds, issuedAt: new Date(iat * 1000).toISOString() }
    },

    async issueRefresh(subject, credential) {
      const iat = Math.floor(now() / 1000)
      return new SignJWT(credential === undefined ? {} : { cred: binding(subject, credential) })
        .setProtectedHeader(refreshHeader)
        .setIssuer(issuer)
        .setSubject(subject)
        .setAudience(refreshAudience(service))
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + refreshTtlSeconds)
        .setJti(jti())
        .sign(key.privateKey)
    },

    async verifyRefresh(token, credentialOf) {
      try {
        const { payload } = await jwtVerify(token, key.publicKey, {
          algorithms: [key.alg],
          issuer,
          audience: refreshAudience(service),
          typ: REFRESH_TOKEN_TYPE,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: 30,
          currentDate: new Date(now()),
        })
        if (typeof payload.sub !== 'string' || payload.sub === '') throw new TokenError('invalid_grant', 'claims', 'refresh token has no subject')
        const nowSeconds = now() / 1000
        if (typeof payload.iat !== 'number' || payload.iat > nowSeconds + 30) throw new TokenError('invalid_grant', 'not_yet_valid', 'refresh token issued in the future')
        if ((payload.exp as number) > nowSeconds + refreshTtlSeconds + 30) throw new TokenError('invalid_grant', 'lifetime', 'refresh token valid for too long')
        if (credentialOf) {
          const current = credentialOf(payload.sub)
          if (current === undefined) throw new TokenError('invalid_grant', 'credential', 'the account of this refresh token no longer exists')
          const bound = typeof payload.cred === 'string' ? Buffer.from(payload.cred) : undefined
          const expected = Buffer.from(binding(payload.sub, current))
          if (!bound || bound.length !== expected.length || !timingSafeEqual(bound, expected)) {
            throw new TokenError('invalid_grant', 'credential', "the account's password changed since this refresh token was issued")
          }
        }
        return typeof payload.jti === 'string' && payload.jti !== '' ? { subject: payload.sub, id: payload.jti } : { subject: payload.sub }
      } catch (error) {
        if (error instanceof TokenError) throw error
        const expired = error instanceof joseErrors.JWTExpired
        throw new TokenError('invalid_grant', expired ? 'expired' : 'invalid', expired ? 'refresh token expired' : 'refresh token is not valid', { cause: error })
      }
    },
  }
}
