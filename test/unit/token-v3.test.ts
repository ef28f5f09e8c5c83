// Portier's tokens under registry 3.x's key selection (x5c chain to the rootcertbundle, else kid among RFC 7638 thumbprints and the jwks file) and under 2.8's, re-implemented from distribution's registry/auth/token.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createECDH, createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from 'jose'
import { createIssuer, generateTokenKey, jwkThumbprint, libtrustKeyId, loadTokenKey, writeTokenJwks, type IssuerOptions, type TokenKey } from '../../src/auth/token/index.js'
import { loadConfig } from '../../src/app/config.js'

const work = mkdtempSync(join(tmpdir(), 'portier-token-v3-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

const issuerName = 'portier'
const service = 'portier-registry'

// ---- A model of distribution's token access controller, written from its registry/auth/token code ----

/** What a registry was configured with: `auth.token.rootcertbundle` and (3.x only) `auth.token.jwks`. */
interface RegistryTokenConfig {
  rootcertbundle?: string
  jwks?: string
}

interface Registry {
  roots: X509Certificate[]
  /** kid → key: the certificates' keys under the version's key ID, then (3.x) the jwks keys under their own `kid`. */
  trustedKeys: Map<string, KeyObject>
}

// P-256's base point. Registry 3.x's GetRFC7638Thumbprint hashes params.Gx/params.Gy, the curve's
// generator, instead of the key's own point: every P-256 certificate gets the same "thumbprint".
const p256Gx = Buffer.from('6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296', 'hex').toString('base64url')
const p256Gy = Buffer.from('4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5', 'hex').toString('base64url')

/** Registry 3.x's key ID for a certificate in its rootcertbundle. */
async function v3CertificateKeyId(key: KeyObject): Promise<string> {
  const jwk = key.export({ format: 'jwk' })
  if (jwk.kty === 'RSA') return calculateJwkThumbprint({ kty: 'RSA', n: jwk.n, e: jwk.e } as JWK)
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return calculateJwkThumbprint({ kty: 'EC', crv: 'P-256', x: p256Gx, y: p256Gy })
  return ''
}

function certificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((block) => new X509Certificate(block))
}

/** newAccessController: roots from the bundle, trusted keys by thumbprint (3.x) or libtrust ID (2.8), jwks keys by their kid (3.x). */
async function registry(version: '2.8' | '3', config: RegistryTokenConfig): Promise<Registry> {
  const roots = config.rootcertbundle === undefined ? [] : certificates(readFileSync(config.rootcertbundle, 'utf8'))
  const jwks = config.jwks === undefined ? undefined : (JSON.parse(readFileSync(config.jwks, 'utf8')) as { keys: JWK[] })
  if (version === '2.8' && jwks !== undefined) throw new Error('registry 2.8 has no jwks option')
  if (roots.length === 0 && (jwks === undefined || jwks.keys.length === 0)) throw new Error('token auth requires at least one token signing key')
  const trustedKeys = new Map<string, KeyObject>()
  for (const root of roots) {
    const id = version === '3' ? await v3CertificateKeyId(root.publicKey) : libtrustKeyId(root.publicKey)
    if (id !== '') trustedKeys.set(id, root.publicKey)
  }
  for (const jwk of jwks?.keys ?? []) trustedKeys.set(jwk.kid ?? '', createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' }))
  return { roots, trustedKeys }
}

function validNow(certificate: X509Certificate): boolean {
  const now = Date.now()
  return Date.parse(certificate.validFrom) <= now && now <= Date.parse(certificate.validTo)
}

/**
 * x509.Certificate.Verify as the registry calls it (any extended key usage): a leaf that is itself a
 * root verifies; otherwise a path through the other x5c certificates to a root, each issuer a CA.
 */
function verifyChain(x5c: string[], roots: X509Certificate[]): KeyObject {
  const chain = x5c.map((der) => new X509Certificate(Buffer.from(der, 'base64')))
  const leaf = chain[0]
  if (leaf === undefined) throw new Error('empty x5c')
  const isRoot = (certificate: X509Certificate): boolean => roots.some((root) => root.raw.equals(certificate.raw))
  let current = leaf
  for (let depth = 0; depth < 8; depth++) {
    if (!validNow(current)) throw new Error('certificate has expired or is not yet valid')
    if (isRoot(current)) return leaf.publicKey
    const parent = [...chain.slice(1), ...roots].find((candidate) => candidate.ca && current.checkIssued(candidate) && current.verify(candidate.publicKey))
    if (parent === undefined) throw new Error('x509: certificate signed by unknown authority')
    current = parent
  }
  throw new Error('chain too long')
}

/** VerifySigningKey: 3.x tries x5c and falls back to jwk/kid only when x5c is absent; 2.8 the same order (x5c, jwk, kid). */
function signingKey(reg: Registry, header: { x5c?: string[]; kid?: string; jwk?: unknown }): KeyObject {
  if (header.x5c !== undefined && header.x5c.length > 0) return verifyChain(header.x5c, reg.roots)
  if (header.jwk !== undefined) throw new Error('jwk headers are not modelled (Portier never sends one)')
  if (header.kid !== undefined && header.kid !== '') {
    const key = reg.trustedKeys.get(header.kid)
    if (key === undefined) throw new Error(`token signed by untrusted key with ID: "${header.kid}"`)
    return key
  }
  throw new Error('invalid token')
}

const signingAlgorithms = ['EdDSA', 'RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512']

/** Token.Verify: the key, then signature, issuer, audience and times with 60 s of leeway. 'accepted' or why not. */
async function verdict(reg: Registry, token: string): Promise<string> {
  try {
    const header = decodeProtectedHeader(token)
    if (typeof header.alg !== 'string' || !signingAlgorithms.includes(header.alg)) return 'malformed token'
    const key = signingKey(reg, header)
    await jwtVerify(token, key, { algorithms: [header.alg], issuer: issuerName, audience: service, clockTolerance: 60 })
    return 'accepted'
  } catch (error) {
    return (error as Error).message
  }
}

// ---- Portier's side ----

async function token(key: TokenKey, options: Partial<IssuerOptions> = {}): Promise<string> {
  return (await createIssuer({ key, issuer: issuerName, service, ...options }).issue({ subject: 'ann', access: [{ type: 'repository', name: 'team/app', actions: ['pull'] }] })).token
}

const ownDir = join(work, 'own')
const generated = generateTokenKey(ownDir, { bits: 2048 })
const own = loadTokenKey(generated.keyPath, generated.certPath)
const strangerDir = join(work, 'stranger')
generateTokenKey(strangerDir, { bits: 2048 })
const stranger = loadTokenKey(join(strangerDir, 'token.key'), join(strangerDir, 'token.crt'))

t.test('the thumbprint and the model check out against independent vectors', async (t) => {
  // RFC 7638 section 3.1: this RSA key's SHA-256 thumbprint.
  const rfcKey = createPublicKey({
    key: {
      kty: 'RSA',
      e: 'AQAB',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    },
    format: 'jwk',
  })
  t.equal(jwkThumbprint(rfcKey), 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs', "Portier's thumbprint of RFC 7638's example key")
  // The model's P-256 base point is the public key of private scalar 1.
  const one = createECDH('prime256v1')
  one.setPrivateKey(Buffer.concat([Buffer.alloc(31), Buffer.from([1])]))
  t.equal(one.getPublicKey('hex'), `04${Buffer.from(p256Gx, 'base64url').toString('hex')}${Buffer.from(p256Gy, 'base64url').toString('hex')}`, 'Gx, Gy are P-256\'s generator')
})

t.test('token-key writes token.jwks: the public key only, 0644, kid = its RFC 7638 thumbprint (as jose computes it)', async (t) => {
  t.equal(generated.jwksPath, join(ownDir, 'token.jwks'))
  t.equal(statSync(generated.jwksPath).mode & 0o777, 0o644)
  const jwks = JSON.parse(readFileSync(generated.jwksPath, 'utf8')) as { keys: JWK[] }
  t.equal(jwks.keys.length, 1)
  const jwk = jwks.keys[0] as JWK
  t.equal(jwk.d, undefined, 'no private member')
  t.same([jwk.kty, jwk.alg, jwk.use], ['RSA', 'RS256', 'sig'])
  const expected = await calculateJwkThumbprint(own.publicKey.export({ format: 'jwk' }) as JWK)
  t.equal(jwk.kid, expected, 'kid is the RFC 7638 thumbprint')
  t.equal(own.thumbprint, expected, 'loadTokenKey computes the same thumbprint')
  t.equal(generated.thumbprint, expected)
  // The file verifies the key's own signatures (jose's JWKS selection by kid).
  const signed = await token(own, { keyId: 'thumbprint' })
  const { payload } = await jwtVerify(signed, createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]), { issuer: issuerName, audience: service })
  t.equal(payload.sub, 'ann')
  const unwritable = join(generated.keyPath, 'token.jwks')
  t.throws(() => writeTokenJwks(unwritable, own), { name: 'TokenKeyError', message: /token\.key\/token\.jwks: cannot write the JWKS \(E[A-Z]+: / }, 'a JWKS that cannot be written is a TokenKeyError naming the file (the CLI prints it)')
})

t.test("Portier's default token (libtrust kid + x5c): accepted by 3.x and 2.8 with the certificate as rootcertbundle", async (t) => {
  const signed = await token(own, { includeX5c: true })
  const header = decodeProtectedHeader(signed)
  t.equal(header.kid, own.kid, 'kid stays the libtrust key ID by default')
  t.same(header.x5c, [own.chain[0]?.toString('base64')])
  t.equal(await verdict(await registry('3', { rootcertbundle: generated.certPath }), signed), 'accepted', '3.x: x5c chain verified to the bundle')
  t.equal(await verdict(await registry('2.8', { rootcertbundle: generated.certPath }), signed), 'accepted', '2.8: x5c chain verified to the bundle')
  t.equal(await verdict(await registry('3', { rootcertbundle: generated.certPath, jwks: generated.jwksPath }), signed), 'accepted', '3.x with both files')
  // 3.x never falls back from a failing x5c to kid: with only a jwks file, its empty root pool refuses the chain.
  t.match(await verdict(await registry('3', { jwks: generated.jwksPath }), signed), /unknown authority/, '3.x with jwks only refuses x5c tokens (include_x5c: false is needed there)')
})

t.test('without x5c: 3.x refuses the libtrust kid and accepts the thumbprint kid (rootcertbundle or jwks); 2.8 the other way round', async (t) => {
  const libtrust = await token(own)
  const thumbprint = await token(own, { keyId: 'thumbprint' })
  t.equal(decodeProtectedHeader(thumbprint).kid, own.thumbprint)
  t.equal(decodeProtectedHeader(thumbprint).x5c, undefined)
  const v3Bundle = await registry('3', { rootcertbundle: generated.certPath })
  const v3Jwks = await registry('3', { jwks: generated.jwksPath })
  const v28 = await registry('2.8', { rootcertbundle: generated.certPath })
  t.match(await verdict(v3Bundle, libtrust), /untrusted key with ID/, '3.x: a libtrust kid is not a key ID it knows')
  t.match(await verdict(v3Jwks, libtrust), /untrusted key with ID/)
  t.equal(await verdict(v3Bundle, thumbprint), 'accepted', '3.x: thumbprint of the bundle certificate')
  t.equal(await verdict(v3Jwks, thumbprint), 'accepted', '3.x: kid of token.jwks')
  t.equal(await verdict(v28, libtrust), 'accepted', '2.8: libtrust kid (the default key_id)')
  t.match(await verdict(v28, thumbprint), /untrusted key with ID/, '2.8 does not know thumbprints: why libtrust stays the default')
})

t.test('another key is refused by 3.x whatever its header claims', async (t) => {
  const v3 = await registry('3', { rootcertbundle: generated.certPath, jwks: generated.jwksPath })
  const impostor: TokenKey = { ...stranger, kid: own.kid, thumbprint: own.thumbprint }
  t.match(await verdict(v3, await token(impostor, { includeX5c: true })), /unknown authority/, 'its own certificate as x5c, our kid: the chain does not reach the bundle')
  t.match(await verdict(v3, await token(impostor, { keyId: 'thumbprint' })), /signature/, 'our thumbprint as kid, no x5c: the signature fails under our key')
  t.match(await verdict(v3, await token(stranger, { keyId: 'thumbprint' })), /untrusted key with ID/, 'its own thumbprint: not a trusted key')
  const forgedChain = await token({ ...impostor, chain: own.chain }, { includeX5c: true })
  t.match(await verdict(v3, forgedChain), /signature/, 'our certificate as x5c, signed by another key: the signature fails')
  t.match(await verdict(v3, await createIssuer({ key: own, issuer: issuerName, service: 'elsewhere', includeX5c: true }).issue({ subject: 'ann', access: [] }).then((issued) => issued.token)), /aud/, 'the model checks claims too')
})

t.test('ES256 (openssl key and certificate): 3.x accepts x5c and the jwks file; its bundle thumbprint of EC keys is the curve base point', async (t) => {
  const dir = join(work, 'es')
  mkdirSync(dir)
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=portier token signer', '-keyout', join(dir, 'token.key'), '-out', join(dir, 'token.crt')], { stdio: 'ignore' })
  } catch {
    t.comment('skipped: openssl cannot make an EC certificate here')
    return
  }
  // token-key keeps a key made elsewhere and writes its jwks.
  const before = readFileSync(join(dir, 'token.key'))
  const kept = generateTokenKey(dir, { keepExisting: true })
  t.equal(kept.kept, true)
  t.ok(readFileSync(join(dir, 'token.key')).equals(before), 'the existing key is untouched')
  const es = loadTokenKey(join(dir, 'token.key'), join(dir, 'token.crt'))
  t.equal(es.alg, 'ES256')
  const jwk = (JSON.parse(readFileSync(kept.jwksPath, 'utf8')) as { keys: JWK[] }).keys[0] as JWK
  t.same([jwk.kty, jwk.crv, jwk.alg, jwk.kid], ['EC', 'P-256', 'ES256', await calculateJwkThumbprint(es.publicKey.export({ format: 'jwk' }) as JWK)])

  const v3Bundle = await registry('3', { rootcertbundle: join(dir, 'token.crt') })
  t.equal(await verdict(v3Bundle, await token(es, { includeX5c: true })), 'accepted', 'x5c')
  t.match(await verdict(v3Bundle, await token(es, { keyId: 'thumbprint' })), /untrusted key with ID/, 'thumbprint kid against the bundle: 3.x filed the key under the base point')
  t.equal(await verdict(await registry('3', { jwks: kept.jwksPath }), await token(es, { keyId: 'thumbprint' })), 'accepted', 'thumbprint kid against token.jwks')
})

t.test('auth.token.key_id: libtrust by default, thumbprint accepted, anything else names the key', async (t) => {
  t.equal(loadConfig({ env: {} }).config.auth.token.key_id, 'libtrust')
  t.equal(loadConfig({ env: { PORTIER_AUTH_TOKEN_KEY_ID: 'thumbprint' } }).config.auth.token.key_id, 'thumbprint')
  t.throws(() => loadConfig({ env: { PORTIER_AUTH_TOKEN_KEY_ID: 'x5t' } }), /key_id/)
})
