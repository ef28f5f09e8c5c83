// Token signing keys: generating an RSA key with a self-signed certificate (a registry's rootcertbundle) and its JWKS, loading keys, key IDs (libtrust, RFC 7638).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate, type KeyObject } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import forge from 'node-forge'
import { writeKeyAndCertificate } from '../../tls/pem-files.js'
import { writeFileAtomically } from '../../lib/atomic-write.js'

export type TokenAlg = 'RS256' | 'ES256'

export interface TokenKey {
  alg: TokenAlg
  privateKey: KeyObject
  publicKey: KeyObject
  /** libtrust key ID of the public key: what registry 2.x matches the JWT header's `kid` against. */
  kid: string
  /** RFC 7638 JWK thumbprint (SHA-256): what registry 3.x matches `kid` against, and the `kid` in token.jwks. */
  thumbprint: string
  /** The certificate chain, leaf first, as DER: the JWT header's `x5c` (standard base64 of each). */
  chain: Buffer[]
  /** When the leaf certificate expires; registry:2 rejects `x5c` tokens after it. */
  certificateExpires?: Date
}

export interface GeneratedTokenKey {
  keyPath: string
  certPath: string
  /** token.jwks beside them: the public key for a registry 3.x `auth.token.jwks`. */
  jwksPath: string
  kid: string
  thumbprint: string
  alg: TokenAlg
  /** When the certificate expires (absent: an existing key kept without a certificate). */
  expires?: Date
  /** The key was already there and was kept (keepExisting); only token.jwks was written. */
  kept: boolean
}

export interface GenerateTokenKeyOptions {
  /** Only RS256 can be generated here (node-forge signs RSA only); load an ES256 key made elsewhere. */
  alg?: TokenAlg
  /** Subject and issuer common name of the certificate; default "portier token signer". */
  commonName?: string
  /** RSA modulus size, default 3072. */
  bits?: 2048 | 3072 | 4096
  /** Certificate validity, default 3650 days: registry:2 rejects `x5c` tokens once the certificate expires. */
  validityDays?: number
  /** Replace existing token.key/token.crt; without it an existing key is never overwritten. */
  overwrite?: boolean
  /** An existing token.key is kept and only its token.jwks written (for keys made before, or with openssl). */
  keepExisting?: boolean
}

export class TokenKeyError extends Error {
  override name = 'TokenKeyError'
}

export const ES256_OPENSSL_HINT =
  'openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 ' +
  '-subj "/CN=portier token signer" -keyout token.key -out token.crt'

/**
 * libtrust key ID, as registry 2.x computes it for `kid`: SHA-256 of the DER (SPKI) public key,
 * first 240 bits, base32 (RFC 4648, no padding), in groups of 4 joined by `:`.
 */
export function libtrustKeyId(publicKey: KeyObject): string {
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey
  const digest = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest().subarray(0, 30)
  return base32(digest).match(/.{1,4}/g)?.join(':') ?? ''
}

const base32Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/** RFC 4648 base32 without padding. */
function base32(bytes: Uint8Array): string {
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += base32Alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += base32Alphabet[(value << (5 - bits)) & 31]
  return out
}

/**
 * RFC 7638 thumbprint (SHA-256, base64url) of an RSA or EC public key: the hash of its required JWK
 * members in lexicographic order. Registry 3.x keys the certificates of its rootcertbundle by it.
 */
export function jwkThumbprint(publicKey: KeyObject): string {
  const key = publicKey.type === 'private' ? createPublicKey(publicKey) : publicKey
  const jwk = key.export({ format: 'jwk' })
  const members =
    jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n } : jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : undefined
  if (members === undefined) throw new TokenKeyError(`no JWK thumbprint for ${jwk.kty ?? 'this'} keys`)
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url')
}

export interface TokenJwks {
  keys: Array<Record<string, string>>
}

/**
 * The public key as a JWKS for registry 3.x's `auth.token.jwks`: one key whose `kid` is its RFC 7638
 * thumbprint. Registry 3.x trusts each listed key under exactly that `kid` (tokens must carry it,
 * auth.token.key_id: thumbprint) and checks a token that has `x5c` against the rootcertbundle only.
 */
export function tokenJwks(key: Pick<TokenKey, 'publicKey' | 'alg' | 'thumbprint'>): TokenJwks {
  const jwk = key.publicKey.export({ format: 'jwk' })
  const members: Record<string, string> = {}
  for (const [name, value] of Object.entries(jwk)) if (typeof value === 'string') members[name] = value
  return { keys: [{ ...members, use: 'sig', alg: key.alg, kid: key.thumbprint }] }
}

/** Writes tokenJwks(key) to `path` (0644: it holds only the public key), through a temporary file; TokenKeyError naming the file when it cannot. */
export function writeTokenJwks(path: string, key: Pick<TokenKey, 'publicKey' | 'alg' | 'thumbprint'>): void {
  try {
    writeFileAtomically(path, `${JSON.stringify(tokenJwks(key), null, 2)}\n`, 0o644)
  } catch (error) {
    throw new TokenKeyError(`${path}: cannot write the JWKS (${(error as Error).message})`)
  }
}

