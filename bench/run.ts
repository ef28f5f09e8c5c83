// npm run bench: the same workload against the registry directly (plain HTTP), nginx (the distribution recipe and a
// tuned variant), Portier, and two minimal forwarders (undici, http-proxy); alternating rounds, medians, a markdown report.
// Everything runs on 127.0.0.1 and in one temp dir; every process started here is stopped at the end. See bench/lib/options.ts.
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { createHash } from 'node:crypto'
import { ROOT } from '../test/helpers/gateway.js'
import { run } from '../test/helpers/exec.js'
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js'
import { summarizeFile, summaryMarkdown } from './profile-summary.js'
import { monolithicUpload, type Client } from './lib/curl.js'
import { makeBlob, makeCertificate, makeHtpasswd, type BlobFile, type Chunk } from './lib/fixtures.js'
import { describeMachine } from './lib/machine.js'
import { HELP, readOptions, type TargetId, type Workload } from './lib/options.js'
import { Processes, stop } from './lib/procs.js'
import { checksTable, cpuTable, enginesTable, mainTable, rssTable, storageTable, workersTable, type Check } from './lib/report.js'
import { ratioOf, Results } from './lib/results.js'
import { fmt, MiB, ratio } from './lib/stats.js'
import { directTarget, LABELS, startForwarder, startNginx, startPortier, startTlsSource, type Shared, type Target } from './lib/targets.js'
import * as work from './lib/workloads.js'

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log(HELP)
  process.exit(0)
}

const options = readOptions()
const began = Date.now()
const log = (line: string): void => console.log(line)

/** Which targets each workload runs against (the minimal forwarders compare engines on single-request transfers and show
 * what one TLS + undici hop costs small requests without Portier's pipeline; nginx without auth is the same for C). */
const TARGETS_OF: Record<Workload, TargetId[]> = {
  upload: ['direct', 'nginx-recipe', 'nginx-tuned', 'portier', 'portier-storage', 'undici', 'http-proxy'],
  chunked: ['direct', 'nginx-recipe', 'nginx-tuned', 'portier', 'portier-storage'],
  download: ['direct', 'tls-memory', 'nginx-recipe', 'nginx-tuned', 'portier', 'portier-storage', 'portier-workers', 'portier-storage-workers', 'undici', 'http-proxy'],
  skopeo: ['direct', 'nginx-recipe', 'nginx-tuned', 'portier', 'portier-storage', 'portier-workers', 'portier-storage-workers'],
  get: ['direct', 'nginx-recipe', 'nginx-tuned', 'nginx-open', 'portier', 'portier-workers', 'undici', 'http-proxy'],
  head: ['direct', 'nginx-recipe', 'nginx-tuned', 'nginx-open', 'portier', 'portier-workers'],
  latency: ['direct', 'nginx-recipe', 'nginx-tuned', 'nginx-open', 'portier', 'undici', 'http-proxy'],
  concurrent: ['direct', 'portier', 'portier-storage'],
}

function wanted(workload: Workload): TargetId[] {
  return options.only.includes(workload) ? TARGETS_OF[workload].filter((target) => options.targets.includes(target)) : []
}

async function ensureTools(): Promise<void> {
  const tools = ['docker-registry', 'curl', 'openssl', 'htpasswd']
  const all = new Set(options.only.flatMap((workload) => wanted(workload)))
  if ([...all].some((target) => target.startsWith('nginx-'))) tools.push('nginx')
  if (options.only.includes('get') || options.only.includes('latency')) tools.push('wrk')
  if (options.only.includes('head')) tools.push('ab')
  if (options.only.includes('skopeo')) tools.push('skopeo')
  const result = await run('bash', [join(ROOT, 'scripts', 'ensure-tools.sh'), ...tools], { timeoutMs: 600_000 })
  if (result.code !== 0) throw new Error(result.stderr.trim() || 'scripts/ensure-tools.sh failed')
}

