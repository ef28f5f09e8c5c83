// Access tokens with the store on a real PostgreSQL and shared state in a real redis-server (issues 19 and 20): three instances
// (A and B with Basic auth, C with the built-in token server) on one store. A token made at A works at B (skopeo) and at C's token
// endpoint; revoked at A, the very next request at B is 401 and C refuses both a new JWT and one it signed before, although every
// instance had the token cached for 10 minutes.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { registryFixture } from '../helpers/registry.js'
import { CLI, gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { GatewayClient, waitUntil } from '../helpers/gwclient.js'
import { redisFixture } from '../helpers/redis.js'
import { startPostgres } from '../helpers/postgres.js'
import { run } from '../helpers/exec.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'

const PASSWORDS = { admin: 'admin-password', alice: 'alice-password' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface MadeToken {
  token: string
  id: string
  owner: string
  state: string
  lastUsedAt: string | null
}

t.test('tokens on PostgreSQL, revocation through Redis: made at A, used at B and C, revoked at A, refused at B and C at once', async (t) => {
  const postgres = await startPostgres()
  t.teardown(() => postgres.stop())
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-pgtokens-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `admin:${await hashPassword(PASSWORDS.admin, 5)}\nalice:${await hashPassword(PASSWORDS.alice, 5)}\n`)
  const common = {
    upstreams: [{ url: registry.url }],
    store: { url: postgres.urlWithoutPassword, password_file: postgres.passwordFile, flush_interval: '200ms', scan: false, connect_timeout: '2s' },
    shared: { redis: { url: redis.url, key_prefix: 'pgtokens:' } },
    // Ten minutes: only the shared revocation can explain a refusal at B or C right after the revoke at A.
    access_tokens: { cache_ttl: '10m' },
    ui: { admin_users: ['admin'] },
  }
  const acl = [{ match: { account: 'admin' }, actions: ['*'] }, { match: { account: 'alice', name: 'team/**' }, actions: ['pull', 'push', 'delete'] }]
  const basicAuth = { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl }
  const tokenAuth = { mode: 'token', htpasswd: { path: htpasswd }, acl, token: { key: join(work, 'keys', 'token.key'), cert: join(work, 'keys', 'token.crt') } }
  // A and B start together: they migrate the empty database at once (one after the other, under the advisory lock).
  const [a, b] = await Promise.all([gatewayFixture(t, { config: { ...common, auth: basicAuth } }), gatewayFixture(t, { config: { ...common, auth: basicAuth } })]) as [GatewayHandle, GatewayHandle]
  const c = await gatewayFixture(t, { config: { ...common, auth: tokenAuth } })
  const clients = new Map([a, b, c].map((gateway) => [gateway, new GatewayClient(gateway)]))
  t.teardown(() => clients.forEach((client) => client.close()))
  const send = (gateway: GatewayHandle, method: string, path: string, authorization?: string) =>
    (clients.get(gateway) as GatewayClient).send(method, path, { headers: { accept: OCI_MANIFEST, ...(authorization ? { authorization } : {}) } })

  for (const gateway of [a, b, c]) {
    t.notOk(gateway.logs.some((line) => /access_tokens/.test(line.msg)), 'no start-up warning about access tokens')
  }
  const portier = (gateway: GatewayHandle, args: string[]) =>
    run(process.execPath, [CLI, ...args, '--admin-url', gateway.adminUrl as string, '--user', 'admin'], {
      cwd: gateway.cwd,
      env: { ...process.env, PORTIER_ADMIN_PASSWORD: PASSWORDS.admin },
      timeoutMs: 30_000,
    })

  // Made at A (portier token create), stored in PostgreSQL.
  const made = await portier(a, ['token', 'create', '--name', 'ci', '--scope', 'repository:team/*:pull,push', '--owner', 'alice', '--json'])
  t.equal(made.code, 0, `portier token create at A (${made.stderr.trim()})`)
  const token = JSON.parse(made.stdout) as MadeToken
  t.match(token.token, /^portier_/)
  const db = new pg.Client({ connectionString: postgres.url })
  await db.connect()
  t.teardown(() => db.end())
  const stored = await db.query<{ owner: string; robot: number; revoked_at: string | null }>('SELECT owner, robot, revoked_at FROM access_tokens WHERE id = $1', [token.id])
  t.same(stored.rows, [{ owner: 'alice', robot: 0, revoked_at: null }], 'the row is in PostgreSQL')

  // Used at B: skopeo pushes with it as the password; a HEAD with curl-like Basic works.
  const image = await buildLayout(join(work, 'image'), 'latest', [{ layers: [2048], tar: true }])
  const pushed = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${b.host}/team/app:v1`, { destCertDir: b.certDir, destCreds: `alice:${token.token}`, allowFailure: true })
  t.equal(pushed.code, 0, `skopeo push at B with the token made at A (${pushed.stderr.trim()})`)
  const alice = basic('alice', token.token)
  t.equal((await send(b, 'HEAD', '/v2/team/app/manifests/v1', alice)).status, 200, 'HEAD at B with the token: 200')
  t.equal((await send(b, 'POST', '/v2/other/x/blobs/uploads/', alice)).status, 403, 'outside its scopes at B: 403')
  t.equal((await send(a, 'GET', '/v2/team/app/manifests/v1', alice)).status, 200, 'and at A')

  // At C: the token endpoint signs a JWT for it; the JWT pulls at C.
  const tokenPath = `/auth/token?service=portier-registry&scope=${encodeURIComponent('repository:team/app:pull')}`
  const issued = await send(c, 'GET', tokenPath, alice)
  t.equal(issued.status, 200, 'C\'s token endpoint takes the token')
  const jwt = String((issued.json() as { token?: string }).token)
  t.equal((await send(c, 'GET', '/v2/team/app/manifests/v1', `Bearer ${jwt}`)).status, 200, 'the JWT pulls at C')

  // Last use, written in batches by B and read through A's admin API.
  t.ok(await waitUntil(async () => {
    const listed = await portier(a, ['token', 'list', '--owner', 'alice', '--json'])
    return (JSON.parse(listed.stdout) as { tokens: MadeToken[] }).tokens.some((entry) => entry.id === token.id && entry.lastUsedAt !== null)
  }, 10_000), 'the last use is in the store')

  // Revoked at A: every instance has the token cached (10 minutes), yet the very next request is refused.
  const revoked = await portier(a, ['token', 'revoke', token.id])
  t.equal(revoked.code, 0, `portier token revoke at A (${revoked.stderr.trim()})`)
  const atB = await send(b, 'HEAD', '/v2/team/app/manifests/v1', alice)
  t.equal(atB.status, 401, 'the next request at B: 401')
  t.match(String(atB.headers['www-authenticate']), /^Basic realm=/)
  t.equal((await send(a, 'HEAD', '/v2/team/app/manifests/v1', alice)).status, 401, 'at A: 401')
  t.equal((await send(c, 'GET', tokenPath, alice)).status, 401, 'C\'s token endpoint refuses it')
  const oldJwt = await send(c, 'GET', '/v2/team/app/manifests/v1', `Bearer ${jwt}`)
  t.equal(oldJwt.status, 401, 'the JWT C signed for it before: 401')
  const failedPush = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${b.host}/team/app:v2`, { destCertDir: b.certDir, destCreds: `alice:${token.token}`, allowFailure: true })
  t.not(failedPush.code, 0, 'skopeo push at B fails')
  const row = await db.query<{ revoked_by: string }>('SELECT revoked_by FROM access_tokens WHERE id = $1 AND revoked_at IS NOT NULL', [token.id])
  t.same(row.rows, [{ revoked_by: 'admin' }], 'revoked in PostgreSQL')
  const members = await redis.command('ZRANGE', 'pgtokens:revoked', '0', '-1')
  t.ok(members.includes(`access-token\n${token.id}`), `the revocation is in Redis under kind access-token (${JSON.stringify(members)})`)
  t.equal((await send(b, 'GET', '/v2/team/app/manifests/v1', basic('alice', PASSWORDS.alice))).status, 200, 'alice\'s password still works at B')
})