/** The JWS algorithm a key signs with, or an error naming what is supported. */
export function algorithmFor(key: KeyObject): TokenAlg {
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < 2048) throw new TokenKeyError(`RSA token keys need at least 2048 bits (this one has ${bits})`)
    return 'RS256'
  }
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve === 'prime256v1' || curve === 'P-256') return 'ES256'
    throw new TokenKeyError(`EC token keys must use the P-256 curve (ES256); this one uses ${curve ?? 'an unknown curve'}`)
  }
  throw new TokenKeyError(`token keys must be RSA (RS256) or EC P-256 (ES256), not ${key.asymmetricKeyType ?? key.type}`)
}

/** Splits a PEM bundle into its certificates (anything else in the file is ignored). */
export function parseCertificateBundle(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  return blocks.map((block) => new X509Certificate(block))
}

/**
 * Loads a signing key (PEM: PKCS#8, PKCS#1 or SEC1) and, optionally, its certificate chain (PEM,
 * leaf first). The leaf must belong to the key.
 */
export function loadTokenKey(keyPath: string, certPath?: string): TokenKey {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(readFileSync(keyPath))
  } catch (error) {
    throw new TokenKeyError(`${keyPath}: not a readable private key (${(error as Error).message})`)
  }
  const alg = algorithmFor(privateKey)
  const publicKey = createPublicKey(privateKey)
  const key: TokenKey = { alg, privateKey, publicKey, kid: libtrustKeyId(publicKey), thumbprint: jwkThumbprint(publicKey), chain: [] }
  if (certPath !== undefined) {
    let certificates: X509Certificate[]
    try {
      certificates = parseCertificateBundle(readFileSync(certPath, 'utf8'))
    } catch (error) {
      throw new TokenKeyError(`${certPath}: not a readable certificate (${(error as Error).message})`)
    }
    const leaf = certificates[0]
    if (leaf === undefined) throw new TokenKeyError(`${certPath}: no PEM certificate found`)
    if (!leaf.checkPrivateKey(privateKey)) throw new TokenKeyError(`${certPath}: the first certificate does not belong to ${keyPath}`)
    key.chain = certificates.map((certificate) => certificate.raw)
    key.certificateExpires = new Date(leaf.validTo)
  }
  return key
}

/**
 * Writes `token.key` (PKCS#8, 0600), `token.crt` (a self-signed certificate for it) and `token.jwks`
 * (its public key) into `dir`: Portier signs with the key; a registry verifies with the certificate
 * as `auth.token.rootcertbundle` (2.x and 3.x) or, 3.x only, with `auth.token.jwks`. Refuses to
 * replace an existing key unless `overwrite` is set.
 */
export function generateTokenKey(dir: string, options: GenerateTokenKeyOptions = {}): GeneratedTokenKey {
  const alg = options.alg ?? 'RS256'
  if (alg !== 'RS256') {
    throw new TokenKeyError(`${alg} keys cannot be generated by Portier; make one with: ${ES256_OPENSSL_HINT}`)
  }
  const keyPath = join(dir, 'token.key')
  const certPath = join(dir, 'token.crt')
  const jwksPath = join(dir, 'token.jwks')
  if (!options.overwrite && options.keepExisting && existsSync(keyPath)) {
    const key = loadTokenKey(keyPath, existsSync(certPath) ? certPath : undefined)
    writeTokenJwks(jwksPath, key)
    const kept: GeneratedTokenKey = { keyPath, certPath, jwksPath, kid: key.kid, thumbprint: key.thumbprint, alg: key.alg, kept: true }
    if (key.certificateExpires !== undefined) kept.expires = key.certificateExpires
    return kept
  }
  if (!options.overwrite && (existsSync(keyPath) || existsSync(certPath))) {
    throw new TokenKeyError(`${dir} already holds token.key or token.crt; registries trusting it would reject tokens signed by a new key (overwrite to replace it)`)
  }
  const validityDays = options.validityDays ?? 3650
  if (!Number.isInteger(validityDays) || validityDays < 1) throw new TokenKeyError('validityDays must be a positive whole number')

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: options.bits ?? 3072 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  // A positive serial: a leading 01 keeps the top bit clear.
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`
  const now = Date.now()
  cert.validity.notBefore = new Date(now - 5 * 60_000)
  cert.validity.notAfter = new Date(now + validityDays * 24 * 3600 * 1000)
  const subject = [
    { name: 'commonName', value: (options.commonName ?? 'portier token signer').slice(0, 64) },
    { name: 'organizationName', value: 'Portier' },
  ]
  cert.setSubject(subject)
  cert.setIssuer(subject)
  cert.setExtensions([
    // Its own root: registry:2 verifies an `x5c` chain against the bundle, here a chain of one.
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyCertSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ])
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create())
  const certPem = forge.pki.certificateToPem(cert)

  writeKeyAndCertificate(keyPath, keyPem, certPath, certPem)
  const thumbprint = jwkThumbprint(publicKey)
  writeTokenJwks(jwksPath, { publicKey, alg, thumbprint })
  return { keyPath, certPath, jwksPath, kid: libtrustKeyId(publicKey), thumbprint, alg, expires: cert.validity.notAfter, kept: false }
}
