// Token auth building blocks: scopes and challenges, libtrust key IDs, keys, issue/verify round trips, forged tokens, refresh tokens, the verifier cache and the token endpoint.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'
import { exportJWK, SignJWT } from 'jose'
import {
  challengeFor,
  covers,
  createIssuer,
  createTokenEndpoint,
  createVerifier,
  formatScope,
  generateTokenKey,
  intersectScopes,
  libtrustKeyId,
  loadTokenKey,
  parseScopes,
  TokenError,
  TokenKeyError,
  type Scope,
  type TokenRequestEnded,
  type TokenKey,
  type Verifier,
} from '../../src/auth/token/index.js'

const work = mkdtempSync(join(tmpdir(), 'portier-token-unit-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// A fixed P-256 key: its libtrust key ID was computed independently with
// `openssl pkey -pubout -outform DER | openssl dgst -sha256 -binary | head -c 30 | base32`.
const vectorKey = [
  '-----BEGIN PRIVATE KEY-----',
  'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoOqeI0HzK7zvmtbz',
  'nfCCtYD03vvvp7vgcKvf+N4BcIehRANCAAQZnbIPsfQDp7BNPp8S1VDKuriIBqUB',
  'QUU0VD0KnUTHcLh7tLaKRDqrNVNEvQP/Lc/8DfaP+Uwn32RtStyCtgWa',
  '-----END PRIVATE KEY-----',
  '',
].join('\n')
const vectorKid = 'Z7PH:C2Y7:XYZG:ZPPJ:MFKE:256T:T36N:DDAS:G4PU:3733:UL33:4JDV'

/** The libtrust key ID as coreutils and openssl compute it, independent of Portier's base32. */
function opensslKid(keyFile: string): string {
  const der = execFileSync('openssl', ['pkey', '-in', keyFile, '-pubout', '-outform', 'DER'])
  const digest = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).subarray(0, 30)
  const encoded = execFileSync('base32', ['-w', '0'], { input: digest }).toString().replace(/=+$/, '')
  return encoded.match(/.{1,4}/g)?.join(':') ?? ''
}

function rsaKey(dir: string): TokenKey {
  generateTokenKey(dir, { bits: 2048 })
  return loadTokenKey(join(dir, 'token.key'), join(dir, 'token.crt'))
}

const repo = (name: string, ...actions: Scope['actions']): Scope => ({ type: 'repository', name, actions })

/** 'accepted', or the refusal as reason/problem. */
async function problemOf(verifier: Verifier, token: string): Promise<string> {
  try {
    await verifier.verify(token)
    return 'accepted'
  } catch (error) {
    if (error instanceof TokenError) return `${error.reason}/${error.problem}`
    throw error
  }
}

t.test('scopes: actions, several per value, host:port names, repository(plugin), unknown types dropped', async (t) => {
  t.same(parseScopes('repository:samalba/my-app:pull,push'), [repo('samalba/my-app', 'pull', 'push')])
  t.same(parseScopes('repository:a/b:pull repository:c:push,pull'), [repo('a/b', 'pull'), repo('c', 'push', 'pull')], 'space-separated')
  t.same(parseScopes(['repository:a:pull', 'repository:a:push', 'repository:b:delete']), [repo('a', 'pull', 'push'), repo('b', 'delete')], 'repeated names merge')
  t.same(parseScopes('repository:localhost:5000/team/app:pull'), [repo('localhost:5000/team/app', 'pull')], 'host:port stays in the name')
  t.same(parseScopes('repository:registry.example.com:443/app:pull,push'), [repo('registry.example.com:443/app', 'pull', 'push')])
  t.same(parseScopes('repository(plugin):vieux/sshfs:pull'), [repo('vieux/sshfs', 'pull')], 'repository(plugin) is repository')
  t.same(parseScopes('registry:catalog:*'), [{ type: 'registry', name: 'catalog', actions: ['*'] }])
  t.same(parseScopes('plugin:x:pull repository:ok:pull'), [repo('ok', 'pull')], 'an unknown type grants nothing')
  t.same(parseScopes('repository:a:pull,fly,pull'), [repo('a', 'pull')], 'unknown and repeated actions are dropped')
  t.same(parseScopes('repository:a:fly'), [], 'no known action → nothing')
  t.same(parseScopes('repository:Bad/Name:pull repository:a:'), [], 'invalid name, empty actions')
  t.same(parseScopes('repository:nocolon'), [])
  t.same(parseScopes(''), [])
  t.equal(formatScope(repo('localhost:5000/a', 'pull', 'push')), 'repository:localhost:5000/a:pull,push')
})

t.test('challenges carry realm, service, space-separated scopes and the error', async (t) => {
  t.equal(
    challengeFor([repo('samalba/my-app', 'pull', 'push')], 'https://auth/token', 'registry'),
    'Bearer realm="https://auth/token",service="registry",scope="repository:samalba/my-app:pull,push"',
  )
  t.equal(
    challengeFor([repo('a', 'pull'), repo('b', 'pull', 'push')], 'https://gw/auth/token', 'portier', 'insufficient_scope'),
    'Bearer realm="https://gw/auth/token",service="portier",scope="repository:a:pull repository:b:pull,push",error="insufficient_scope"',
  )
  t.equal(challengeFor([], 'https://gw/auth/token', 'portier', 'invalid_token'), 'Bearer realm="https://gw/auth/token",service="portier",error="invalid_token"')
  t.equal(challengeFor([], 'r"x', 's\\'), 'Bearer realm="r\\"x",service="s\\\\"', 'quotes and backslashes are escaped')
})

t.test('intersection and coverage: * allows any action, asking for * needs *', async (t) => {
  const asked = [repo('a', 'pull', 'push'), repo('b', 'pull', 'delete'), repo('c', 'pull')]
  t.same(intersectScopes(asked, [repo('a', 'pull'), repo('b', '*')]), [repo('a', 'pull'), repo('b', 'pull', 'delete')])
  t.same(intersectScopes([{ type: 'registry', name: 'catalog', actions: ['*'] }], [{ type: 'registry', name: 'catalog', actions: ['pull'] }]), [])
  t.same(covers([repo('a', 'pull', 'push')], [repo('a', 'pull')]), [])
  t.same(covers([repo('a', 'pull')], [repo('a', 'pull', 'push')]), [repo('a', 'pull', 'push')], 'a partly covered scope is returned whole')
  t.same(covers([repo('a', '*')], [repo('a', 'delete')]), [])
  t.same(covers([repo('a', 'pull')], [repo('b', 'pull')]), [repo('b', 'pull')], 'repo A does not cover repo B')
  t.same(covers([], [{ type: 'registry', name: 'catalog', actions: ['*'] }]), [{ type: 'registry', name: 'catalog', actions: ['*'] }])
})

t.test('libtrust key ID matches an independent computation (openssl + coreutils base32)', async (t) => {
  const file = join(work, 'vector.key')
  writeFileSync(file, vectorKey)
  t.equal(libtrustKeyId(createPrivateKey(vectorKey)), vectorKid, 'known vector')
  t.equal(opensslKid(file), vectorKid, 'the vector itself is what openssl computes')
  const dir = join(work, 'kid-rsa')
  const generated = generateTokenKey(dir, { bits: 2048 })
  t.equal(generated.kid, opensslKid(generated.keyPath), 'an RSA key too')
  t.match(generated.kid, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/)
})

t.test('generateTokenKey writes a 0600 key and its self-signed certificate, and never overwrites silently', async (t) => {
  const dir = join(work, 'gen')
  const generated = generateTokenKey(dir, { bits: 2048, commonName: 'unit test signer' })
  t.equal(statSync(generated.keyPath).mode & 0o777, 0o600)
  const text = execFileSync('openssl', ['x509', '-in', generated.certPath, '-noout', '-subject', '-issuer']).toString()
  t.match(text, /subject=.*CN *= *unit test signer/)
  const loaded = loadTokenKey(generated.keyPath, generated.certPath)
  t.equal(loaded.alg, 'RS256')
  t.equal(loaded.kid, generated.kid)
  t.equal(loaded.chain.length, 1)
  t.ok((loaded.certificateExpires?.getTime() ?? 0) > Date.now() + 3000 * 24 * 3600 * 1000)
  t.throws(() => generateTokenKey(dir), TokenKeyError, 'an existing key is kept')
  t.equal(generateTokenKey(dir, { bits: 2048, overwrite: true }).kid === generated.kid, false, 'overwrite makes a new key')
  t.throws(() => generateTokenKey(join(work, 'es'), { alg: 'ES256' }), /openssl req -x509 -newkey ec/, 'ES256 generation points to openssl')
})

t.test('loadTokenKey: ES256 keys made by openssl, mismatched certificates and weak keys', async (t) => {
  const dir = mkdtempSync(join(work, 'es256-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=es', '-keyout', join(dir, 'token.key'), '-out', join(dir, 'token.crt')], { stdio: 'ignore' })
  const es = loadTokenKey(join(dir, 'token.key'), join(dir, 'token.crt'))
  t.equal(es.alg, 'ES256')
  t.equal(es.kid, opensslKid(join(dir, 'token.key')))

  const other = join(work, 'other')
  generateTokenKey(other, { bits: 2048 })
  t.throws(() => loadTokenKey(join(dir, 'token.key'), join(other, 'token.crt')), /does not belong/)
  const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' })
  writeFileSync(join(dir, 'weak.key'), weak)
  t.throws(() => loadTokenKey(join(dir, 'weak.key')), /at least 2048 bits/)
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' })
  writeFileSync(join(dir, 'p384.key'), p384)
  t.throws(() => loadTokenKey(join(dir, 'p384.key')), /P-256/)
})

const signer = rsaKey(join(work, 'signer'))
const stranger = rsaKey(join(work, 'stranger'))
const signerCert = readFileSync(join(work, 'signer', 'token.crt'), 'utf8')
const base = { issuer: 'portier-test', service: 'registry.test' }

t.test('issue then verify: claims, header kid and x5c, RS256 and ES256', async (t) => {
  const issuer = createIssuer({ key: signer, ...base, ttlSeconds: 120, includeX5c: true })
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  const access = [repo('team/app', 'pull', 'push'), { type: 'registry' as const, name: 'catalog', actions: ['*' as const] }]
  const issued = await issuer.issue({ subject: 'ann', access })
  t.equal(issued.expiresIn, 120)
  t.ok(Math.abs(Date.parse(issued.issuedAt) - Date.now()) < 5000, 'issued_at is RFC 3339 and now')
  const [headerPart, payloadPart] = issued.token.split('.')
  const header = JSON.parse(Buffer.from(headerPart as string, 'base64url').toString()) as Record<string, unknown>
  const claims = JSON.parse(Buffer.from(payloadPart as string, 'base64url').toString()) as Record<string, unknown>
  t.same(header, { alg: 'RS256', typ: 'JWT', kid: signer.kid, x5c: [signer.chain[0]?.toString('base64')] })
  t.same(Object.keys(claims).sort(), ['access', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'sub'])
  t.equal(claims.aud, base.service)
  t.equal((claims.exp as number) - (claims.iat as number), 120)
  const verified = await verifier.verify(issued.token)
  t.equal(verified.subject, 'ann')
  t.same(verified.access, access)
  t.equal(verified.exp, claims.exp)
  t.same(covers(verified.access, [repo('team/app', 'push')]), [])

  const dir = mkdtempSync(join(work, 'es-rt-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=es', '-keyout', join(dir, 'k'), '-out', join(dir, 'c')], { stdio: 'ignore' })
  const es = loadTokenKey(join(dir, 'k'), join(dir, 'c'))
  const esToken = await createIssuer({ key: es, ...base }).issue({ subject: '', access: [repo('a', 'pull')] })
  const esVerifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: [es.publicKey] })
  t.same((await esVerifier.verify(esToken.token)).access, [repo('a', 'pull')], 'ES256 round trip, anonymous subject')
  t.throws(() => createIssuer({ key: signer, ...base, ttlSeconds: 30 }), RangeError, 'expires_in never below 60')
})

