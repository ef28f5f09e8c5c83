// The workloads: each runs one step against one target and records what it measured, CPU included.
import { open, readFile, rm } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { RegistryStorage } from '../../src/housekeeping/registry-storage.js'
import { makeOciLayout, readOciLayout, type OciImage } from '../../test/helpers/oci.js'
import { skopeoCopy, type SkopeoCopyOptions } from '../../test/helpers/skopeo.js'
import { chunkedUpload, curl, download, monolithicUpload, type Client } from './curl.js'
import type { BlobFile, Chunk } from './fixtures.js'
import { abHead, wrk, type LoadResult } from './load.js'
import { cpuSeconds, peakRss, resetPeakRss } from './procs.js'
import type { Results, RowSpec } from './results.js'
import { fmt, median, MiB, mbps } from './stats.js'
import type { Target } from './targets.js'

export interface Bench {
  client: Client
  results: Results
  registryPid: number
  /** The bench registry's storage root (upstreams[].storage for the storage targets). */
  storageDir: string
  work: string
  log: (line: string) => void
}

interface Step<T> {
  value: T
  seconds: number
  proxyCpu: number
  registryCpu: number
}

async function cpuOf(pids: number[]): Promise<number> {
  let total = 0
  for (const pid of pids) total += await cpuSeconds(pid)
  return total
}

/** Runs fn and measures its wall time and the CPU the target's proxy and the registry spent meanwhile. */
async function step<T>(bench: Bench, target: Target, fn: () => Promise<T>): Promise<Step<T>> {
  const proxyBefore = await cpuOf(target.proxyPids)
  const registryBefore = await cpuSeconds(bench.registryPid)
  const begin = performance.now()
  const value = await fn()
  const seconds = (performance.now() - begin) / 1000
  return {
    value,
    seconds,
    proxyCpu: (await cpuOf(target.proxyPids)) - proxyBefore,
    registryCpu: (await cpuSeconds(bench.registryPid)) - registryBefore,
  }
}

function cpuNote(target: Target, measured: Step<unknown>): string {
  const registry = `registry ${fmt((measured.registryCpu / measured.seconds) * 100)} %`
  return target.proxyPids.length ? `proxy CPU ${fmt((measured.proxyCpu / measured.seconds) * 100)} %, ${registry}` : registry
}

export const REPOSITORY = 'bench/blob'

export function transferRows(blobMiB: number, chunkMiB: number): { upload: RowSpec; chunked: RowSpec; download: RowSpec } {
  return {
    upload: { key: 'upload', title: `${blobMiB} MiB blob, monolithic upload`, unit: 'MB/s', higherIsBetter: true },
    chunked: { key: 'chunked', title: `${blobMiB} MiB blob as ${chunkMiB} MiB PATCHes`, unit: 'MB/s', higherIsBetter: true },
    download: { key: 'download', title: `${blobMiB} MiB blob download`, unit: 'MB/s', higherIsBetter: true },
  }
}

export async function runUpload(bench: Bench, target: Target, row: RowSpec, blob: BlobFile): Promise<void> {
  const measured = await step(bench, target, () => monolithicUpload(bench.client, target, REPOSITORY, blob))
  // Throughput from curl's own time of the PUT (the POST before it is a small request).
  const value = mbps(blob.size, measured.value)
  bench.results.add(row, target.id, { value, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu })
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} ${fmt(value).padStart(8)} MB/s   ${cpuNote(target, measured)}`)
}

export async function runChunked(bench: Bench, target: Target, row: RowSpec, blob: BlobFile, chunks: Chunk[]): Promise<void> {
  const measured = await step(bench, target, () => chunkedUpload(bench.client, target, REPOSITORY, blob, chunks))
  const value = mbps(blob.size, measured.value)
  bench.results.add(row, target.id, { value, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu })
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} ${fmt(value).padStart(8)} MB/s   ${cpuNote(target, measured)}`)
}