/** A config blob and a manifest for the HEAD workload, stored straight into the registry. */
async function seedManifest(registry: RegistryHandle): Promise<void> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  const digest = `sha256:${createHash('sha256').update(config).digest('hex')}`
  const started = await fetch(`${registry.url}/v2/bench/app/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`seeding the config blob: ${put.status}`)
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: work.MANIFEST_TYPE,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: config.length },
    layers: [],
  })
  const stored = await fetch(`${registry.url}${work.MANIFEST_PATH}`, { method: 'PUT', body: manifest, headers: { 'content-type': work.MANIFEST_TYPE } })
  if (stored.status !== 201) throw new Error(`seeding the manifest: ${stored.status}`)
}

interface Blobs {
  main?: { blob: BlobFile; chunks: Chunk[] }
  concurrent?: BlobFile
  large?: BlobFile
}

async function makeBlobs(dir: string): Promise<Blobs> {
  const blobs: Blobs = {}
  const transfers = (['upload', 'chunked', 'download'] as Workload[]).some((workload) => wanted(workload).length > 0)
  if (transfers) blobs.main = await makeBlob(join(dir, 'blob'), options.blobMiB, wanted('chunked').length > 0 ? options.chunkMiB : 0)
  if (wanted('concurrent').length > 0) {
    blobs.concurrent = (await makeBlob(join(dir, 'concurrent-blob'), options.concurrentMiB)).blob
    if (options.largeMiB > 0 && options.targets.includes('portier')) blobs.large = (await makeBlob(join(dir, 'large-blob'), options.largeMiB)).blob
  }
  return blobs
}

async function startTargets(shared: Shared): Promise<Map<TargetId, Target>> {
  const needed = new Set(options.only.flatMap((workload) => wanted(workload)))
  const targets = new Map<TargetId, Target>([['direct', directTarget(shared.registry)]])
  if (needed.has('nginx-recipe')) targets.set('nginx-recipe', await startNginx(shared, 'recipe'))
  if (needed.has('nginx-tuned')) targets.set('nginx-tuned', await startNginx(shared, 'tuned'))
  if (needed.has('nginx-open')) targets.set('nginx-open', await startNginx(shared, 'open'))
  if (needed.has('portier')) targets.set('portier', await startPortier(shared, { nodeArgs: options.nodeArgs }))
  if (needed.has('portier-storage')) targets.set('portier-storage', await startPortier(shared, { storage: true, nodeArgs: options.nodeArgs }))
  if (needed.has('portier-workers')) targets.set('portier-workers', await startPortier(shared, { workers: 2, nodeArgs: options.nodeArgs }))
  if (needed.has('portier-storage-workers')) targets.set('portier-storage-workers', await startPortier(shared, { storage: true, workers: 2, nodeArgs: options.nodeArgs }))
  if (needed.has('undici')) targets.set('undici', await startForwarder(shared, 'undici'))
  if (needed.has('http-proxy')) targets.set('http-proxy', await startForwarder(shared, 'http-proxy'))
  if (needed.has('tls-memory')) targets.set('tls-memory', await startTlsSource(shared, options.blobMiB))
  return targets
}

/** Runs one workload step against one target (also used for the profiled re-run). */
async function runOnce(bench: work.Bench, workload: Workload, target: Target, blobs: Blobs, round: number): Promise<void> {
  const transfers = work.transferRows(options.blobMiB, options.chunkMiB)
  const load = work.loadRows(options.connections, options.bcryptCost)
  const main = blobs.main
  switch (workload) {
    case 'upload':
      if (main) await work.runUpload(bench, target, transfers.upload, main.blob)
      break
    case 'chunked':
      if (main) await work.runChunked(bench, target, transfers.chunked, main.blob, main.chunks)
      break
    case 'download':
      if (main) await work.runDownload(bench, target, transfers.download, main.blob)
      break
    case 'skopeo':
      await work.runSkopeo(bench, target, work.skopeoRows(options.layersMiB), options.layersMiB, round)
      break
    case 'get':
      await work.runGet(bench, target, load.get, options.loadSeconds, options.connections)
      break
    case 'head':
      await work.runHead(bench, target, load.head, options.loadSeconds, options.connections)
      break
    case 'latency':
      await work.runLatency(bench, target, load.latency, options.loadSeconds)
      break
    case 'concurrent':
      if (blobs.concurrent) await work.runConcurrent(bench, target, work.concurrentRow(options.concurrentUploads, options.concurrentMiB), blobs.concurrent, options.concurrentUploads)
      break
  }
}

/** Minutes each workload took, for the report (how long a run is, and where the time goes). */
const durations: Array<{ workload: Workload; minutes: number }> = []

async function measureAll(bench: work.Bench, targets: Map<TargetId, Target>, blobs: Blobs): Promise<void> {
  for (const workload of options.only) {
    const list = wanted(workload).map((id) => targets.get(id)).filter((target): target is Target => target !== undefined)
    if (list.length === 0) continue
    const start = Date.now()
    if (workload === 'get' || workload === 'latency') for (const target of list) await work.checkAnswers(bench, target, '/v2/', false)
    if (workload === 'head') for (const target of list) await work.checkAnswers(bench, target, work.MANIFEST_PATH, true, work.MANIFEST_TYPE)
    // Small-request load: one unmeasured run per target first. Node's JIT needs a few thousand requests on a path
    // before it runs optimized code (Portier used ~1.3 ms of CPU per GET /v2/ in its first seconds, ~0.7 ms warm),
    // and a gateway in production is warm; nginx and the registry do not change.
    if (workload === 'get' || workload === 'head' || workload === 'latency') {
      for (const target of list) await runOnce({ ...bench, results: new Results() }, workload, target, blobs, 0)
    }
    // The concurrent uploads are long and their figure is memory, not speed: one round.
    const rounds = workload === 'concurrent' ? 1 : options.rounds
    for (let round = 1; round <= rounds; round++) {
      for (const target of list) await runOnce(bench, workload, target, blobs, round)
    }
    if (workload === 'concurrent' && blobs.concurrent && blobs.large) {
      const portier = targets.get('portier')
      if (portier) {
        const count = options.largeConcurrency
        await work.runConcurrent(bench, portier, work.concurrentRow(count, options.concurrentMiB), blobs.concurrent, count)
        await work.runConcurrent(bench, portier, work.concurrentRow(count, options.largeMiB), blobs.large, count)
      }
    }
    durations.push({ workload, minutes: (Date.now() - start) / 60_000 })
  }
}

const PROFILE_CANDIDATES: Array<{ key: string; workload: Workload }> = [
  { key: 'upload', workload: 'upload' },
  { key: 'chunked', workload: 'chunked' },
  { key: 'download', workload: 'download' },
  { key: 'get', workload: 'get' },
  { key: 'head', workload: 'head' },
]

/** The workload where Portier is furthest below direct; it is re-run once against a Portier under --cpu-prof. */
async function profileSlowest(bench: work.Bench, shared: Shared, blobs: Blobs): Promise<string> {
  const ranked = PROFILE_CANDIDATES
    .map((candidate) => ({ ...candidate, share: ratioOf(bench.results, candidate.key, 'portier', 'direct') }))
    .filter((candidate) => Number.isFinite(candidate.share))
    .sort((a, b) => a.share - b.share)
  const slowest = ranked[0]
  if (!slowest) return ''
  const dir = join(shared.dir, 'profile')
  await mkdir(dir, { recursive: true })
  log(`\nprofiling the slowest case (${slowest.key}, Portier ${ratio(slowest.share)} direct) with node --cpu-prof`)
  const profiled = await startPortier(shared, { name: 'portier-profiled', nodeArgs: [...options.nodeArgs, '--cpu-prof', `--cpu-prof-dir=${dir}`] })
  try {
    // Three times, so start-up (module loading, the first bcrypt) is a small part of the profile.
    for (let repeat = 0; repeat < 3; repeat++) await runOnce({ ...bench, results: new Results() }, slowest.workload, profiled, blobs, 100 + repeat)
  } finally {
    if (profiled.started) await stop(profiled.started.child, 30_000)
  }
  const file = (await readdir(dir)).find((name) => name.endsWith('.cpuprofile'))
  if (!file) return 'node --cpu-prof wrote no profile.'
  const kept = resolve(ROOT, dirname(options.out), `slowest-${slowest.key}.cpuprofile`)
  await mkdir(dirname(kept), { recursive: true })
  await copyFile(join(dir, file), kept)
  const title = bench.results.spec(slowest.key)?.title ?? slowest.key
  return [
    `Slowest case relative to direct: **${title}** (Portier ${ratio(slowest.share)} direct). Re-run three times against a`,
    `second Portier started with \`node --cpu-prof\`; top functions by self time (main thread; native time such as`,
    `TLS encryption and socket writes is attributed to the JavaScript function that called it). Profile kept as`,
    `\`${relative(ROOT, kept)}\` (open it in Chrome DevTools), summarized by \`bench/profile-summary.ts\`:`,
    '',
    summaryMarkdown(await summarizeFile(join(dir, file), 15)),
  ].join('\n')
}

