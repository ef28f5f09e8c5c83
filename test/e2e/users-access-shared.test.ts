// Grants made in the web UI of one instance reach the others sharing a PostgreSQL store: at once through the shared
// bus (shared.redis, a real redis-server), and within auth.grants_refresh for an instance without it.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { startPostgres } from '../helpers/postgres.js'
import { redisFixture } from '../helpers/redis.js'
import { hashPassword } from '../../src/auth/hashes.js'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** Waits (bounded in rounds and time) until `done` holds; false when it never did. */
async function until(done: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (let round = 0; round < 1000; round++) {
    if (await done()) return true
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return false
}

t.test('a grant made on one instance: the others follow, at once with shared.redis, within auth.grants_refresh without', async (t) => {
  const postgres = await startPostgres()
  t.teardown(() => postgres.stop())
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-access-shared-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `admin:${await hashPassword('admin-password', 5)}\nalice:${await hashPassword('alice-password', 5)}\n`)
  const base = {
    upstreams: [{ url: registry.url }],
    store: { url: postgres.urlWithoutPassword, password_file: postgres.passwordFile, flush_interval: '200ms', scan: false },
    auth: { htpasswd: { path: htpasswd }, acl: [{ match: { account: 'admin' }, actions: ['*'] }], grants_refresh: '2s' },
    ui: { admin_users: ['admin'] },
  }
  const shared = { shared: { redis: { url: redis.url, key_prefix: 'access:' } } }
  const [a, b] = await Promise.all([gatewayFixture(t, { config: { ...base, ...shared } }), gatewayFixture(t, { config: { ...base, ...shared } })])
  const c = await gatewayFixture(t, { config: base })
  const agents = new Map<GatewayHandle, Agent>()
  for (const gateway of [a, b, c] as GatewayHandle[]) agents.set(gateway, new Agent({ connect: { ca: readFileSync(gateway.caFile) } }))
  t.teardown(() => Promise.all([...agents.values()].map((agent) => agent.close())))
  const uploadStatus = async (gateway: GatewayHandle): Promise<number> => {
    const response = await request(`${gateway.url}/v2/team/app/blobs/uploads/`, { dispatcher: agents.get(gateway), method: 'POST', headers: { authorization: basic('alice', 'alice-password') } })
    await response.body.dump()
    return response.statusCode
  }

  // Signed in on instance A's web UI, as the page does it.
  const ui = async (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown, cookie = ''): Promise<{ status: number; json: Record<string, unknown>; setCookie: string }> => {
    const response = await request(`${a!.url}/ui/api/${path}`, {
      dispatcher: agents.get(a!),
      method,
      headers: { origin: a!.url, cookie, 'x-csrf-token': csrf, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await response.body.text()
    const setCookie = response.headers['set-cookie']
    return { status: response.statusCode, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, setCookie: (Array.isArray(setCookie) ? setCookie[0] : setCookie ?? '').split(';')[0] ?? '' }
  }
  let csrf = ''
  const login = await ui('POST', 'login', { username: 'admin', password: 'admin-password' })
  t.equal(login.status, 200, 'signed in on A')
  const cookie = login.setCookie
  csrf = String(login.json.csrfToken)

  for (const gateway of [a, b, c] as GatewayHandle[]) t.equal(await uploadStatus(gateway), 403, 'before the grant: 403 everywhere')
  t.equal((await ui('POST', 'groups', { name: 'ci', members: ['alice'] }, cookie)).status, 201, 'group ci made on A')
  const grant = await ui('POST', 'grants', { kind: 'group', subject: 'ci', repository: 'team/*', actions: ['pull', 'push'] }, cookie)
  t.equal(grant.status, 201, 'grant made on A')
  t.equal(await uploadStatus(a!), 202, 'A: at once')
  t.ok(await until(async () => (await uploadStatus(b!)) === 202, 5_000), 'B (shared.redis): follows on the bus announcement')
  t.ok(await until(async () => (await uploadStatus(c!)) === 202, 10_000), 'C (no shared.redis): follows within auth.grants_refresh')

  t.equal((await ui('DELETE', `grants?id=${String(grant.json.id)}`, undefined, cookie)).status, 200, 'grant removed on A')
  t.equal(await uploadStatus(a!), 403, 'A: 403 at once')
  t.ok(await until(async () => (await uploadStatus(b!)) === 403, 5_000), 'B: 403 after the announcement')
  t.ok(await until(async () => (await uploadStatus(c!)) === 403, 10_000), 'C: 403 within auth.grants_refresh')
})
