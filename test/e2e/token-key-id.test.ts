// auth.token.key_id through the running gateway: the key generated on first start comes with token.jwks, `thumbprint` tokens carry the key's RFC 7638 thumbprint (registry 3.x), a real 2.8.2 refuses them without x5c, and `portier token-key` keeps an existing key.
import t from 'tap'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, CLI } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { hashPassword } from '../../src/auth/hashes.js'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('key_id: thumbprint without x5c: tokens verify against token.jwks; registry 2.8.2 refuses them; token-key keeps the key', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-token-kid-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 5)}\n`)
  const keyDir = join(work, 'keys')
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'token',
        htpasswd: { path: htpasswd },
        token: { key: join(keyDir, 'token.key'), cert: join(keyDir, 'token.crt'), include_x5c: false, key_id: 'thumbprint' },
        acl: [{ match: { account: 'alice' }, actions: ['*'] }],
      },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const get = async (path: string, headers: Record<string, string>): Promise<{ status: number; text: string }> => {
    const response = await request(`${gateway.url}${path}`, { dispatcher, headers })
    return { status: response.statusCode, text: await response.body.text() }
  }

  // The key generated on first start comes with its JWKS.
  const jwks = JSON.parse(await readFile(join(keyDir, 'token.jwks'), 'utf8')) as JSONWebKeySet
  t.equal(jwks.keys.length, 1, 'token.jwks beside the generated key')
  const kid = jwks.keys[0]?.kid as string
  t.match(kid, /^[A-Za-z0-9_-]{43}$/, 'its kid is a SHA-256 thumbprint (base64url)')

  const reply = await get(`/auth/token?service=portier-registry&scope=${encodeURIComponent('repository:team/app:pull')}`, { authorization: basic('alice', 'alice-password') })
  t.equal(reply.status, 200, 'a token from the built-in token server')
  const token = (JSON.parse(reply.text) as { token: string }).token
  const header = decodeProtectedHeader(token)
  t.equal(header.kid, kid, 'kid is the thumbprint listed in token.jwks')
  t.equal(header.x5c, undefined, 'include_x5c: false')
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: 'portier', audience: 'portier-registry' })
  t.equal(payload.sub, 'alice', 'the token verifies with token.jwks alone (what registry 3.x does with auth.token.jwks)')
  t.equal((await get('/v2/', { authorization: `Bearer ${token}` })).status, 200, 'Portier accepts its own thumbprint-kid token')

  // A registry 2.8.2 trusting the same certificate looks kid up as a libtrust key ID: refused.
  const verifying = await registryFixture(t, {
    tokenAuth: { realm: 'https://127.0.0.1/auth/token', service: 'portier-registry', issuer: 'portier', rootcertbundle: join(keyDir, 'token.crt') },
  })
  const refused = await fetch(`${verifying.url}/v2/`, { headers: { authorization: `Bearer ${token}` } })
  await refused.arrayBuffer()
  t.equal(refused.status, 401, 'registry 2.8.2 refuses a thumbprint kid without x5c (why key_id defaults to libtrust)')

  // token-key on that directory keeps the key the registries trust and (re)writes its JWKS.
  const keyBefore = await readFile(join(keyDir, 'token.key'))
  await rm(join(keyDir, 'token.jwks'))
  const kept = await run(process.execPath, [CLI, 'token-key', '--out', keyDir])
  t.equal(kept.code, 0, `portier token-key on an existing key (${kept.stderr.trim()})`)
  t.match(kept.stdout, /kept the existing/)
  t.match(kept.stdout, new RegExp(`RFC 7638 thumbprint: ${kid}`), 'prints the thumbprint')
  t.ok((await readFile(join(keyDir, 'token.key'))).equals(keyBefore), 'the key is unchanged')
  t.equal((JSON.parse(await readFile(join(keyDir, 'token.jwks'), 'utf8')) as JSONWebKeySet).keys[0]?.kid, kid, 'token.jwks written again, same kid')
})