t.test('the verifier takes a JWKS (object or JSON) and ignores symmetric keys in it', async (t) => {
  const issuer = createIssuer({ key: signer, ...base })
  const { token } = await issuer.issue({ subject: 'ann', access: [repo('a', 'pull')] })
  const jwk = { ...(await exportJWK(signer.publicKey)), kid: 'my-own-kid', use: 'sig' }
  const oct = { kty: 'oct', k: Buffer.from('secret').toString('base64url'), kid: 'hmac' }
  const fromObject = await createVerifier({ issuer: base.issuer, audience: base.service, keys: { keys: [oct, jwk] } })
  t.equal((await fromObject.verify(token)).subject, 'ann', 'libtrust kid matches a JWKS key')
  const fromJson = await createVerifier({ issuer: base.issuer, audience: base.service, keys: JSON.stringify({ keys: [jwk] }) })
  const ownKid = await new SignJWT({ access: [] }).setProtectedHeader({ alg: 'RS256', kid: 'my-own-kid' }).setIssuer(base.issuer).setAudience(base.service).setExpirationTime('5m').setSubject('x').sign(signer.privateKey)
  t.equal((await fromJson.verify(ownKid)).subject, 'x', 'the JWKS kid matches too')
  await t.rejects(createVerifier({ issuer: base.issuer, audience: base.service, keys: { keys: [oct] } }), /no usable token verification key/)
  await t.rejects(createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert, algorithms: ['HS256'] }), /not accepted/)
})