/**
 * Downloads per target and round; the round's figure is their median. One 512 MiB download takes ~0.35 s over
 * TLS here, and single downloads of the same target swung by ±15 % on this VM (12 rounds: the ceiling 1,141-1,536
 * MB/s, blobs from storage 1,091-1,478), so a median of three rounds of one download each was mostly noise.
 */
export const DOWNLOADS_PER_ROUND = 3

/** Bytes this process has had read from the disk (not from the page cache) so far. */
async function diskReadBytes(): Promise<number> {
  const io = await readFile('/proc/self/io', 'utf8')
  return Number(/^read_bytes: (\d+)$/m.exec(io)?.[1] ?? Number.NaN)
}

/**
 * Reads the blob's data file in the registry's storage once, outside the timed step, before every
 * target's downloads: each then serves it from the page cache. This VM pages out file pages that
 * have not been touched for about a minute (DAMON's proactive reclaim, `pageout` for regions cold
 * 12 aggregations of 5 s), and the blob is read by some targets only: a download from storage read
 * 2-21 MiB of it from the disk after 20-70 s without a reader (BENCHMARKS.md, "Blobs from storage").
 * The ceiling never reads a file. Returns the MiB the warm-up itself had to read from the disk.
 */
async function warmBlob(bench: Bench, digest: string): Promise<number> {
  const before = await diskReadBytes()
  const handle = await open(new RegistryStorage(bench.storageDir).blobPath(digest), 'r')
  try {
    const buffer = Buffer.allocUnsafe(MiB)
    while ((await handle.read(buffer, 0, buffer.length, null)).bytesRead > 0);
  } finally {
    await handle.close()
  }
  return ((await diskReadBytes()) - before) / MiB
}

export async function runDownload(bench: Bench, target: Target, row: RowSpec, blob: BlobFile): Promise<void> {
  const fromDisk = await warmBlob(bench, blob.digest)
  const measured = await step(bench, target, async () => {
    const speeds: number[] = []
    for (let i = 0; i < DOWNLOADS_PER_ROUND; i++) speeds.push(mbps(blob.size, await download(bench.client, target, REPOSITORY, blob)))
    return speeds
  })
  const value = median(measured.value)
  bench.results.add(row, target.id, { value, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu })
  const each = measured.value.map((speed) => fmt(speed)).join(' / ')
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} ${fmt(value).padStart(8)} MB/s (${each})   ${cpuNote(target, measured)}; warm-up read ${fmt(fromDisk)} MiB from disk`)
}

/**
 * Pulls of each pushed image in a round, one after the other; the round's figure is their median, as a
 * download's round is the median of DOWNLOADS_PER_ROUND. One pull of 3×100 MiB takes about a second
 * and swung ±5 % between identical pulls on the 2-core VM, as much as the gap the target asks about.
 */
export const PULLS_PER_ROUND = 3

export function skopeoRows(layersMiB: number[]): { push: RowSpec; pull: RowSpec } {
  const image = `${layersMiB.length}×${[...new Set(layersMiB)].join('/')} MiB`
  return {
    push: { key: 'skopeo-push', title: `skopeo push, ${image} image`, unit: 's', higherIsBetter: false },
    pull: { key: 'skopeo-pull', title: `skopeo pull, ${image} image`, unit: 's', higherIsBetter: false },
  }
}

export async function runSkopeo(bench: Bench, target: Target, rows: { push: RowSpec; pull: RowSpec }, layersMiB: number[], round: number): Promise<void> {
  const name = `${target.id}-${round}`
  // Fresh random layers every time, or skopeo would skip or mount blobs the registry has seen.
  const image = await makeOciLayout(join(bench.work, 'oci', name), { layers: layersMiB.map((size) => size * MiB) })
  const back = join(bench.work, 'oci', `${name}-pulled`)
  const repository = `bench/skopeo-${name}`
  const reference = `docker://${new URL(target.base).host}/${repository}:latest`
  const creds = `${bench.client.credentials.user}:${bench.client.credentials.password}`
  const destination: SkopeoCopyOptions = target.tls ? { destCertDir: bench.client.tls.certDir } : { destTlsVerify: false }
  const source: SkopeoCopyOptions = target.tls ? { srcCertDir: bench.client.tls.certDir } : { srcTlsVerify: false }
  if (target.auth) {
    destination.destCreds = creds
    source.srcCreds = creds
  }
  try {
    const push = await step(bench, target, () => skopeoCopy(`oci:${image.dir}:latest`, reference, destination))
    const pulls: Array<Step<unknown>> = []
    for (let i = 0; i < PULLS_PER_ROUND; i++) {
      await rm(back, { recursive: true, force: true })
      pulls.push(await step(bench, target, () => skopeoCopy(reference, `oci:${back}:latest`, source)))
      const pulled = await readOciLayout(back, 'latest')
      if (pulled.manifestDigest !== image.manifestDigest) throw new Error(`${target.id}: pulled manifest ${pulled.manifestDigest}, pushed ${image.manifestDigest}`)
    }
    // The round's pull: the median of its pulls, with that pull's CPU figures.
    const pull = [...pulls].sort((a, b) => a.seconds - b.seconds)[Math.floor(pulls.length / 2)]
    if (pull === undefined) throw new Error('PULLS_PER_ROUND must be at least 1')
    for (const [row, measured] of [[rows.push, push], [rows.pull, pull]] as const) {
      bench.results.add(row, target.id, { value: measured.seconds, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu })
      const each = row === rows.pull ? ` (${pulls.map((one) => fmt(one.seconds)).join(' / ')})` : ''
      bench.log(`${row.key.padEnd(11)} ${target.id.padEnd(12)} ${fmt(measured.seconds).padStart(6)} s${each}   ${cpuNote(target, measured)}`)
    }
    await dropImage(bench.storageDir, repository, image)
  } finally {
    await rm(image.dir, { recursive: true, force: true })
    await rm(back, { recursive: true, force: true })
  }
}

