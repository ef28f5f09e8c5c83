// Web UI with 1,000 repositories: how long until the repository list is visible in headless Chromium, cold and cached,
// and how long the API takes for the first page and for a filter that scans the whole catalog. Medians of several loads.
// Run: npm run bench:ui -- [repositories] [loads]   (default 1000 repositories, 9 loads)
import { createHash } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway } from '../test/helpers/gateway.js'
import { hashPassword } from '../src/auth/hashes.js'

const repositories = Number(process.argv[2] ?? 1000)
const loads = Number(process.argv[3] ?? 9)
const PAGE = 100
const CHROMIUM = process.env.PORTIER_CHROMIUM_BIN ?? '/usr/bin/chromium'
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

function range(values: number[]): string {
  return `${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)}`
}

const digestOf = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`
const name = (index: number): string => `bench/repo-${String(index).padStart(4, '0')}`

/** One shared config blob and one tiny layer, mounted into every repository, then one manifest PUT each. */
async function fill(registryUrl: string): Promise<void> {
  const layer = Buffer.from('portier ui bench layer\n')
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', created: '2026-01-01T00:00:00Z', config: {}, rootfs: { type: 'layers', diff_ids: [digestOf(layer)] } }))
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digestOf(layer), size: layer.length }],
    }),
  )
  const upload = async (repository: string, blob: Buffer): Promise<void> => {
    const started = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
    const location = new URL(started.headers.get('location') ?? '', registryUrl)
    location.searchParams.set('digest', digestOf(blob))
    const done = await fetch(location, { method: 'PUT', body: new Uint8Array(blob), headers: { 'content-type': 'application/octet-stream' } })
    if (done.status !== 201) throw new Error(`blob upload: ${done.status}`)
  }
  const mount = async (repository: string, blob: Buffer): Promise<void> => {
    const answer = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/?mount=${digestOf(blob)}&from=${name(0)}`, { method: 'POST' })
    await answer.arrayBuffer()
    if (answer.status !== 201) throw new Error(`mount into ${repository}: ${answer.status}`)
  }
  const put = async (repository: string): Promise<void> => {
    const answer = await fetch(`${registryUrl}/v2/${repository}/manifests/v1`, { method: 'PUT', body: new Uint8Array(manifest), headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
    await answer.arrayBuffer()
    if (answer.status !== 201) throw new Error(`manifest ${repository}: ${answer.status}`)
  }
  await upload(name(0), layer)
  await upload(name(0), config)
  await put(name(0))
  let next = 1
  const worker = async (): Promise<void> => {
    while (next < repositories) {
      const repository = name(next++)
      await mount(repository, layer)
      await mount(repository, config)
      await put(repository)
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
}

const work = await mkdtemp(join(tmpdir(), 'portier-bench-ui-'))
const registry = await startRegistry()
const htpasswd = join(work, 'htpasswd')
await writeFile(htpasswd, `alice:${await hashPassword('alice-bench-pw', 10)}\n`)
const gateway = await startGateway({
  config: {
    upstreams: [{ url: registry.url }],
    // A realistic ACL: every name is checked against it while the catalog is filtered.
    auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }, { match: { name: 'public/**' }, actions: ['pull'] }] },
  },
})
const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS })
try {
  const filling = performance.now()
  await fill(registry.url)
  process.stdout.write(`filled ${repositories} repositories through the registry API in ${((performance.now() - filling) / 1000).toFixed(1)} s\n`)

  /** A signed-in browser context (the session cookie set by a real sign-in). */
  const signedIn = async (): Promise<BrowserContext> => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 800 } })
    // This script runs through tsx, whose esbuild wraps named functions in __name(): functions sent to the page need it too.
    await context.addInitScript({ content: 'globalThis.__name = (target) => target' })
    const login = await context.request.post(`${gateway.url}/ui/api/login`, { data: { username: 'alice', password: 'alice-bench-pw' }, headers: { origin: gateway.url } })
    if (login.status() !== 200) throw new Error(`sign-in: ${login.status()}`)
    return context
  }
  /** Navigation start → the first page of repositories rendered (ms, measured in the page, rAF granularity). */
  const loadList = async (context: BrowserContext): Promise<number> => {
    const page = await context.newPage()
    await page.goto(`${gateway.url}/ui/`, { waitUntil: 'commit' })
    const visible = await page.waitForFunction((count) => (document.querySelectorAll('ul.repositories li').length >= count ? performance.now() : false), Math.min(PAGE, repositories), { polling: 'raf', timeout: 60_000 })
    const ms = (await visible.jsonValue()) as number
    await page.close()
    return ms
  }

  const cold: number[] = []
  const cached: number[] = []
  const warm = await signedIn()
  await loadList(warm)
  for (let round = 0; round < loads; round++) {
    const fresh = await signedIn()
    cold.push(await loadList(fresh))
    await fresh.close()
    cached.push(await loadList(warm))
  }

  const api = async (path: string): Promise<number> => {
    const started = performance.now()
    const answer = await warm.request.get(`${gateway.url}/ui/api/${path}`)
    await answer.body()
    if (answer.status() !== 200) throw new Error(`${path}: ${answer.status()}`)
    return performance.now() - started
  }
  const firstPage: number[] = []
  const fullScan: number[] = []
  for (let round = 0; round < loads; round++) {
    firstPage.push(await api(`repositories?n=${PAGE}`))
    fullScan.push(await api('repositories?n=100&q=no-such-name'))
  }
  await warm.close()

  const rows = [
    ['repository list visible, new browser context (no cache, session cookie set)', cold],
    ['repository list visible, same context (assets cached)', cached],
    [`GET /ui/api/repositories?n=${PAGE} (first page)`, firstPage],
    [`GET /ui/api/repositories?q=… matching nothing (scans all ${repositories})`, fullScan],
  ] as const
  process.stdout.write(`\nWeb UI with ${repositories} repositories, ${loads} loads each (Chromium ${browser.version()}, ${cpus().length} cores, node ${process.version}, load average ${loadavg().map((load) => load.toFixed(1)).join(' ')})\n`)
  for (const [label, values] of rows) process.stdout.write(`  ${label}: median ${median([...values]).toFixed(0)} ms (range ${range([...values])} ms)\n`)
} finally {
  await browser.close()
  await gateway.stop()
  await registry.stop()
  await rm(work, { recursive: true, force: true })
}
