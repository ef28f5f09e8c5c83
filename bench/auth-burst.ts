// Latency of a cached authenticated request while 300 unknown-user logins (bcrypt checks, 300 new TLS connections)
// arrive at once (issue 12's target: p99 < 50 ms). Runs the burst against Portier serving an RSA-2048 and an ECDSA
// P-256 certificate in alternating rounds and prints medians, so the certificate's handshake cost shows.
// Run: node --import=tsx bench/auth-burst.ts [rounds] [rsa,ec] [--profile DIR]
// (build first: npm run build). --profile writes the gateway's V8 CPU profile (node --cpu-prof) of each round to DIR.
// Everything runs on 127.0.0.1; the burst is bounded (300 requests, 60 s) and every process started here is stopped.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { runOk } from '../test/helpers/exec.js'
import { hashPassword } from '../src/auth/hashes.js'
import { median, percentile } from './lib/stats.js'

const BURST = 300
const args = process.argv.slice(2)
// By default the burst comes from a worker thread (another client, as an attacker is): opening 300 TLS connections
// blocks the event loop of whoever opens them, and the cached caller's figure would then measure this process.
const sameProcessAt = args.indexOf('--same-process')
const sameProcess = sameProcessAt >= 0
if (sameProcess) args.splice(sameProcessAt, 1)
const profileAt = args.indexOf('--profile')
const profileDir = profileAt >= 0 ? resolve(args.splice(profileAt, 2)[1] ?? 'profiles') : undefined
const rounds = Number(args[0] ?? 3)
const kinds = (args[1] ?? 'rsa,ec').split(',') as Array<'rsa' | 'ec'>

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

async function status(gateway: GatewayHandle, dispatcher: Agent, authorization: string): Promise<number> {
  const response = await request(`${gateway.url}/v2/`, { dispatcher, headers: { authorization } })
  await response.body.dump()
  return response.statusCode
}