/**
 * Removes a pushed image from the registry's storage (blobs and repository), so the page cache is
 * the same size at every step. On this VM, writing into memory the page cache has not used yet is up to
 * ten times slower once a few GB more are in use (see BENCHMARKS.md, "Rounds that slow down"). Kept,
 * each step's fresh 300 MiB would add up to 2.1 GB per round of seven targets, and every step after ~4 GB
 * would slow down, whichever target it measured.
 * Nothing asks for these blobs again: the next step pushes fresh layers. A path that is not there
 * throws: the storage layout this relies on has changed.
 */
async function dropImage(storageDir: string, repository: string, image: OciImage): Promise<void> {
  const storage = new RegistryStorage(storageDir)
  for (const digest of [image.manifestDigest, image.configDigest, ...image.layerDigests]) {
    await rm(dirname(storage.blobPath(digest)), { recursive: true })
  }
  await rm(storage.repositoryDir(repository), { recursive: true })
}

export function loadRows(connections: number, bcryptCost: number): { get: RowSpec; head: RowSpec; latency: RowSpec } {
  return {
    get: { key: 'get', title: `GET /v2/, wrk, ${connections} connections, bcrypt cost ${bcryptCost}`, unit: 'req/s', higherIsBetter: true },
    head: { key: 'head', title: `HEAD manifest, ab -k, ${connections} connections, bcrypt cost ${bcryptCost}`, unit: 'req/s', higherIsBetter: true },
    latency: { key: 'latency', title: 'GET /v2/ one connection (wrk -c1), median latency', unit: 'ms', higherIsBetter: false },
  }
}

function authHeaders(bench: Bench, target: Target): string[] {
  return target.auth ? [`Authorization: ${bench.client.credentials.header}`] : []
}

