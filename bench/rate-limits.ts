// The cost of a request rate limit (limits.rate) on an authenticated HEAD of a manifest: buckets in this process vs in Redis.
// Four gateways before one registry: no limit / a limit counted locally / shared.redis without a limit / shared.redis with
// a limit (one EVALSHA per request). 1. One keep-alive connection per gateway, HEADs rotating request by request over the
// four (a slow phase of a loaded machine falls on all alike): p50/p90 latency. 2. ab -k with 32 connections, alternating
// rounds: req/s and gateway CPU per request. The limit (10^9 per minute) never refuses: what is measured is the counting.
// Run: npm run bench:rate [-- rounds seconds connections]   (defaults: 3 rounds, 5 s, 32 connections)
// Everything runs on 127.0.0.1: a docker-registry, a redis-server, the gateways; every process started here is stopped.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { startRedis } from '../test/helpers/redis.js'
import { hashPassword } from '../src/auth/hashes.js'
import { abHead } from './lib/load.js'
import { headLoad, MANIFEST_PATH, MANIFEST_TYPE, pushManifest, type HeadLoad } from './lib/manifest-head.js'
import { describeMachine } from './lib/machine.js'
import { fmt, median, percentile } from './lib/stats.js'
import { Agent, request } from 'undici'

const [rounds = 3, seconds = 5, connections = 32] = process.argv.slice(2).map(Number)
const HEADS_PER_GATEWAY = 2000
const authorization = `Basic ${Buffer.from('bench:bench-password-1').toString('base64')}`

async function load(gateway: GatewayHandle): Promise<HeadLoad> {
  return headLoad(gateway, authorization, seconds, connections)
}

async function rotatingLatency(gateways: GatewayHandle[]): Promise<number[][]> {
  const agents = gateways.map((gateway) => new Agent({ connections: 1, connect: { ca: readFileSync(gateway.caFile) } }))
  const times: number[][] = gateways.map(() => [])
  try {
    for (let index = 0; index < HEADS_PER_GATEWAY * gateways.length; index++) {
      // The order shifts every round, so no gateway always follows the same one.
      const which = (index + Math.floor(index / gateways.length)) % gateways.length
      const started = performance.now()
      const response = await request(`${gateways[which]?.url ?? ''}${MANIFEST_PATH}`, { method: 'HEAD', dispatcher: agents[which], headers: { authorization, accept: MANIFEST_TYPE } })
      await response.body.dump()
      if (response.statusCode !== 200) throw new Error(`HEAD answered ${response.statusCode}`)
      times[which]?.push(performance.now() - started)
    }
  } finally {
    await Promise.all(agents.map((agent) => agent.close()))
  }
  return times
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'portier-bench-rate-'))
  const registry = await startRegistry()
  const redis = await startRedis()
  const gateways: GatewayHandle[] = []
  try {
    await pushManifest(registry.url)
    const htpasswd = join(work, 'htpasswd')
    await writeFile(htpasswd, `bench:${await hashPassword('bench-password-1', 5)}\n`)
    const rate = [{ match: {}, requests: 1_000_000_000, per: '1m' }]
    const shared = { redis: { url: redis.url } }
    const variants: Array<[string, { rate: unknown[]; shared?: typeof shared }]> = [
      ['no limit', { rate: [] }],
      ['limit, local buckets', { rate }],
      ['shared.redis, no limit', { rate: [], shared }],
      ['shared.redis, limit in Redis', { rate, shared }],
    ]
    for (const [, variant] of variants) {
      gateways.push(await startGateway({
        config: {
          upstreams: [{ url: registry.url }],
          auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'bench' }, actions: ['pull'] }] },
          // Fair share off: ab's 32 connections are one user.
          limits: { per_client: { max_exchanges_per_user: 0, max_exchanges_per_address: 0 }, rate: variant.rate },
          ...(variant.shared ? { shared: variant.shared } : {}),
        },
      }))
    }
    for (const gateway of gateways) await abHead({ url: `${gateway.url}${MANIFEST_PATH}`, seconds: 2, connections: 4, headers: [`Authorization: ${authorization}`, `Accept: ${MANIFEST_TYPE}`] })
    const latency = await rotatingLatency(gateways)
    const loads: HeadLoad[][] = gateways.map(() => [])
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? gateways.map((_, index) => index) : gateways.map((_, index) => gateways.length - 1 - index)
      for (const index of order) loads[index]?.push(await load(gateways[index] as GatewayHandle))
    }
    const lines = [
      `# rate limit bench (${HEADS_PER_GATEWAY} rotating HEADs per gateway; ${rounds} rounds × ${seconds} s of ab -k with ${connections} connections over TLS; load average ${loadavg().map((n) => n.toFixed(1)).join(' ')})`,
      ...(await describeMachine()).map((line) => `# ${line}`),
      '',
      '| authenticated HEAD manifest | p50 ms (1 conn) | p90 ms (1 conn) | req/s median (range) | gateway CPU µs/request | errors |',
      '|---|---|---|---|---|---|',
      ...variants.map(([name], index) => {
        const times = latency[index] ?? []
        const results = loads[index] ?? []
        const rps = results.map((r) => r.requestsPerSecond)
        return `| ${name} | ${percentile(times, 50).toFixed(3)} | ${percentile(times, 90).toFixed(3)} | ${fmt(median(rps))} (${fmt(Math.min(...rps))}–${fmt(Math.max(...rps))}) | ${fmt(median(results.map((r) => r.cpuUsPerRequest)))} | ${results.reduce((sum, r) => sum + r.errors, 0)} |`
      }),
    ]
    console.log(lines.join('\n'))
  } finally {
    await Promise.all(gateways.map((gateway) => gateway.stop()))
    await redis.stop()
    await registry.stop()
    await rm(work, { recursive: true, force: true })
  }
}

await main()
