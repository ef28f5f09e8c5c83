// Verifies Bearer tokens from a token server (Portier's own, docker_auth, registry-web) and caches each verified token until it expires.
import { createHash, createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto'
import { calculateJwkThumbprint, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWK, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import { TokenError, type TokenProblem } from './errors.js'
import { ACCESS_TOKEN_CLAIM } from './issuer.js'
import { libtrustKeyId, parseCertificateBundle } from './keys.js'
import { normalizeActions, scopeType, type Scope } from './scope.js'
import { BoundedCache } from '../../lib/bounded-cache.js'

export { covers } from './scope.js'

export interface JsonWebKeySet {
  keys: JWK[]
}

/**
 * Trusted keys: public (or private) KeyObjects; a PEM text holding certificates (a registry's
 * `rootcertbundle`) and/or `PUBLIC KEY` blocks; or a JWKS, as an object or its JSON text.
 */
export type VerifierKeys = KeyObject[] | string | JsonWebKeySet

export interface VerifierOptions {
  /** Accepted `iss` values. */
  issuer: string | string[]
  /** The accepted `aud`: this registry's service name. */
  audience: string
  keys: VerifierKeys
  /** Tolerance for `exp`, `nbf` and `iat`, default 30 s. */
  clockSkewSeconds?: number
  /**
   * Longest time a token may still be valid for: `exp` further than this (plus the skew) from now is
   * refused, as is `iat` in the future. Default 3600 s; a token server issues tokens for minutes.
   */
  maxTtlSeconds?: number
  /** Accepted signature algorithms; default RS256/384/512 and ES256/384/512. HS* and none are never accepted. */
  algorithms?: string[]
  /** Verified tokens kept, default 10 000; the oldest go first. */
  cacheSize?: number
  /** Clock, in ms since the epoch; for tests. */
  now?: () => number
}

export interface VerifiedToken {
  subject: string
  access: Scope[]
  /** `exp`, seconds since the epoch. */
  exp: number
  /** The access token (tok_…) this token was issued for, when Portier issued it for one. */
  accessToken?: string
}

export interface Verifier {
  /** The verified claims; throws TokenError (reason `invalid_token`) for anything not trusted or not valid now. */
  verify(token: string): Promise<VerifiedToken>
  stats(): { hits: number; misses: number; size: number }
}

/** Default bound on how long a token may still be valid: docker_auth issues for 15 minutes, Portier for 5. */
export const DEFAULT_MAX_TTL_SECONDS = 3600

const asymmetricAlgorithms = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']
const defaultAlgorithms = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512']
const curveFor: Record<string, string> = { ES256: 'prime256v1', ES384: 'secp384r1', ES512: 'secp521r1' }

interface TrustedKey {
  key: KeyObject
  /** libtrust key ID, RFC 7638 thumbprint and the JWK's own `kid`: each of them may arrive as `kid`. */
  ids: Set<string>
  /** The JWK's `alg`, when it named one. */
  alg?: string
}

/** `cause`: jose's error, when one was mapped (for logs; the client sees the problem only). */
function invalid(problem: TokenProblem, message: string, cause?: unknown): TokenError {
  return new TokenError('invalid_token', problem, message, cause === undefined ? undefined : { cause })
}

async function trusted(key: KeyObject, jwkKid?: string, alg?: string): Promise<TrustedKey> {
  if (key.type === 'secret') throw new TypeError('token verification keys must be public keys; shared secrets (HS*) are not accepted')
  const publicKey = key.type === 'private' ? createPublicKey(key) : key
  if (publicKey.asymmetricKeyType !== 'rsa' && publicKey.asymmetricKeyType !== 'ec') {
    throw new TypeError(`token verification keys must be RSA or EC, not ${publicKey.asymmetricKeyType ?? 'unknown'}`)
  }
  const ids = new Set([libtrustKeyId(publicKey), await calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as JWK)])
  if (jwkKid !== undefined) ids.add(jwkKid)
  const entry: TrustedKey = { key: publicKey, ids }
  if (alg !== undefined) entry.alg = alg
  return entry
}

async function fromJwks(set: JsonWebKeySet): Promise<TrustedKey[]> {
  if (!Array.isArray(set.keys)) throw new TypeError('a JWKS needs a "keys" array')
  const keys: TrustedKey[] = []
  for (const jwk of set.keys) {
    // Symmetric and encryption keys never verify registry tokens.
    if ((jwk.kty !== 'RSA' && jwk.kty !== 'EC') || (jwk.use !== undefined && jwk.use !== 'sig')) continue
    // Only the public members: a JWKS that (wrongly) publishes a private key still yields a public one.
    const publicJwk = jwk.kty === 'RSA' ? { kty: jwk.kty, n: jwk.n, e: jwk.e } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }
    let key: KeyObject
    try {
      key = createPublicKey({ key: publicJwk as JsonWebKey, format: 'jwk' })
    } catch (error) {
      throw new TypeError(`JWKS key ${jwk.kid ?? '(no kid)'} is not a valid ${jwk.kty} key: ${(error as Error).message}`)
    }
    keys.push(await trusted(key, jwk.kid, jwk.alg))
  }
  return keys
}