t.test('forged and invalid tokens are rejected as invalid_token, with the failed check named', async (t) => {
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert, clockSkewSeconds: 10 })
  const access = [repo('a', 'pull', 'push')]
  const claims = { access, iss: base.issuer, aud: base.service, sub: 'ann' }
  const good = await createIssuer({ key: signer, ...base }).issue({ subject: 'ann', access })
  t.equal(await problemOf(verifier, good.token), 'accepted')

  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const exp = Math.floor(Date.now() / 1000) + 300
  const none = `${b64({ alg: 'none', typ: 'JWT', kid: signer.kid })}.${b64({ ...claims, exp })}.`
  t.equal(await problemOf(verifier, none), 'invalid_token/algorithm', 'alg none')

  const publicPem = signer.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const confused = await new SignJWT({ access }).setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: signer.kid })
    .setIssuer(base.issuer).setAudience(base.service).setSubject('ann').setExpirationTime('5m').sign(new TextEncoder().encode(publicPem))
  t.equal(await problemOf(verifier, confused), 'invalid_token/algorithm', 'HS256 with the public key as the secret (key confusion)')

  const byStrangerClaimingOurKid = await new SignJWT({ access }).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: signer.kid })
    .setIssuer(base.issuer).setAudience(base.service).setSubject('ann').setExpirationTime('5m').sign(stranger.privateKey)
  t.equal(await problemOf(verifier, byStrangerClaimingOurKid), 'invalid_token/signature', 'another key, our kid')
  const byStranger = await createIssuer({ key: stranger, ...base }).issue({ subject: 'ann', access })
  t.equal(await problemOf(verifier, byStranger.token), 'invalid_token/unknown_key', 'another key, its own kid')
  const byStrangerX5c = await createIssuer({ key: stranger, ...base, includeX5c: true }).issue({ subject: 'ann', access })
  t.equal(await problemOf(verifier, byStrangerX5c.token), 'invalid_token/unknown_key', 'another key with its own self-signed x5c')
  const noKid = await new SignJWT({ access }).setProtectedHeader({ alg: 'RS256' }).setIssuer(base.issuer).setAudience(base.service).setSubject('ann').setExpirationTime('5m').sign(stranger.privateKey)
  t.equal(await problemOf(verifier, noKid), 'invalid_token/signature', 'no kid: every trusted key is tried, none verifies')

  const hourAgo = createIssuer({ key: signer, ...base, now: () => Date.now() - 3600_000 })
  t.equal(await problemOf(verifier, (await hourAgo.issue({ subject: 'ann', access })).token), 'invalid_token/expired')
  const inAnHour = createIssuer({ key: signer, ...base, now: () => Date.now() + 3600_000 })
  t.equal(await problemOf(verifier, (await inAnHour.issue({ subject: 'ann', access })).token), 'invalid_token/not_yet_valid')
  const fiveSecondsAhead = createIssuer({ key: signer, ...base, now: () => Date.now() + 5000 })
  t.equal(await problemOf(verifier, (await fiveSecondsAhead.issue({ subject: 'ann', access })).token), 'accepted', 'within the clock skew')
  const otherService = createIssuer({ key: signer, issuer: base.issuer, service: 'other.registry' })
  t.equal(await problemOf(verifier, (await otherService.issue({ subject: 'ann', access })).token), 'invalid_token/audience')
  const otherIssuer = createIssuer({ key: signer, issuer: 'someone-else', service: base.service })
  t.equal(await problemOf(verifier, (await otherIssuer.issue({ subject: 'ann', access })).token), 'invalid_token/issuer')
  const noExp = await new SignJWT({ access }).setProtectedHeader({ alg: 'RS256', kid: signer.kid }).setIssuer(base.issuer).setAudience(base.service).setSubject('ann').sign(signer.privateKey)
  t.equal(await problemOf(verifier, noExp), 'invalid_token/claims', 'exp is required')
  const [h, p, s] = good.token.split('.') as [string, string, string]
  const widened = `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), access: [repo('a', '*')] })}.${s}`
  t.equal(await problemOf(verifier, widened), 'invalid_token/signature', 'edited claims')
  t.equal(await problemOf(verifier, 'not.a.jwt'), 'invalid_token/malformed')
  t.equal(await problemOf(verifier, ''), 'invalid_token/malformed')

  const forA = await verifier.verify(good.token)
  t.same(covers(forA.access, [repo('b', 'pull')]), [repo('b', 'pull')], 'a token for repo A checked against repo B misses B')
})