/** Fails unless the target answers the request about to be measured with 200: otherwise the figure means nothing. */
export async function checkAnswers(bench: Bench, target: Target, path: string, head: boolean, accept?: string): Promise<void> {
  const args = head ? ['-I'] : []
  if (accept) args.push('-H', `Accept: ${accept}`)
  const result = await curl(bench.client, target, `${target.base}${path}`, args)
  if (result.status !== 200) throw new Error(`${target.id} answers ${path} with ${result.status}, not 200`)
}

async function recordLoad(bench: Bench, target: Target, row: RowSpec, fn: () => Promise<LoadResult>, valueOf: (result: LoadResult) => number): Promise<void> {
  const measured = await step(bench, target, fn)
  const result = measured.value
  if (result.errors > 0) bench.log(`  warning: ${target.id} had ${result.errors} failed or non-2xx requests`)
  bench.results.add(row, target.id, {
    value: valueOf(result),
    seconds: measured.seconds,
    proxyCpu: measured.proxyCpu,
    registryCpu: measured.registryCpu,
    p50ms: result.p50ms,
    p99ms: result.p99ms,
  })
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} ${fmt(result.requestsPerSecond).padStart(8)} req/s  p50 ${fmt(result.p50ms)} ms  p99 ${fmt(result.p99ms)} ms   ${cpuNote(target, measured)}`)
}

export async function runGet(bench: Bench, target: Target, row: RowSpec, seconds: number, connections: number): Promise<void> {
  await recordLoad(bench, target, row, () => wrk({ url: `${target.base}/v2/`, seconds, connections, headers: authHeaders(bench, target) }), (result) => result.requestsPerSecond)
}

export const MANIFEST_PATH = '/v2/bench/app/manifests/v1'
export const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json'

export async function runHead(bench: Bench, target: Target, row: RowSpec, seconds: number, connections: number): Promise<void> {
  const headers = [`Accept: ${MANIFEST_TYPE}`, ...authHeaders(bench, target)]
  await recordLoad(bench, target, row, () => abHead({ url: `${target.base}${MANIFEST_PATH}`, seconds, connections, headers }), (result) => result.requestsPerSecond)
}

export async function runLatency(bench: Bench, target: Target, row: RowSpec, seconds: number): Promise<void> {
  const measured = await step(bench, target, () => wrk({ url: `${target.base}/v2/`, seconds, connections: 1, headers: authHeaders(bench, target) }))
  const result = measured.value
  bench.results.add(row, target.id, { value: result.p50ms, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu, p99ms: result.p99ms })
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} p50 ${fmt(result.p50ms)} ms  p99 ${fmt(result.p99ms)} ms  (${fmt(result.requestsPerSecond)} req/s)`)
}

export function concurrentRow(count: number, mib: number): RowSpec {
  return { key: `concurrent-${count}x${mib}`, title: `${count} concurrent ${mib} MiB uploads`, unit: 'MB/s', higherIsBetter: true }
}

/** count monolithic uploads at once; the target's peak RSS is reset before and read after. */
export async function runConcurrent(bench: Bench, target: Target, row: RowSpec, blob: BlobFile, count: number): Promise<void> {
  const pid = target.mainPid
  const reset = pid !== undefined && (await resetPeakRss(pid))
  const measured = await step(bench, target, () =>
    Promise.all(Array.from({ length: count }, () => monolithicUpload(bench.client, target, 'bench/concurrent', blob))))
  const rss = pid !== undefined && reset ? await peakRss(pid) : Number.NaN
  const value = mbps(blob.size * count, measured.seconds)
  bench.results.add(row, target.id, { value, seconds: measured.seconds, proxyCpu: measured.proxyCpu, registryCpu: measured.registryCpu, peakRss: rss })
  bench.log(`${row.key.padEnd(9)} ${target.id.padEnd(12)} ${fmt(value).padStart(8)} MB/s  peak RSS ${fmt(rss / MiB)} MiB   ${cpuNote(target, measured)}`)
}
