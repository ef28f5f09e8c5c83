// Token mode through the gateway: skopeo's bearer flow, challenges, scopes, forged tokens, and a
// registry:2 that verifies Portier's tokens itself (rootcertbundle from `portier token-key`).
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { SignJWT } from 'jose'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, CLI } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { createIssuer, generateTokenKey, loadTokenKey } from '../../src/auth/token/index.js'

const MiB = 1024 * 1024
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('token mode: bearer challenges, skopeo push/pull, scopes and forged tokens', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-token-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\nbob:${await hashPassword('bob-password', 10)}\n`)
  const keyDir = join(work, 'keys')
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'token',
        htpasswd: { path: htpasswd },
        token: { key: join(keyDir, 'token.key'), cert: join(keyDir, 'token.crt'), anonymous: true },
        acl: [
          { match: { account: 'alice' }, actions: ['*'] },
          { match: { account: 'bob', name: 'shared/*' }, actions: ['pull'] },
          { match: { account: '', name: 'public/*' }, actions: ['pull'] },
        ],
      },
    },
  })
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'generated the token signing key; give the certificate to registries that verify tokens (rootcertbundle)'), 'the signing key is generated on first start')
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const get = async (path: string, headers: Record<string, string> = {}, method: 'GET' | 'POST' = 'GET') => {
    const response = await request(`${gateway.url}${path}`, { dispatcher, method, headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...headers } })
    const text = await response.body.text()
    return { status: response.statusCode, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }
  const token = async (scope: string, who?: [string, string]) => {
    const reply = await get(`/auth/token?service=portier-registry&scope=${encodeURIComponent(scope)}`, who ? { authorization: basic(...who) } : {})
    t.equal(reply.status, 200, `token for ${scope} as ${who?.[0] ?? 'anonymous'}`)
    return reply.body.token as string
  }

  const base = await get('/v2/')
  t.equal(base.status, 401, '/v2/ without a token: 401')
  t.equal(base.headers['www-authenticate'], `Bearer realm="${gateway.url}/auth/token",service="portier-registry"`, 'Bearer challenge naming this gateway as realm')
  const manifest = await get('/v2/shared/app/manifests/v1')
  t.equal(manifest.headers['www-authenticate'], `Bearer realm="${gateway.url}/auth/token",service="portier-registry",scope="repository:shared/app:pull"`, 'the challenge carries the needed scope')

  // skopeo follows the challenge to /auth/token with Basic credentials, then pushes with the token.
  const image = await makeOciLayout(join(work, 'img'), { layers: [3 * MiB, 1 * MiB] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/shared/app:v1`, { destCertDir: gateway.certDir, destCreds: 'alice:alice-password' })
  await skopeoCopy(`docker://${gateway.host}/shared/app:v1`, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: 'bob:bob-password' })
  t.equal((await readOciLayout(join(work, 'back'), 'latest')).manifestDigest, image.manifestDigest, 'pushed by alice, pulled by bob through tokens: same digest')
  const bobPush = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/shared/app:v2`, { destCertDir: gateway.certDir, destCreds: 'bob:bob-password', allowFailure: true })
  t.not(bobPush.code, 0, "bob's push fails: his token only grants pull")
  const wrong = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/shared/app:v3`, { destCertDir: gateway.certDir, destCreds: 'alice:nope', allowFailure: true })
  t.not(wrong.code, 0, 'a wrong password gets no token')

  const bobToken = await token('repository:shared/app:pull,push', ['bob', 'bob-password'])
  const pulled = await get('/v2/shared/app/manifests/v1', { authorization: `Bearer ${bobToken}` })
  t.equal(pulled.status, 200, "bob's token pulls")
  const pushed = await get('/v2/shared/app/blobs/uploads/', { authorization: `Bearer ${bobToken}` }, 'POST')
  t.equal(pushed.status, 401, 'but the token (granted pull only) cannot push')
  t.match(pushed.headers['www-authenticate'], /error="insufficient_scope"/)
  const elsewhere = await get('/v2/other/app/manifests/v1', { authorization: `Bearer ${bobToken}` })
  t.match(elsewhere.headers['www-authenticate'], /error="insufficient_scope"/, 'a token for repository A does not open repository B')

  const anonymousToken = await token('repository:public/tool:pull')
  t.equal((await get('/v2/public/tool/tags/list', { authorization: `Bearer ${anonymousToken}` })).status, 404, 'anonymous token pulls public/* (registry: unknown repository)')

  // Forged tokens are all refused as invalid_token.
  const key = loadTokenKey(join(keyDir, 'token.key'), join(keyDir, 'token.crt'))
  const strangerFiles = generateTokenKey(join(work, 'stranger'), { bits: 2048 })
  const stranger = loadTokenKey(strangerFiles.keyPath, strangerFiles.certPath)
  const access = [{ type: 'repository' as const, name: 'shared/app', actions: ['pull' as const] }]
  const claims = { access }
  const forged: Record<string, string> = {
    'alg none': `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: 'portier', aud: 'portier-registry', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 300, access })).toString('base64url')}.`,
    'another key': (await createIssuer({ key: stranger, issuer: 'portier', service: 'portier-registry' }).issue({ subject: 'alice', access })).token,
    expired: (await createIssuer({ key, issuer: 'portier', service: 'portier-registry', ttlSeconds: 60, now: () => Date.now() - 3_600_000 }).issue({ subject: 'alice', access })).token,
    'wrong audience': (await createIssuer({ key, issuer: 'portier', service: 'someone-else' }).issue({ subject: 'alice', access })).token,
    'HS256 with the public key': await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256', kid: key.kid }).setIssuer('portier').setAudience('portier-registry').setSubject('alice').setExpirationTime('5m')
      .sign(new Uint8Array(key.publicKey.export({ type: 'spki', format: 'der' }))),
  }
  for (const [label, jwt] of Object.entries(forged)) {
    const reply = await get('/v2/shared/app/manifests/v1', { authorization: `Bearer ${jwt}` })
    t.equal(reply.status, 401, `${label}: 401`)
    t.match(reply.headers['www-authenticate'], /error="invalid_token"/, `${label}: invalid_token`)
  }
  await gateway.logsSettled()
  t.notMatch(JSON.stringify(gateway.logs), bobToken, 'tokens never reach the log')
})