t.test('x5c chains: a leaf issued by a trusted CA is accepted without a known kid; an expired leaf is not', async (t) => {
  const caKeys = forge.pki.rsa.generateKeyPair(2048)
  const ca = forge.pki.createCertificate()
  ca.publicKey = caKeys.publicKey
  ca.serialNumber = '01'
  ca.validity.notBefore = new Date(Date.now() - 3600_000)
  ca.validity.notAfter = new Date(Date.now() + 3600_000)
  ca.setSubject([{ name: 'commonName', value: 'token CA' }])
  ca.setIssuer([{ name: 'commonName', value: 'token CA' }])
  ca.setExtensions([{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, digitalSignature: true }])
  ca.sign(caKeys.privateKey, forge.md.sha256.create())
  const leafFor = (notAfter: Date): string => {
    const leaf = forge.pki.createCertificate()
    leaf.publicKey = forge.pki.publicKeyFromPem(stranger.publicKey.export({ type: 'spki', format: 'pem' }).toString())
    leaf.serialNumber = `02${randomBytes(4).toString('hex')}`
    leaf.validity.notBefore = new Date(Date.now() - 7200_000)
    leaf.validity.notAfter = notAfter
    leaf.setSubject([{ name: 'commonName', value: 'token signer' }])
    leaf.setIssuer(ca.subject.attributes)
    leaf.sign(caKeys.privateKey, forge.md.sha256.create())
    return Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(leaf)).getBytes(), 'binary').toString('base64')
  }
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: forge.pki.certificateToPem(ca) })
  const sign = (x5c: string[]): Promise<string> =>
    new SignJWT({ access: [] }).setProtectedHeader({ alg: 'RS256', kid: stranger.kid, x5c }).setIssuer(base.issuer).setAudience(base.service).setSubject('ann').setExpirationTime('5m').sign(stranger.privateKey)
  t.equal(await problemOf(verifier, await sign([leafFor(new Date(Date.now() + 3600_000))])), 'accepted')
  t.equal(await problemOf(verifier, await sign([leafFor(new Date(Date.now() - 3600_000))])), 'invalid_token/certificate')
  t.equal(await problemOf(verifier, await sign(['bm90IGEgY2VydA=='])), 'invalid_token/malformed')
})