/** Issue 15's targets, each for Portier as relayed and, where the lever applies, with blobs from storage. */
function checks(results: Results): Check[] {
  const out: Check[] = []
  const atLeast = (key: string, target: TargetId, base: TargetId, want: number, what: string): void => {
    const value = ratioOf(results, key, target, base)
    if (Number.isFinite(value)) out.push({ what, target: `≥ ${want}× ${LABELS[base]}`, measured: ratio(value), met: value >= want })
  }
  const atMostTime = (key: string, target: TargetId, want: number, what: string): void => {
    const value = ratioOf(results, key, target, 'direct')
    if (Number.isFinite(value)) out.push({ what, target: `≤ ${want}× the direct time`, measured: ratio(value), met: value <= want })
  }
  atLeast('download', 'portier-storage', 'tls-memory', 0.9, `${options.blobMiB} MiB download, Portier with blobs from storage vs the TLS-from-memory ceiling`)
  atLeast('download', 'portier-storage', 'nginx-recipe', 1.15, `${options.blobMiB} MiB download, Portier with blobs from storage vs the nginx recipe`)
  atLeast('download', 'portier', 'tls-memory', 0.9, `${options.blobMiB} MiB download, Portier relaying vs the ceiling`)
  atLeast('download', 'portier', 'nginx-recipe', 1.15, `${options.blobMiB} MiB download, Portier relaying vs the nginx recipe`)
  atMostTime('skopeo-pull', 'portier-storage', 1.1, 'skopeo pull, Portier with blobs from storage')
  atMostTime('skopeo-pull', 'portier-storage-workers', 1.1, 'skopeo pull, Portier with blobs from storage, 2 workers')
  atMostTime('skopeo-pull', 'portier', 1.1, 'skopeo pull, Portier relaying')
  atMostTime('skopeo-push', 'portier-storage', 1.2, 'skopeo push, Portier with uploads into storage')
  atMostTime('skopeo-push', 'portier', 1.2, 'skopeo push through Portier, relayed')
  atLeast('get', 'portier', 'direct', 1.0, `authenticated GET /v2/ at ${options.connections} connections vs the unauthenticated registry`)
  atLeast('head', 'portier', 'direct', 1.0, `authenticated HEAD manifest by tag at ${options.connections} connections vs the unauthenticated registry`)
  const added = results.median('latency', 'portier') - results.median('latency', 'direct')
  if (Number.isFinite(added)) out.push({ what: 'one-connection p50 latency, Portier minus direct', target: '≤ 0.5 ms', measured: `${fmt(added)} ms`, met: added <= 0.5 })
  atLeast('chunked', 'portier-storage', 'direct', 0.95, `${options.blobMiB} MiB as ${options.chunkMiB} MiB PATCHes, Portier with uploads into storage`)
  atLeast('chunked', 'portier', 'direct', 0.95, `${options.blobMiB} MiB as ${options.chunkMiB} MiB PATCHes through Portier, relayed`)
  atLeast('upload', 'portier-storage', 'direct', 0.95, `${options.blobMiB} MiB monolithic upload, Portier with uploads into storage`)
  atLeast('upload', 'portier', 'direct', 0.95, `${options.blobMiB} MiB monolithic upload through Portier, relayed`)
  const rssOf = (key: string, target: TargetId = 'portier'): number => results.median(key, target, (sample) => sample.peakRss)
  for (const [target, how] of [['portier-storage', 'with uploads into storage'], ['portier', 'relayed']] as const) {
    const concurrent = rssOf(`concurrent-${options.concurrentUploads}x${options.concurrentMiB}`, target)
    if (Number.isFinite(concurrent)) {
      out.push({ what: `Portier peak RSS, ${options.concurrentUploads} concurrent ${options.concurrentMiB} MiB uploads, ${how}`, target: '< 150 MB', measured: `${fmt(concurrent / 1e6)} MB`, met: concurrent < 150e6 })
    }
  }
  const small = rssOf(`concurrent-${options.largeConcurrency}x${options.concurrentMiB}`)
  const large = rssOf(`concurrent-${options.largeConcurrency}x${options.largeMiB}`)
  if (Number.isFinite(small) && Number.isFinite(large) && options.largeMiB !== options.concurrentMiB) {
    out.push({
      what: `peak RSS does not grow with blob size (${options.largeConcurrency}× ${options.largeMiB} vs ${options.concurrentMiB} MiB)`,
      target: '≤ 1.15×',
      measured: `${fmt(large / MiB)} vs ${fmt(small / MiB)} MiB (${ratio(large / small)})`,
      met: large <= small * 1.15,
    })
  }
  return out
}