const BURST_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { Agent, request } = require(workerData.undici)
const agent = new Agent({ localAddress: '127.0.0.1', connect: { ca: workerData.ca } })
const basic = (user, password) => 'Basic ' + Buffer.from(user + ':' + password).toString('base64')
Promise.all(Array.from({ length: workerData.count }, async (_, i) => {
  const response = await request(workerData.url + '/v2/', { dispatcher: agent, headers: { authorization: basic('intruder-' + i, 'guess-' + i) } })
  await response.body.dump()
  return response.statusCode
})).then(async (statuses) => { await agent.close(); parentPort.postMessage(statuses) }, (error) => { throw error })
`

/** The burst's statuses, sent from a worker thread with its own event loop and connections. */
function burstInWorker(url: string, ca: Buffer): Promise<number[]> {
  const worker = new Worker(BURST_WORKER, { eval: true, workerData: { url, ca, count: BURST, undici: createRequire(import.meta.url).resolve('undici') } })
  return new Promise<number[]>((resolveStatuses, reject) => {
    worker.once('message', (statuses: number[]) => resolveStatuses(statuses))
    worker.once('error', reject)
    worker.once('exit', (code) => reject(new Error(`the burst worker exited with code ${code}`)))
  })
}

/** CPU milliseconds (user + system) one thread has used so far: Linux /proc, 10 ms ticks. */
function threadCpuMs(pid: number, tid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

async function gatewayLag(gateway: GatewayHandle): Promise<{ p99: number; max: number }> {
  const lines = (await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()).split('\n')
  const value = (name: string): number => Number(lines.find((line) => line.startsWith(`${name} `))?.split(' ')[1] ?? NaN) * 1000
  return { p99: value('nodejs_eventloop_lag_p99_seconds'), max: value('nodejs_eventloop_lag_max_seconds') }
}

interface Round {
  kind: string
  p50: number
  p99: number
  max: number
  cached: number
  gatewayLagP99: number
  gatewayLagMax: number
  clientLagP99: number
  burstMs: number
  refused: number
  /** CPU time of the gateway's main thread (the event loop) from the burst's start to its last answer. */
  loopCpuMs: number
}

async function round(work: string, kind: 'rsa' | 'ec', index: number, htpasswd: string, registryUrl: string): Promise<Round> {
  const dir = join(work, `${kind}-${index}`)
  await runOk('mkdir', ['-p', dir])
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  const keyArgs = kind === 'rsa' ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
  await runOk('openssl', ['req', '-x509', ...keyArgs, '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'])
  const gateway = await startGateway({
    config: {
      upstreams: [{ url: registryUrl }],
      tls: { certificates: [{ cert, key }] },
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, throttle: { max_failures: 0 }, password_checks: { workers: 2, queue: 16 } },
    },
    env: profileDir
      ? { NODE_OPTIONS: `--require=${join(import.meta.dirname, 'lib', 'cpu-profile.cjs')}`, BENCH_CPU_PROFILE: join(profileDir, `burst-${kind}-${index}.cpuprofile`) }
      : {},
  })
  const ca = readFileSync(cert)
  const attacker = new Agent({ localAddress: '127.0.0.1', connect: { ca } })
  const user = new Agent({ localAddress: '127.0.0.2', connect: { ca } })
  try {
    const alice = basic('alice', 'alice-password')
    if ((await status(gateway, user, alice)) !== 200) throw new Error('alice was not let in')
    for (let i = 0; i < 3; i++) await status(gateway, user, alice)
    await gatewayLag(gateway) // prom-client resets the histogram at each scrape: the next one covers the burst only.
    const clientLag = monitorEventLoopDelay({ resolution: 10 })
    clientLag.enable()
    let done = false
    const pid = gateway.child.pid as number
    const cpuBefore = threadCpuMs(pid, pid)
    const burstStarted = performance.now()
    const statuses = (sameProcess ? Promise.all(Array.from({ length: BURST }, (_, i) => status(gateway, attacker, basic(`intruder-${i}`, `guess-${i}`)))) : burstInWorker(gateway.url, ca)).finally(() => {
      done = true
    })
    const ms: number[] = []
    const deadline = performance.now() + 60_000
    while (!done && ms.length < 200 && performance.now() < deadline) {
      const started = performance.now()
      if ((await status(gateway, user, alice)) !== 200) throw new Error('a cached request was not answered 200')
      ms.push(performance.now() - started)
    }
    const answers = await statuses
    const burstMs = performance.now() - burstStarted
    const loopCpuMs = threadCpuMs(pid, pid) - cpuBefore
    clientLag.disable()
    const lag = await gatewayLag(gateway)
    return {
      kind,
      p50: percentile(ms, 50),
      p99: percentile(ms, 99),
      max: Math.max(...ms),
      cached: ms.length,
      gatewayLagP99: lag.p99,
      gatewayLagMax: lag.max,
      clientLagP99: clientLag.percentile(99) / 1e6,
      burstMs,
      refused: answers.filter((code) => code === 503).length,
      loopCpuMs,
    }
  } finally {
    await Promise.all([attacker.close(), user.close()])
    await gateway.stop()
  }
}

const work = await mkdtemp(join(tmpdir(), 'portier-bench-burst-'))
const registry = await startRegistry()
try {
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\n`)
  const results: Round[] = []
  for (let i = 0; i < rounds; i++) {
    // Alternate the order so neither certificate always runs on the warmer machine.
    for (const kind of i % 2 ? [...kinds].reverse() : kinds) {
      const result = await round(work, kind, i, htpasswd, registry.url)
      results.push(result)
      console.log(
        `round ${i + 1} ${kind}: cached p50 ${result.p50.toFixed(1)} ms, p99 ${result.p99.toFixed(1)} ms, max ${result.max.toFixed(1)} ms (${result.cached} requests); ` +
          `gateway loop delay p99 ${result.gatewayLagP99.toFixed(1)} ms, max ${result.gatewayLagMax.toFixed(1)} ms; bench process loop p99 ${result.clientLagP99.toFixed(1)} ms; ` +
          `burst answered in ${result.burstMs.toFixed(0)} ms (${result.refused}×503), gateway main thread CPU ${result.loopCpuMs} ms`,
      )
    }
  }
  console.log(`\nmedians of ${rounds} rounds (load average ${loadavg()[0]?.toFixed(2)}):`)
  console.log('| certificate | cached p50 ms | cached p99 ms | cached max ms | gateway loop delay p99 ms | burst ms | gateway main-thread CPU ms |')
  console.log('|---|---|---|---|---|---|---|')
  for (const kind of kinds) {
    const mine = results.filter((result) => result.kind === kind)
    const m = (pick: (result: Round) => number): string => median(mine.map(pick)).toFixed(1)
    console.log(`| ${kind === 'rsa' ? 'RSA-2048' : 'ECDSA P-256'} | ${m((r) => r.p50)} | ${m((r) => r.p99)} | ${m((r) => r.max)} | ${m((r) => r.gatewayLagP99)} | ${m((r) => r.burstMs)} | ${m((r) => r.loopCpuMs)} |`)
  }
} finally {
  await registry.stop()
  await rm(work, { recursive: true, force: true })
}
