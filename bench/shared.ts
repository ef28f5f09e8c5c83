// The cost of shared state (shared.redis) on a small authenticated request, and three instances against one.
// 1. HEAD of a manifest by tag with Basic credentials (cached after the first check), ab -k over TLS, against one
//    gateway without shared state and one with it (each authenticated request then also asks Redis whether the
//    login is locked), in alternating rounds; medians of req/s, p50 and p99.
// 2. The same load spread over three gateways sharing Redis (one ab per instance, connections split), against
//    one gateway with all the connections: the sum of req/s.
// Run: npm run bench:shared [-- rounds seconds connections]   (defaults: 3 rounds, 10 s, 32 connections)
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

const [rounds = 3, seconds = 10, connections = 32] = process.argv.slice(2).map(Number)
const authorization = `Basic ${Buffer.from('bench:bench-password-1').toString('base64')}`

async function load(gateway: GatewayHandle, count: number): Promise<HeadLoad> {
  return headLoad(gateway, authorization, seconds, count)
}

function row(name: string, results: HeadLoad[]): string {
  const rps = results.map((r) => r.requestsPerSecond)
  return `| ${name} | ${fmt(median(rps))} (${fmt(Math.min(...rps))}–${fmt(Math.max(...rps))}) | ${fmt(median(results.map((r) => r.p50ms)))} | ${fmt(median(results.map((r) => r.p99ms)))} | ${fmt(median(results.map((r) => r.cpuUsPerRequest)))} | ${results.reduce((sum, r) => sum + r.errors, 0)} |`
}

/**
 * The latency one request pays: `count` HEADs alternating request by request between the two gateways (one
 * keep-alive connection each), so a slow phase of a loaded machine falls on both alike. Milliseconds.
 */
async function pairedLatency(plainGateway: GatewayHandle, sharedGateway: GatewayHandle, count: number): Promise<{ plain: number[]; shared: number[] }> {
  const agents = [plainGateway, sharedGateway].map((gateway) => new Agent({ connections: 1, connect: { ca: readFileSync(gateway.caFile) } }))
  const times: [number[], number[]] = [[], []]
  try {
    for (let index = 0; index < count * 2; index++) {
      const which = (index + Math.floor(index / 2)) % 2
      const gateway = which === 0 ? plainGateway : sharedGateway
      const started = performance.now()
      const response = await request(`${gateway.url}${MANIFEST_PATH}`, { method: 'HEAD', dispatcher: agents[which], headers: { authorization, accept: MANIFEST_TYPE } })
      await response.body.dump()
      if (response.statusCode !== 200) throw new Error(`HEAD answered ${response.statusCode}`)
      times[which]?.push(performance.now() - started)
    }
  } finally {
    await Promise.all(agents.map((agent) => agent.close()))
  }
  return { plain: times[0], shared: times[1] }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'portier-bench-shared-'))
  const registry = await startRegistry()
  const redis = await startRedis()
  const gateways: GatewayHandle[] = []
  try {
    await pushManifest(registry.url)
    const htpasswd = join(work, 'htpasswd')
    await writeFile(htpasswd, `bench:${await hashPassword('bench-password-1', 5)}\n`)
    const base = {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'bench' }, actions: ['pull'] }] },
      ui: { session_secret: 'bench-session-secret-0123456789-0123456789' },
    }
    const start = async (shared: boolean): Promise<GatewayHandle> => {
      const gateway = await startGateway({ config: { ...base, ...(shared ? { shared: { redis: { url: redis.url } } } : {}) } })
      gateways.push(gateway)
      return gateway
    }
    const local = await start(false)
    const withRedis = await start(true)
    const others = [await start(true), await start(true)]
    const trio = [withRedis, ...others]
    // Warm-up: the credential cached, connections and JIT warm, at every instance.
    for (const gateway of [local, ...trio]) await abHead({ url: `${gateway.url}${MANIFEST_PATH}`, seconds: 2, connections: 4, headers: [`Authorization: ${authorization}`, `Accept: ${MANIFEST_TYPE}`] })

    const paired = await pairedLatency(local, withRedis, 3000)
    const plain: HeadLoad[] = []
    const shared: HeadLoad[] = []
    const plainOne: HeadLoad[] = []
    const sharedOne: HeadLoad[] = []
    const one: number[] = []
    const three: number[] = []
    for (let round = 0; round < rounds; round++) {
      // Alternating order, so a slow phase of the machine does not fall on one side only.
      if (round % 2 === 0) {
        plain.push(await load(local, connections))
        shared.push(await load(withRedis, connections))
      } else {
        shared.push(await load(withRedis, connections))
        plain.push(await load(local, connections))
      }
      // One connection: the latency one request pays (the Redis round trip shows in p50).
      plainOne.push(await load(local, 1))
      sharedOne.push(await load(withRedis, 1))
      one.push((await load(withRedis, connections)).requestsPerSecond)
      const split = await Promise.all(trio.map((gateway, index) => load(gateway, Math.floor(connections / 3) + (index < connections % 3 ? 1 : 0))))
      three.push(split.reduce((sum, result) => sum + result.requestsPerSecond, 0))
    }
    const lines = [
      `# shared state bench (${rounds} rounds × ${seconds} s, ${connections} connections, ab -k HEAD over TLS, load average ${loadavg().map((n) => n.toFixed(1)).join(' ')})`,
      ...(await describeMachine()).map((line) => `# ${line}`),
      '',
      '| authenticated HEAD manifest | req/s median (range) | p50 ms | p99 ms | gateway CPU µs/request | errors |',
      '|---|---|---|---|---|---|',
      row(`no shared state, ${connections} connections`, plain),
      row(`shared.redis, ${connections} connections`, shared),
      row('no shared state, 1 connection', plainOne),
      row('shared.redis, 1 connection', sharedOne),
      '',
      `one connection, 3,000 HEADs each alternating request by request: p50 ${paired.plain.length > 0 ? percentile(paired.plain, 50).toFixed(3) : '–'} ms without, ${percentile(paired.shared, 50).toFixed(3)} ms with shared.redis (+${(percentile(paired.shared, 50) - percentile(paired.plain, 50)).toFixed(3)} ms); p90 ${percentile(paired.plain, 90).toFixed(3)} vs ${percentile(paired.shared, 90).toFixed(3)} ms`,
      `shared.redis costs ${fmt((1 - median(shared.map((r) => r.requestsPerSecond)) / median(plain.map((r) => r.requestsPerSecond))) * 100)} % of req/s`,
      `three gateways with shared.redis: ${fmt(median(three))} req/s in all vs one: ${fmt(median(one))} req/s (${(median(three) / median(one)).toFixed(2)}x; rounds: ${three.map(fmt).join(', ')} vs ${one.map(fmt).join(', ')})`,
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