t.test('refresh tokens are never access tokens, and access tokens never refresh', async (t) => {
  const issuer = createIssuer({ key: signer, ...base })
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  const refresh = await issuer.issueRefresh('ann')
  const { jti } = JSON.parse(Buffer.from(refresh.split('.')[1] as string, 'base64url').toString('utf8')) as { jti: string }
  t.match(jti, /^[A-Za-z0-9_-]{22}$/, 'a refresh token has an id of its own')
  t.same(await issuer.verifyRefresh(refresh), { subject: 'ann', id: jti }, 'its subject and id')
  t.equal(await problemOf(verifier, refresh), 'invalid_token/type', 'the verifier refuses the refresh typ')
  const lax = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  const [, p, s] = refresh.split('.') as [string, string, string]
  const retyped = `${Buffer.from(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: signer.kid })).toString('base64url')}.${p}.${s}`
  t.equal(await problemOf(lax, retyped), 'invalid_token/signature', 'the typ is signed, it cannot be swapped')
  const audOnly = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: signer.kid }).setIssuer(base.issuer)
    .setAudience(`portier-token-refresh:${base.service}`).setSubject('ann').setExpirationTime('5m').sign(signer.privateKey)
  t.equal(await problemOf(lax, audOnly), 'invalid_token/audience', 'the refresh audience is not the service')
  const access = await issuer.issue({ subject: 'ann', access: [] })
  const refusal = (promise: Promise<unknown>): Promise<string> =>
    promise.then(() => 'accepted', (error: unknown) => (error instanceof TokenError ? `${error.reason}/${error.problem}` : String(error)))
  t.equal(await refusal(issuer.verifyRefresh(access.token)), 'invalid_grant/invalid', 'an access token does not refresh')
  const otherKey = createIssuer({ key: stranger, ...base })
  t.equal(await refusal(issuer.verifyRefresh(await otherKey.issueRefresh('ann'))), 'invalid_grant/invalid', 'signed by another key')
  const expired = createIssuer({ key: signer, ...base, ttlSeconds: 60, refreshTtlSeconds: 60, now: () => Date.now() - 3600_000 })
  t.equal(await refusal(issuer.verifyRefresh(await expired.issueRefresh('ann'))), 'invalid_grant/expired')
})

t.test('a verified token is cached until exp, and the cache is bounded', async (t) => {
  let clock = Date.now()
  const issuer = createIssuer({ key: signer, ...base, ttlSeconds: 60, now: () => clock })
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert, clockSkewSeconds: 5, cacheSize: 2, now: () => clock })
  const { token } = await issuer.issue({ subject: 'ann', access: [repo('a', 'pull')] })
  for (let i = 0; i < 100; i++) await verifier.verify(token)
  t.same(verifier.stats(), { hits: 99, misses: 1, size: 1 }, 'one signature check for 100 requests')
  const cached = await verifier.verify(token)
  t.throws(() => cached.access.push(repo('b', 'push')), TypeError, 'cached claims cannot be changed by a caller')
  clock += 66_000
  t.equal(await problemOf(verifier, token), 'invalid_token/expired', 'past exp (+ skew) the cache does not answer')
  t.equal(verifier.stats().misses, 2)
  for (let i = 0; i < 5; i++) await verifier.verify((await issuer.issue({ subject: `u${i}`, access: [] })).token)
  t.equal(verifier.stats().size, 2, 'at most cacheSize tokens are kept')
})

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return `http://127.0.0.1:${address.port}/auth/token`
}

