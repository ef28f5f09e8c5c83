// The latency of an authenticated HEAD with an access token as the Basic password (cached after the first check): one
// keep-alive connection, requests one after the other, p50 and p99 in ms, for the SQLite store and for PostgreSQL with
// shared.redis (the cache is then checked against the shared revocations before it is trusted). A quick local measure.
// Run: npm run build && bash scripts/with-node.sh node --import=tsx bench/access-tokens.ts [requests] [engines]
//   engines: sqlite,postgres (default: both; postgres needs Debian's postgresql and redis-server)
// Everything runs on 127.0.0.1: a docker-registry, the gateways (and PostgreSQL, redis-server); every process started here is stopped.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { startRedis, type RedisHandle } from '../test/helpers/redis.js'
import { startPostgres, type Postgres } from '../test/helpers/postgres.js'
import { hashPassword } from '../src/auth/hashes.js'
import { MANIFEST_PATH, MANIFEST_TYPE, pushManifest } from './lib/manifest-head.js'
import { percentile } from './lib/stats.js'

const [requestsArg, enginesArg] = process.argv.slice(2)
const REQUESTS = Number(requestsArg ?? 3000)
const ENGINES = (enginesArg ?? 'sqlite,postgres').split(',')
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** HEADs one after the other on one connection; ms each. */
async function latencies(gateway: GatewayHandle, authorization: string, count: number): Promise<number[]> {
  const agent = new Agent({ connections: 1, connect: { ca: readFileSync(gateway.caFile) } })
  const times: number[] = []
  try {
    for (let index = 0; index < count; index++) {
      const started = performance.now()
      const response = await request(`${gateway.url}${MANIFEST_PATH}`, { method: 'HEAD', dispatcher: agent, headers: { authorization, accept: MANIFEST_TYPE } })
      await response.body.dump()
      if (response.statusCode !== 200) throw new Error(`HEAD answered ${response.statusCode}`)
      times.push(performance.now() - started)
    }
  } finally {
    await agent.close()
  }
  return times
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'portier-bench-tokens-'))
  const registry = await startRegistry()
  const gateways: GatewayHandle[] = []
  let postgres: Postgres | undefined
  let redis: RedisHandle | undefined
  try {
    await pushManifest(registry.url)
    const htpasswd = join(work, 'htpasswd')
    await writeFile(htpasswd, `admin:${await hashPassword('bench-admin-password', 5)}\nbench:${await hashPassword('bench-password-1', 5)}\n`)
    const base = {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'admin' }, actions: ['*'] }, { match: { account: 'bench' }, actions: ['pull'] }] },
      ui: { admin_users: ['admin'] },
    }
    const rows: string[] = []
    for (const engine of ENGINES) {
      let extra: Record<string, unknown> = {}
      if (engine === 'postgres') {
        postgres ??= await startPostgres()
        redis ??= await startRedis()
        extra = { store: { url: postgres.url, scan: false }, shared: { redis: { url: redis.url } } }
      }
      const gateway = await startGateway({ config: { ...base, ...extra } })
      gateways.push(gateway)
      const made = await fetch(`${gateway.adminUrl as string}/admin/api/tokens`, {
        method: 'POST',
        headers: { authorization: basic('admin', 'bench-admin-password'), 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bench', scopes: ['repository:bench/*:pull'], owner: 'bench' }),
      })
      if (made.status !== 201) throw new Error(`token create: ${made.status} ${await made.text()}`)
      const { token } = (await made.json()) as { token: string }
      const withToken = basic('bench', token)
      const withPassword = basic('bench', 'bench-password-1')
      // Warm-up: credentials cached, connection and JIT warm.
      await latencies(gateway, withToken, 300)
      await latencies(gateway, withPassword, 300)
      const tokenTimes = await latencies(gateway, withToken, REQUESTS)
      const passwordTimes = await latencies(gateway, withPassword, REQUESTS)
      const label = engine === 'postgres' ? 'PostgreSQL + shared.redis' : 'SQLite'
      rows.push(`| ${label} | token | ${percentile(tokenTimes, 50).toFixed(3)} | ${percentile(tokenTimes, 99).toFixed(3)} |`)
      rows.push(`| ${label} | password (cached bcrypt) | ${percentile(passwordTimes, 50).toFixed(3)} | ${percentile(passwordTimes, 99).toFixed(3)} |`)
    }
    process.stdout.write(`Authenticated HEAD of a manifest, ${REQUESTS} requests one after the other on one connection (load ${loadavg().map((v) => v.toFixed(1)).join(' ')})\n\n`)
    process.stdout.write('| store | credential | p50 ms | p99 ms |\n| --- | --- | --- | --- |\n')
    process.stdout.write(`${rows.join('\n')}\n`)
  } finally {
    for (const gateway of gateways) await gateway.stop()
    await redis?.stop()
    await postgres?.stop()
    await registry.stop()
    await rm(work, { recursive: true, force: true })
  }
}

await main()