async function loadKeys(keys: VerifierKeys): Promise<{ keys: TrustedKey[]; roots: X509Certificate[] }> {
  if (Array.isArray(keys)) return { keys: await Promise.all(keys.map((key) => trusted(key))), roots: [] }
  if (typeof keys !== 'string') return { keys: await fromJwks(keys), roots: [] }
  const text = keys.trim()
  if (text.startsWith('{')) return { keys: await fromJwks(JSON.parse(text) as JsonWebKeySet), roots: [] }
  const roots = parseCertificateBundle(text)
  const publicKeys = (text.match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? []).map((pem) => createPublicKey(pem))
  return { keys: await Promise.all([...roots.map((root) => root.publicKey), ...publicKeys].map((key) => trusted(key))), roots }
}

/** The `access` claim as scopes: unknown types and actions are dropped, `repository(plugin)` is `repository`. */
export function parseAccessClaim(value: unknown): Scope[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) throw invalid('claims', 'the access claim is not a list')
  const scopes: Scope[] = []
  for (const entry of value as unknown[]) {
    if (typeof entry !== 'object' || entry === null) throw invalid('claims', 'an access entry is not an object')
    const { type, name, actions } = entry as Record<string, unknown>
    if (typeof type !== 'string' || typeof name !== 'string' || !Array.isArray(actions)) throw invalid('claims', 'an access entry lacks type, name or actions')
    const known = scopeType(type)
    const granted = normalizeActions(actions.filter((action): action is string => typeof action === 'string'))
    if (known !== undefined && granted.length > 0) scopes.push({ type: known, name, actions: granted })
  }
  return scopes
}

function validAt(certificate: X509Certificate, nowMs: number, skewMs: number): boolean {
  return Date.parse(certificate.validFrom) - skewMs <= nowMs && nowMs <= Date.parse(certificate.validTo) + skewMs
}

/**
 * The leaf key of an `x5c` chain: a key that is trusted itself, or one whose chain ends in (or at) a
 * trusted root certificate, every certificate valid now.
 */
function keyFromChain(x5c: unknown, keys: readonly TrustedKey[], roots: readonly X509Certificate[], nowMs: number, skewMs: number): KeyObject {
  if (!Array.isArray(x5c) || x5c.length === 0 || x5c.length > 8 || !x5c.every((entry) => typeof entry === 'string')) {
    throw invalid('malformed', 'x5c is not a list of certificates')
  }
  let chain: X509Certificate[]
  try {
    chain = (x5c as string[]).map((entry) => new X509Certificate(Buffer.from(entry, 'base64')))
  } catch {
    throw invalid('malformed', 'x5c holds an unreadable certificate')
  }
  const leaf = chain[0] as X509Certificate
  if (keys.some((entry) => entry.key.equals(leaf.publicKey))) return leaf.publicKey
  if (!chain.every((certificate) => validAt(certificate, nowMs, skewMs))) throw invalid('certificate', 'a certificate in x5c is expired or not yet valid')
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i] as X509Certificate
    const parent = chain[i + 1] as X509Certificate
    if (!parent.ca || !child.checkIssued(parent) || !child.verify(parent.publicKey)) throw invalid('certificate', 'the x5c chain is broken')
  }
  const top = chain[chain.length - 1] as X509Certificate
  const anchored = roots.some((root) => root.raw.equals(top.raw) || (root.ca && validAt(root, nowMs, skewMs) && top.checkIssued(root) && top.verify(root.publicKey)))
  if (!anchored) throw invalid('unknown_key', 'the x5c chain does not lead to a trusted certificate')
  return leaf.publicKey
}

/** Whether a key can verify `alg` at all: RSA for RS/PS, the matching curve for ES. */
function fits(key: KeyObject, alg: string): boolean {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return key.asymmetricKeyType === 'rsa'
  return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === curveFor[alg]
}

function mapJoseError(error: unknown): TokenError {
  if (error instanceof TokenError) return error
  if (error instanceof joseErrors.JWTExpired) return invalid('expired', 'token expired', error)
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return invalid('not_yet_valid', 'token not valid yet', error)
    if (error.claim === 'iat') return invalid('not_yet_valid', 'token issued in the future', error)
    if (error.claim === 'iss') return invalid('issuer', 'token from an untrusted issuer', error)
    if (error.claim === 'aud') return invalid('audience', 'token for another service', error)
    return invalid('claims', `token claim ${error.claim} is not valid`, error)
  }
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return invalid('signature', 'token signature does not verify', error)
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return invalid('algorithm', 'token signature algorithm not accepted', error)
  return invalid('malformed', 'token is not a valid JWT', error)
}