t.test('token endpoint: credentials, anonymous, service, account, grants, OAuth2 form, refresh and errors', async (t) => {
  const issuer = createIssuer({ key: signer, ...base })
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  const grants: Array<{ user: string; anonymous: boolean; ip: string }> = []
  let active = true
  const errors: unknown[] = []
  const endpoint = createTokenEndpoint({
    issuer,
    allowAnonymous: true,
    authenticate: async (user, password) => user === 'ann' && password === 'pw-ann',
    // The ACL: ann may push and pull ann/*, anyone may pull public/*; everything asked is returned
    // for the endpoint to intersect.
    grant: (who, scopes, ip) => {
      grants.push({ user: who.user, anonymous: who.anonymous, ip })
      if (who.user === 'boom') throw new Error('acl exploded')
      return scopes.flatMap((scope) =>
        scope.name.startsWith('public/') ? [repo(scope.name, 'pull')] : !who.anonymous && scope.name.startsWith('ann/') ? [repo(scope.name, '*')] : [],
      )
    },
    accountActive: () => active,
    onError: (error) => errors.push(error),
  })
  // What the endpoint tells the gateway of each request (the audit trail's user, name tried and credential), in order.
  const told: TokenRequestEnded[] = []
  const server = createServer((req, res) => void endpoint(req, res, req.socket.remoteAddress ?? '').then((ended) => told.push(ended)))
  const url = await listen(server)
  t.teardown(() => server.close())
  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  const claimsOf = async (response: Response): Promise<{ body: Record<string, unknown>; access: Scope[]; subject: string }> => {
    const body = (await response.json()) as Record<string, unknown>
    const verified = await verifier.verify(body.token as string)
    return { body, access: verified.access, subject: verified.subject }
  }

  const anon = await fetch(`${url}?service=${base.service}&scope=repository:public/x:pull,push&scope=repository:ann/y:pull`)
  t.equal(anon.status, 200)
  t.equal(anon.headers.get('cache-control'), 'no-store')
  const anonClaims = await claimsOf(anon)
  t.same(anonClaims.access, [repo('public/x', 'pull')], 'anonymous: fewer actions, not an error')
  t.equal(anonClaims.subject, '')
  t.same(Object.keys(anonClaims.body).sort(), ['access_token', 'expires_in', 'issued_at', 'token'])
  t.equal(anonClaims.body.access_token, anonClaims.body.token)
  t.ok((anonClaims.body.expires_in as number) >= 60)

  const ann = await fetch(`${url}?service=${base.service}&scope=${encodeURIComponent('repository:ann/y:pull,push repository:public/x:push')}&account=ann&client_id=docker&offline_token=true`, {
    headers: { authorization: basic('ann', 'pw-ann') },
  })
  t.equal(ann.status, 200)
  const annClaims = await claimsOf(ann)
  t.same(annClaims.access, [repo('ann/y', 'pull', 'push')], 'requested ∩ allowed; * is not widened')
  t.equal(annClaims.subject, 'ann')
  t.match(await issuer.verifyRefresh(annClaims.body.refresh_token as string), { subject: 'ann' }, 'offline_token=true gives a refresh token')
  t.equal(grants.at(-1)?.ip, '127.0.0.1')

  const wrong = await fetch(`${url}?service=${base.service}`, { headers: { authorization: basic('ann', 'nope') } })
  t.equal(wrong.status, 401)
  t.equal(wrong.headers.get('www-authenticate'), 'Basic realm="Portier token"')
  const wrongBody = (await wrong.json()) as { errors: Array<{ code: string }> }
  t.equal(wrongBody.errors[0]?.code, 'UNAUTHORIZED')
  t.equal((await fetch(url, { headers: { authorization: 'Bearer abc' } })).status, 401, 'only Basic credentials')
  t.equal((await fetch(`${url}?service=other`)).status, 400, 'another service is refused')
  t.equal((await fetch(`${url}?account=bob`, { headers: { authorization: basic('ann', 'pw-ann') } })).status, 400, 'account must match the credentials')
  t.equal((await fetch(url, { method: 'PUT' })).status, 405)

  const form = (fields: Record<string, string>): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  })
  const password = await fetch(url, form({ grant_type: 'password', username: 'ann', password: 'pw-ann', service: base.service, client_id: 'docker', access_type: 'offline', scope: 'repository:ann/z:push' }))
  t.equal(password.status, 200)
  const passwordClaims = await claimsOf(password)
  t.same(passwordClaims.access, [repo('ann/z', 'push')])
  t.equal(passwordClaims.body.scope, 'repository:ann/z:push')
  const refreshToken = passwordClaims.body.refresh_token as string
  t.type(refreshToken, 'string')

  const refreshed = await fetch(url, form({ grant_type: 'refresh_token', refresh_token: refreshToken, service: base.service, client_id: 'docker', scope: 'repository:ann/z:pull' }))
  t.equal(refreshed.status, 200)
  const refreshedClaims = await claimsOf(refreshed)
  t.same(refreshedClaims.access, [repo('ann/z', 'pull')], 'new scopes for the same subject')
  t.equal(refreshedClaims.subject, 'ann')
  t.equal(refreshedClaims.body.refresh_token, undefined, 'no refresh token unless access_type=offline')
  const again = await fetch(url, form({ grant_type: 'refresh_token', refresh_token: refreshToken, access_type: 'offline' }))
  t.equal(((await again.json()) as Record<string, unknown>).refresh_token, refreshToken, 'a refresh grant hands back the same refresh token')

  const accessAsRefresh = await fetch(url, form({ grant_type: 'refresh_token', refresh_token: passwordClaims.body.token as string }))
  t.equal(accessAsRefresh.status, 400)
  t.equal(((await accessAsRefresh.json()) as Record<string, unknown>).error, 'invalid_grant')
  active = false
  t.equal((await fetch(url, form({ grant_type: 'refresh_token', refresh_token: refreshToken }))).status, 400, 'a removed account cannot refresh')
  t.equal((await fetch(url, form({ grant_type: 'password', username: 'ann', password: 'bad' }))).status, 401)
  t.equal((await fetch(url, form({ grant_type: 'password', username: 'ann' }))).status, 400)
  // What the gateway was told of the POSTs above, from the password grant on (the audit trail names who, and with which credential).
  const refreshId = (JSON.parse(Buffer.from(refreshToken.split('.')[1] as string, 'base64url').toString('utf8')) as { jti: string }).jti
  const posts = told.slice(told.length - 7)
  t.same(posts, [
    { loginName: 'ann', user: 'ann' },
    { loginName: 'ann', refreshToken: refreshId, user: 'ann' },
    { loginName: 'ann', refreshToken: refreshId, user: 'ann' },
    {},
    { loginName: 'ann', refreshToken: refreshId },
    { loginName: 'ann' },
    { loginName: 'ann' },
  ], 'a password grant names the account; a refresh grant its refresh token; a refusal whom it refused, never as the user')
  t.same(told.slice(0, 2), [{}, { user: 'ann' }], 'GET: anonymous names nobody, a Basic login its account')
  const unsupported = await fetch(url, form({ grant_type: 'client_credentials' }))
  t.equal(((await unsupported.json()) as Record<string, unknown>).error, 'unsupported_grant_type')
  t.equal((await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 400)
  t.equal((await fetch(url, form({ grant_type: 'password', username: 'ann', password: 'x'.repeat(20_000) }))).status, 413)

  const closed = createTokenEndpoint({ issuer, allowAnonymous: false, authenticate: async () => true, grant: () => { throw new Error('acl exploded') } })
  const closedServer = createServer((req, res) => void closed(req, res, ''))
  const closedUrl = await listen(closedServer)
  t.teardown(() => closedServer.close())
  const noCredentials = await fetch(closedUrl)
  t.equal(noCredentials.status, 401, 'anonymous tokens only when allowed')
  t.equal(noCredentials.headers.get('www-authenticate'), 'Basic realm="Portier token"')
  t.equal((await fetch(closedUrl, { headers: { authorization: basic('x', 'y') } })).status, 500, 'an ACL failure is a 500, not a token')
  t.same(errors, [], 'the first endpoint saw no unexpected errors')
})