t.test('a registry:2 with auth.token verifies the tokens Portier issues (key from portier token-key)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-token-registry-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const made = await run(process.execPath, [CLI, 'token-key', '--out', join(work, 'keys')])
  t.equal(made.code, 0, `portier token-key (${made.stderr.trim()})`)
  t.match(made.stdout, /key id \(kid\): [A-Z2-7]{4}(?::[A-Z2-7]{4}){11}/, 'prints the libtrust key id')
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\n`)
  // The realm is only advertised by the registry; clients talk to Portier, which challenges on its own.
  const registry = await registryFixture(t, {
    tokenAuth: { realm: 'https://127.0.0.1/auth/token', service: 'portier-registry', issuer: 'portier', rootcertbundle: join(work, 'keys', 'token.crt') },
  })
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, forward_authorization: true }],
      auth: { mode: 'token', htpasswd: { path: htpasswd }, token: { key: join(work, 'keys', 'token.key'), cert: join(work, 'keys', 'token.crt') } },
    },
  })
  const direct = await fetch(`${registry.url}/v2/`)
  await direct.arrayBuffer()
  t.equal(direct.status, 401, 'the registry itself demands a token')

  const image = await makeOciLayout(join(work, 'img'), { layers: [2 * MiB] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/verified/app:v1`, { destCertDir: gateway.certDir, destCreds: 'alice:alice-password' })
  await skopeoCopy(`docker://${gateway.host}/verified/app:v1`, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: 'alice:alice-password' })
  t.equal((await readOciLayout(join(work, 'back'), 'latest')).manifestDigest, image.manifestDigest, "push and pull through Portier with the registry verifying Portier's tokens")
  t.match(await registry.log(), /PUT \/v2\/verified\/app\/manifests\/v1 HTTP\/1.1" 201/, 'the registry accepted the manifest PUT with the forwarded token')
})

t.test('external issuer mode verifies tokens from another token server and issues none itself', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-token-external-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  // Stand-in for docker_auth: another key, another issuer name, its certificate as the trust bundle.
  const externalFiles = generateTokenKey(join(work, 'external'), { bits: 2048, commonName: 'docker_auth' })
  const external = createIssuer({ key: loadTokenKey(externalFiles.keyPath, externalFiles.certPath), issuer: 'docker_auth', service: 'portier-registry' })
  const ownFiles = generateTokenKey(join(work, 'own'), { bits: 2048 })
  const realm = 'https://auth.example.test/token'
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'token', token: { realm, external: { enabled: true, issuer: 'docker_auth', rootcertbundle: externalFiles.certPath } } },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const tags = async (headers: Record<string, string>) => {
    const response = await request(`${gateway.url}/v2/ext/app/tags/list`, { dispatcher, headers })
    await response.body.dump()
    return response
  }
  const access = [{ type: 'repository' as const, name: 'ext/app', actions: ['pull' as const] }]

  const challenged = await tags({})
  t.equal(challenged.headers['www-authenticate'], `Bearer realm="${realm}",service="portier-registry",scope="repository:ext/app:pull"`, 'the challenge sends clients to the external token server')
  const good = await tags({ authorization: `Bearer ${(await external.issue({ subject: 'carol', access })).token}` })
  t.equal(good.statusCode, 404, "the external issuer's token is accepted (registry: repository unknown)")
  const foreign = createIssuer({ key: loadTokenKey(ownFiles.keyPath, ownFiles.certPath), issuer: 'docker_auth', service: 'portier-registry' })
  const bad = await tags({ authorization: `Bearer ${(await foreign.issue({ subject: 'carol', access })).token}` })
  t.equal(bad.statusCode, 401, 'a token with the right issuer name but another key is refused')
  t.match(bad.headers['www-authenticate'], /error="invalid_token"/)
  const endpoint = await request(`${gateway.url}/auth/token?service=portier-registry`, { dispatcher })
  await endpoint.body.dump()
  t.equal(endpoint.statusCode, 404, 'no built-in token server in external mode')
})

t.test('skopeo login works in token mode (ping, challenge, token, ping)', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-token-login-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\n`)
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'token', htpasswd: { path: htpasswd }, token: { key: join(work, 'k', 'token.key'), cert: join(work, 'k', 'token.crt') } } },
  })
  const authfile = join(work, 'auth.json')
  const login = (password: string) => run('skopeo', ['login', '--authfile', authfile, '--cert-dir', gateway.certDir, '-u', 'alice', '--password-stdin', gateway.host], { input: `${password}\n` })
  const ok = await login('alice-password')
  t.equal(ok.code, 0, `skopeo login succeeds (${ok.stderr.trim()})`)
  t.match(readFileSync(authfile, 'utf8'), gateway.host, 'and stores the credentials for this registry')
  const denied = await login('wrong-password')
  t.not(denied.code, 0, 'a wrong password fails skopeo login')
})