/** The portier-storage target's rows, when it ran: the same workloads with blobs read from and uploads written into the registry's storage. */
function storageSection(results: Results): string[] {
  const text = storageTable(results, ['download', 'skopeo-pull', 'skopeo-push', 'upload', 'chunked'])
  return text === '' ? [] : ['', '### Blobs to and from storage (upstreams[].storage, storage_uploads)', '', text]
}

/** The -workers targets' rows, when they ran: server.workers 2 next to 1. */
function workersSection(results: Results): string[] {
  const text = workersTable(results, ['download', 'skopeo-pull', 'skopeo-push', 'get', 'head', 'latency'])
  return text === '' ? [] : ['', '### server.workers: 2 (node:cluster) next to 1', '', text]
}

function knobs(): string {
  const set = Object.entries(process.env).filter(([name]) => name.startsWith('BENCH_')).map(([name, value]) => `${name}=${value}`)
  return set.length ? `${set.join(' ')} npm run bench` : 'npm run bench'
}

async function report(results: Results, profile: string, minutes: number): Promise<string> {
  const transferKeys = ['upload', 'chunked', 'download']
  const mainKeys = [...transferKeys, 'skopeo-push', 'skopeo-pull', 'get', 'head', 'latency']
  const concurrentKeys = results.rows.filter((row) => row.key.startsWith('concurrent-')).map((row) => row.key)
  const engines = enginesTable(results, [...transferKeys, 'get', 'head', 'latency'])
  const sections = [
    `## Results of one run (${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${fmt(minutes)} min)`,
    '',
    ...(await describeMachine()).map((line) => `- ${line}`),
    `- \`${knobs()}\`: ${options.rounds} rounds, targets alternating in every round; medians with (min–max) of the rounds (a download's round: the median of ${work.DOWNLOADS_PER_ROUND} downloads one after the other; a skopeo round: one push, then the median of ${work.PULLS_PER_ROUND} pulls of it).`,
    `- minutes per workload: ${durations.map((entry) => `${entry.workload} ${entry.minutes.toFixed(1)}`).join(', ')}; the rest is set-up and the profile.`,
    '- direct = registry:2 over plain HTTP without auth; nginx (one worker) and Portier over TLS with the same',
    `  certificate and the same bcrypt cost-${options.bcryptCost} htpasswd file; all on 127.0.0.1; curl for transfers.`,
    '',
    mainTable(results, mainKeys),
    ...storageSection(results),
    ...workersSection(results),
    '',
    '### Targets',
    '',
    checksTable(checks(results)),
  ]
  if (engines) sections.push('', '### Forwarding engine: undici vs http-proxy (minimal TLS forwarders, no auth), and nginx without auth', '', engines)
  sections.push('', '### CPU while measuring (% of one core, medians; 100 % = one core busy the whole time)', '', cpuTable(results, ['direct', 'nginx-recipe', 'nginx-tuned', 'nginx-open', 'portier', 'portier-storage', 'portier-workers', 'portier-storage-workers', 'undici', 'http-proxy', 'tls-memory']))
  if (concurrentKeys.length) sections.push('', '### Memory during concurrent uploads (one round)', '', rssTable(results, concurrentKeys))
  if (profile) sections.push('', '### Profile', '', profile)
  return `${sections.join('\n')}\n`
}