t.test('tokens issued in the future or valid for too long are refused (issue 12)', async (t) => {
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert, clockSkewSeconds: 30, maxTtlSeconds: 600 })
  const now = Math.floor(Date.now() / 1000)
  const signed = (iat: number | undefined, exp: number): Promise<string> => {
    const jwt = new SignJWT({ access: [repo('a', 'pull')] }).setProtectedHeader({ alg: 'RS256', kid: signer.kid }).setIssuer(base.issuer).setAudience(base.service).setSubject('ann').setExpirationTime(exp)
    if (iat !== undefined) jwt.setIssuedAt(iat)
    return jwt.sign(signer.privateKey)
  }
  t.equal(await problemOf(verifier, await signed(now, now + 300)), 'accepted', 'a 5-minute token')
  t.equal(await problemOf(verifier, await signed(now + 20, now + 320)), 'accepted', 'iat within the clock skew')
  t.equal(await problemOf(verifier, await signed(undefined, now + 600)), 'accepted', 'no iat, exp at the bound')
  t.equal(await problemOf(verifier, await signed(now + 3600, now + 3900)), 'invalid_token/not_yet_valid', 'iat an hour in the future')
  t.equal(await problemOf(verifier, await signed(now, now + 10 * 365 * 24 * 3600)), 'invalid_token/lifetime', 'exp ten years out')
  t.equal(await problemOf(verifier, await signed(now - 3600, now + 700)), 'invalid_token/lifetime', 'exp beyond the bound even with an old iat')
  const byDefault = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  t.equal(await problemOf(byDefault, await signed(now, now + 3500)), 'accepted', 'the default bound is an hour')
  t.equal(await problemOf(byDefault, await signed(now, now + 2 * 3600)), 'invalid_token/lifetime')

  const refreshing = createIssuer({ key: signer, ...base, refreshTtlSeconds: 3600 })
  const future = createIssuer({ key: signer, ...base, refreshTtlSeconds: 3600, now: () => Date.now() + 3600_000 })
  const refusal = (promise: Promise<unknown>): Promise<string> =>
    promise.then(() => 'accepted', (error: unknown) => (error instanceof TokenError ? `${error.reason}/${error.problem}` : String(error)))
  t.equal(await refusal(refreshing.verifyRefresh(await refreshing.issueRefresh('ann'))), 'accepted')
  t.match(await refusal(refreshing.verifyRefresh(await future.issueRefresh('ann'))), /^invalid_grant\//, 'a refresh token from the future (its nbf, or iat)')
  const longLived = createIssuer({ key: signer, ...base, refreshTtlSeconds: 10 * 365 * 24 * 3600 })
  t.equal(await refusal(refreshing.verifyRefresh(await longLived.issueRefresh('ann'))), 'invalid_grant/lifetime', 'a refresh token valid for ten years')
})