export async function createVerifier(options: VerifierOptions): Promise<Verifier> {
  const skewSeconds = options.clockSkewSeconds ?? 30
  const algorithms = options.algorithms ?? defaultAlgorithms
  const cacheSize = options.cacheSize ?? 10_000
  const maxTtlSeconds = options.maxTtlSeconds ?? DEFAULT_MAX_TTL_SECONDS
  if (!(maxTtlSeconds > 0)) throw new TypeError('maxTtlSeconds must be positive')
  const now = options.now ?? Date.now
  const issuers = Array.isArray(options.issuer) ? options.issuer : [options.issuer]
  for (const alg of algorithms) {
    if (!asymmetricAlgorithms.includes(alg)) throw new TypeError(`token algorithm ${alg} is not accepted (only RS*, PS* and ES*)`)
  }
  if (issuers.length === 0 || issuers.some((issuer) => issuer === '') || options.audience === '') throw new TypeError('issuer and audience must not be empty')
  const { keys, roots } = await loadKeys(options.keys)
  if (keys.length === 0) throw new TypeError('no usable token verification key (RSA or EC public key, certificate or JWKS)')

  // Expiry is checked against exp on each hit (on `now`), so the cache itself only bounds the count.
  const cache = new BoundedCache<string, VerifiedToken>({ max: cacheSize })
  let hits = 0
  let misses = 0

  /** Keys the header points at: by `kid`, else by a trusted `x5c` chain, else (neither given) every key. */
  function candidates(header: ProtectedHeaderParameters, alg: string, nowMs: number): KeyObject[] {
    const byKid = header.kid === undefined ? [] : keys.filter((entry) => entry.ids.has(header.kid as string))
    const usable = (entry: TrustedKey): boolean => fits(entry.key, alg) && (entry.alg === undefined || entry.alg === alg)
    if (byKid.length > 0) return byKid.filter(usable).map((entry) => entry.key)
    if (header.x5c !== undefined) {
      const leaf = keyFromChain(header.x5c, keys, roots, nowMs, skewSeconds * 1000)
      return fits(leaf, alg) ? [leaf] : []
    }
    if (header.kid !== undefined) throw invalid('unknown_key', 'token signed by an unknown key')
    return keys.filter(usable).map((entry) => entry.key)
  }

  async function verifyUncached(token: string, nowMs: number): Promise<VerifiedToken> {
    let header: ProtectedHeaderParameters
    try {
      header = decodeProtectedHeader(token)
    } catch {
      throw invalid('malformed', 'token is not a valid JWT')
    }
    const alg = header.alg
    if (typeof alg !== 'string' || !algorithms.includes(alg)) throw invalid('algorithm', `token signature algorithm ${String(alg)} not accepted`)
    if (header.typ !== undefined && String(header.typ).toUpperCase() !== 'JWT') throw invalid('type', 'not an access token')
    const keysToTry = candidates(header, alg, nowMs)
    if (keysToTry.length === 0) throw invalid('unknown_key', `no trusted key for ${alg}`)
    let lastError: unknown
    for (const key of keysToTry) {
      let payload: JWTPayload
      try {
        ;({ payload } = await jwtVerify(token, key, {
          algorithms: [alg],
          issuer: issuers,
          audience: options.audience,
          clockTolerance: skewSeconds,
          requiredClaims: ['exp', 'iss', 'aud'],
          currentDate: new Date(nowMs),
        }))
      } catch (error) {
        // Another candidate key may have signed it; any other failure is final.
        if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
          lastError = error
          continue
        }
        throw mapJoseError(error)
      }
      if (payload.sub !== undefined && typeof payload.sub !== 'string') throw invalid('claims', 'token subject is not a string')
      // jose checks `iat` only against a maximum age, and `exp` not at all against a maximum: a token
      // "issued" in the future or valid for years is refused (a stolen one would otherwise never die).
      const nowSeconds = nowMs / 1000
      if (payload.iat !== undefined && (typeof payload.iat !== 'number' || payload.iat > nowSeconds + skewSeconds)) throw invalid('not_yet_valid', 'token issued in the future')
      if ((payload.exp as number) > nowSeconds + maxTtlSeconds + skewSeconds) throw invalid('lifetime', `token valid for longer than ${maxTtlSeconds} s`)
      // Frozen: the same object is handed out again from the cache.
      const access = parseAccessClaim(payload.access).map((scope) => Object.freeze({ ...scope, actions: Object.freeze(scope.actions) as Scope['actions'] }))
      const accessToken = payload[ACCESS_TOKEN_CLAIM]
      return Object.freeze({ subject: payload.sub ?? '', access: Object.freeze(access) as Scope[], exp: payload.exp as number, ...(typeof accessToken === 'string' ? { accessToken } : {}) })
    }
    throw mapJoseError(lastError)
  }

  return {
    async verify(token) {
      const nowMs = now()
      const cacheKey = createHash('sha256').update(token).digest('base64url')
      const cached = cache.get(cacheKey)
      if (cached !== undefined) {
        if ((cached.exp + skewSeconds) * 1000 >= nowMs) {
          hits++
          return cached
        }
        cache.delete(cacheKey)
      }
      misses++
      const verified = await verifyUncached(token, nowMs)
      cache.set(cacheKey, verified)
      return verified
    },
    stats: () => ({ hits, misses, size: cache.size }),
  }
}