const processes = new Processes()
let registry: RegistryHandle | undefined
let workDir: string | undefined

async function cleanup(): Promise<void> {
  await processes.stopAll()
  await registry?.stop()
  if (workDir && !options.keep) await rm(workDir, { recursive: true, force: true })
  else if (workDir) log(`kept ${workDir}`)
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`\n${signal}: stopping everything the bench started`)
    void cleanup().finally(() => process.exit(130))
  })
}
process.once('exit', () => processes.killAllNow())

try {
  await ensureTools()
  workDir = await mkdtemp(join(tmpdir(), 'portier-bench-'))
  log(`work dir ${workDir}; preparing blobs, certificate and bcrypt cost-${options.bcryptCost} users file`)
  const tls = await makeCertificate(workDir)
  const htpasswd = join(workDir, 'htpasswd')
  const credentials = await makeHtpasswd(htpasswd, options.bcryptCost)
  const blobs = await makeBlobs(workDir)
  registry = await startRegistry()
  const shared: Shared = { dir: workDir, tls, htpasswd, credentials, registry, processes }
  const client: Client = { tls, credentials }
  const direct = directTarget(registry)
  if (blobs.main) await monolithicUpload(client, direct, work.REPOSITORY, blobs.main.blob)
  if (wanted('head').length > 0) await seedManifest(registry)
  const targets = await startTargets(shared)
  log(`targets: ${[...targets.values()].map((target) => `${target.id} ${target.base}`).join(', ')}\n`)

  const bench: work.Bench = { client, results: new Results(), registryPid: registry.child.pid as number, storageDir: registry.storageDir, work: workDir, log }
  await measureAll(bench, targets, blobs)
  const profile = options.profile && targets.has('portier') ? await profileSlowest(bench, shared, blobs) : ''
  const markdown = await report(bench.results, profile, (Date.now() - began) / 60_000)
  const out = resolve(ROOT, options.out)
  await mkdir(dirname(out), { recursive: true })
  await writeFile(out, markdown)
  log(`\n${markdown}\nreport written to ${out}`)
} finally {
  await cleanup()
}