t.test('refresh tokens are bound to the credential they were issued for (issue 12)', async (t) => {
  const issuer = createIssuer({ key: signer, ...base })
  const refusal = (promise: Promise<unknown>): Promise<string> =>
    promise.then(() => 'accepted', (error: unknown) => (error instanceof TokenError ? `${error.reason}/${error.problem}` : String(error)))
  let current: string | undefined = '$2y$10$first-hash'
  const credentialOf = (user: string): string | undefined => (user === 'ann' ? current : undefined)
  const bound = await issuer.issueRefresh('ann', current)
  t.equal(await refusal(issuer.verifyRefresh(bound, credentialOf)), 'accepted', 'same password: accepted')
  t.notMatch(Buffer.from(bound.split('.')[1] ?? '', 'base64url').toString(), 'first-hash', 'the token does not carry the hash itself')
  const sameKeyElsewhere = createIssuer({ key: signer, ...base })
  t.equal(await refusal(sameKeyElsewhere.verifyRefresh(bound, credentialOf)), 'accepted', 'another instance with the same key accepts it')
  current = '$2y$10$second-hash'
  t.equal(await refusal(issuer.verifyRefresh(bound, credentialOf)), 'invalid_grant/credential', 'password changed: refused')
  current = undefined
  t.equal(await refusal(issuer.verifyRefresh(bound, credentialOf)), 'invalid_grant/credential', 'user removed: refused')
  current = '$2y$10$first-hash'
  t.equal(await refusal(issuer.verifyRefresh(await issuer.issueRefresh('ann'), credentialOf)), 'invalid_grant/credential', 'an unbound token is refused where tokens are bound')
  t.equal(await refusal(issuer.verifyRefresh(await issuer.issueRefresh('bob', '$2y$10$first-hash'), credentialOf)), 'invalid_grant/credential', 'bound to the user too')

  // Through the endpoint: a password grant with access_type=offline, then the password changes.
  const endpoint = createTokenEndpoint({
    issuer,
    allowAnonymous: false,
    authenticate: async (user, password) => user === 'ann' && password === 'pw-ann',
    grant: (_who, scopes) => scopes,
    credentialOf,
  })
  const server = createServer((req, res) => void endpoint(req, res, req.socket.remoteAddress ?? ''))
  const url = await listen(server)
  t.teardown(() => server.close())
  const form = (fields: Record<string, string>): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() })
  const login = await fetch(url, form({ grant_type: 'password', username: 'ann', password: 'pw-ann', access_type: 'offline' }))
  const refreshToken = ((await login.json()) as Record<string, string>).refresh_token as string
  t.equal((await fetch(url, form({ grant_type: 'refresh_token', refresh_token: refreshToken }))).status, 200, 'refresh works while the password is unchanged')
  current = '$2y$10$third-hash'
  const refused = await fetch(url, form({ grant_type: 'refresh_token', refresh_token: refreshToken }))
  t.equal(refused.status, 400)
  t.equal(((await refused.json()) as Record<string, unknown>).error, 'invalid_grant', 'refused after the password changed')
})

t.test('token endpoint: Basic Og== (empty user and password) is anonymous when anonymous tokens are on (issue 14)', async (t) => {
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: signerCert })
  const attempts: string[] = []
  const endpointFor = (allowAnonymous: boolean) =>
    createTokenEndpoint({
      issuer: createIssuer({ key: signer, ...base }),
      allowAnonymous,
      authenticate: async (user) => {
        attempts.push(user)
        return false
      },
      grant: (who, scopes) => (who.anonymous ? scopes.filter((scope) => scope.name.startsWith('public/')).map((scope) => repo(scope.name, 'pull')) : []),
    })
  for (const allowAnonymous of [true, false]) {
    const endpoint = endpointFor(allowAnonymous)
    const server = createServer((req, res) => void endpoint(req, res, req.socket.remoteAddress ?? ''))
    const url = await listen(server)
    t.teardown(() => server.close())
    const reply = await fetch(`${url}?service=${base.service}&scope=repository:public/x:pull`, { headers: { authorization: 'Basic Og==' } })
    if (allowAnonymous) {
      t.equal(reply.status, 200, 'anonymous on: a token')
      const verified = await verifier.verify(((await reply.json()) as { token: string }).token)
      t.equal(verified.subject, '', 'for the anonymous account')
      t.same(verified.access, [repo('public/x', 'pull')], 'with what anonymous callers are granted')
    } else {
      t.equal(reply.status, 401, 'anonymous off: 401')
      t.equal(reply.headers.get('www-authenticate'), 'Basic realm="Portier token"')
    }
    const emptyUser = await fetch(`${url}?service=${base.service}`, { headers: { authorization: `Basic ${Buffer.from(':secret').toString('base64')}` } })
    t.equal(emptyUser.status, 401, 'an empty user with a password is still refused')
  }
  t.same(attempts, [], 'no password check for empty credentials')
})

t.test('token endpoint: a login refused because too many password checks wait is a 503 with Retry-After, not a 401', async (t) => {
  const endpoint = createTokenEndpoint({
    issuer: createIssuer({ key: signer, ...base }),
    allowAnonymous: false,
    authenticate: async () => 'busy',
    grant: (_who, scopes) => scopes,
  })
  const server = createServer((req, res) => void endpoint(req, res, req.socket.remoteAddress ?? ''))
  const url = await listen(server)
  t.teardown(() => server.close())
  const reply = await fetch(`${url}?service=${base.service}`, { headers: { authorization: `Basic ${Buffer.from('ann:pw').toString('base64')}` } })
  t.equal(reply.status, 503)
  t.equal(reply.headers.get('retry-after'), '1')
  t.equal(((await reply.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE', 'docker prints the registry code')
})
