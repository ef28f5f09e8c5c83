// Storage over time, repository sizes, pulls per day and the GC history against the embedded docker-registry: what the store keeps (measured against du and the blob files), what survives a restart, what the charts in Chromium draw, and a gc.schedule that fires.
import t, { type Test } from 'tap'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { gatewayFixture, ROOT, type GatewayHandle } from '../helpers/gateway.js'
import { buildLayout, type BuiltLayout } from '../helpers/oci-build.js'
import { GatewayClient, sleep } from '../helpers/gwclient.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'

const work = mkdtempSync(join(tmpdir(), 'portier-charts-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface Sample { at: string; diskBytes: number; blobBytes: number; repositories: number; reason: string }
interface Usage { available: boolean; samples: Sample[]; sizesAt?: string; repositories: Array<{ repository: string; bytes: number; blobs: number }> }
interface Pulls { repository: string; days: Array<{ day: string; pulls: number }>; total: number }
interface GcRunReport { id: string; result: string; error?: string; bytesFreed: number; bytesAfter: number; trigger: string; blobsDeleted: number }

async function admin<T>(gateway: GatewayHandle, method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
  const response = await fetch(`${gateway.adminUrl}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  })
  return { status: response.status, json: (await response.json()) as T }
}

function storageOf(gateway: GatewayHandle): string {
  return join(gateway.cwd, 'data', 'registry', 'storage')
}

function blobFile(gateway: GatewayHandle, digest: string): string {
  const hex = digest.slice('sha256:'.length)
  return join(storageOf(gateway), 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

function blobsOf(layout: BuiltLayout): string[] {
  return layout.images.flatMap((image) => [image.manifestDigest, image.configDigest, ...image.layerDigests])
}

/** Bytes of the blob files themselves, read from the registry's storage. */
function bytesOnDisk(gateway: GatewayHandle, digests: Iterable<string>): number {
  let total = 0
  for (const digest of new Set(digests)) total += statSync(blobFile(gateway, digest)).size
  return total
}

async function du(path: string): Promise<number> {
  const result = await run('du', ['-s', '-B1', path])
  return Number(result.stdout.split('\t')[0])
}

async function push(gateway: GatewayHandle, layout: BuiltLayout, reference: string): Promise<void> {
  await skopeoCopy(`oci:${layout.dir}:${layout.tag}`, `docker://${gateway.host}/${reference}`, { destCertDir: gateway.certDir })
}

/** Polls the usage series until `check` holds (bounded: 30 s). */
async function usageWhen(gateway: GatewayHandle, check: (usage: Usage) => boolean, what: string): Promise<Usage> {
  let last: Usage | undefined
  for (let i = 0; i < 300; i++) {
    const answer = await admin<Usage>(gateway, 'GET', '/admin/api/usage?since=1d')
    if (answer.status !== 200) throw new Error(`GET /admin/api/usage answered ${answer.status}`)
    last = answer.json
    if (check(last)) return last
    await sleep(100)
  }
  throw new Error(`${what}: not within 30 s (last: ${JSON.stringify(last)})`)
}

async function runGc(gateway: GatewayHandle): Promise<GcRunReport> {
  const started = await admin<{ run_id: string }>(gateway, 'POST', '/admin/api/gc', {})
  if (started.status !== 202) throw new Error(`POST /admin/api/gc answered ${started.status}`)
  for (let i = 0; i < 1200; i++) {
    const polled = await admin<{ done: boolean; run?: GcRunReport }>(gateway, 'GET', `/admin/api/gc?run=${started.json.run_id}&since=0`)
    if (polled.json.done && polled.json.run) return polled.json.run
    await sleep(100)
  }
  throw new Error('the garbage collection did not finish within 120 s')
}

async function pull(t: Test, client: GatewayClient, repository: string, tag: string): Promise<void> {
  const answer = await client.send('GET', `/v2/${repository}/manifests/${tag}`, { headers: { accept: OCI_MANIFEST } })
  t.equal(answer.status, 200, `pulled ${repository}:${tag}`)
}

const today = (): string => new Date().toISOString().slice(0, 10)

t.test('storage over time and repository sizes (shared layers once), pulls per day, and a GC history that survives a restart', async (t) => {
  const cwd = mkdtempSync(join(work, 'gw-'))
  const config = { gc: { usage_interval: '0' } }
  const gateway = await gatewayFixture(t, { env, cwd, config })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  // The sample at start (an empty storage).
  const first = await usageWhen(gateway, (usage) => usage.samples.length >= 1, 'the sample taken at start')
  t.equal(first.available, true, 'the embedded registry\'s storage can be measured')
  t.equal(first.samples[0]?.reason, 'start')
  t.equal(first.samples[0]?.blobBytes, 0, 'nothing pushed yet')

  const shared = await buildLayout(join(work, 'shared'), 'v1', [{ layers: [900 * 1024, 200 * 1024] }])
  const other = await buildLayout(join(work, 'other'), 'v2', [{ layers: [1500 * 1024] }])
  await push(gateway, shared, 'team/app:v1')
  await push(gateway, shared, 'team/app:latest')
  await push(gateway, other, 'team/app:v2')
  await push(gateway, shared, 'team/copy:v1')
  for (let i = 0; i < 3; i++) await pull(t, client, 'team/app', 'v1')
  await pull(t, client, 'team/copy', 'v1')

  // Pulls per day, from the store: today's count, every other day of the window 0.
  const pulls = await admin<Pulls>(gateway, 'GET', '/admin/api/pulls?repo=team/app&days=7')
  t.equal(pulls.status, 200)
  t.equal(pulls.json.days.length, 7, 'one entry per day, days without pulls too')
  t.same(pulls.json.days[6], { day: today(), pulls: 3 }, 'today: three manifest GETs')
  t.same(pulls.json.days.slice(0, 6).map((day) => day.pulls), [0, 0, 0, 0, 0, 0])
  t.equal(pulls.json.total, 3)
  t.equal((await admin<unknown>(gateway, 'GET', '/admin/api/pulls?repo=Not_A_Repo')).status, 400, 'a bad repository name is a 400')
  t.equal((await admin<unknown>(gateway, 'GET', '/admin/api/pulls?repo=team/app&days=0')).status, 400, 'so is a bad number of days')
  t.equal((await admin<unknown>(gateway, 'GET', '/admin/api/usage?since=yesterday')).status, 400)

  // Delete the second image and collect: a sample follows the run.
  const deleted = await client.send('DELETE', `/v2/team/app/manifests/${other.digest}`)
  t.equal(deleted.status, 202)
  const before = await admin<Usage>(gateway, 'GET', '/admin/api/usage?since=1d')
  const report = await runGc(gateway)
  t.equal(report.result, 'success', report.error ?? '')
  t.ok(report.bytesFreed > 1500 * 1024, `the run freed the deleted image's layer (${report.bytesFreed} bytes)`)
  const after = await usageWhen(gateway, (usage) => usage.samples.length > before.json.samples.length && usage.samples.some((sample) => sample.reason === 'gc'), 'the sample after the GC')
  const sample = after.samples[after.samples.length - 1] as Sample
  t.equal(sample.reason, 'gc')
  t.equal(sample.diskBytes, await du(storageOf(gateway)), 'the sample\'s bytes on disk are what du says')
  const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  t.match(metrics, new RegExp(`^portier_storage_bytes\\{kind="disk"\\} ${sample.diskBytes}$`, 'm'), 'the gauge carries the last sample')
  for (const digest of blobsOf(other)) t.notOk(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} of the deleted image is gone`)
  const sharedBytes = bytesOnDisk(gateway, blobsOf(shared))
  t.equal(sample.blobBytes, sharedBytes, 'overall: the shared image once, though two repositories and two tags name it')
  t.equal(sample.repositories, 2)
  t.same(after.repositories, [{ repository: 'team/app', bytes: sharedBytes, blobs: 4 }, { repository: 'team/copy', bytes: sharedBytes, blobs: 4 }], 'each repository counts the image once (v1 and latest are one manifest)')

  // Before the GC the deleted image still took its space: the sample before it says so.
  await push(gateway, other, 'team/app:v2')
  const withBoth = await admin<Usage>(gateway, 'GET', '/admin/api/usage?since=1d')
  t.equal(withBoth.json.repositories[0]?.bytes, sharedBytes, 'sizes are those of the last sample until the next one')

  // The web UI reads the same series: storage for administrators, pulls for whoever may pull the repository.
  const session = await client.send('GET', '/ui/api/session', { headers: { accept: 'application/json' } })
  const cookie = String(session.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? ''
  const uiUsage = await client.send('GET', '/ui/api/usage?days=1', { headers: { cookie } })
  t.equal(uiUsage.status, 200)
  t.same((uiUsage.json() as Usage).samples, after.samples, 'the UI\'s storage series is the store\'s')
  const uiPulls = await client.send('GET', '/ui/api/pulls?repository=team%2Fcopy&days=3', { headers: { cookie } })
  t.equal(uiPulls.status, 200)
  t.same((uiPulls.json() as Pulls).days.map((day) => day.pulls), [0, 0, 1])
  t.equal((await client.send('GET', '/ui/api/pulls?repository=..', { headers: { cookie } })).status, 400)

  // Restart on the same store: the history and the samples are still there.
  await gateway.stop()
  const restarted = await gatewayFixture(t, { env, cwd, config })
  const history = await admin<{ history: GcRunReport[] }>(restarted, 'GET', '/admin/api/gc')
  t.equal(history.json.history[0]?.id, report.id, 'the run is in the history after a restart')
  t.equal(history.json.history[0]?.bytesFreed, report.bytesFreed, 'with the bytes it freed')
  const client2 = new GatewayClient(restarted)
  t.teardown(() => client2.close())
  const session2 = await client2.send('GET', '/ui/api/session', { headers: { accept: 'application/json' } })
  const cookie2 = String(session2.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? ''
  const status = await client2.send('GET', '/ui/api/status', { headers: { cookie: cookie2 } })
  const gcStatus = (status.json() as { gc?: { history: GcRunReport[] } }).gc
  t.equal(gcStatus?.history[0]?.id, report.id, 'the status panel lists it too')
  t.equal(gcStatus?.history[0]?.bytesFreed, report.bytesFreed)
  const kept = await usageWhen(restarted, (usage) => usage.samples.length >= after.samples.length + 1, 'the samples kept and one more at start')
  t.same(kept.samples.slice(0, after.samples.length), after.samples, 'every sample taken before the restart is kept')
  const pullsAfter = await admin<Pulls>(restarted, 'GET', '/admin/api/pulls?repo=team/app&days=1')
  t.same(pullsAfter.json.days, [{ day: today(), pulls: 3 }], 'pull counts kept too')
})

t.test('gc.schedule with a short interval runs by itself and frees a deleted image', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')), config: { gc: { schedule: '10s', usage_interval: '0' } } })
  await gateway.waitForLog((line) => line.msg === 'garbage collection scheduled', 10_000)
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const keep = await buildLayout(join(work, 'sched-keep'), 'v1', [{ layers: [300 * 1024] }])
  const drop = await buildLayout(join(work, 'sched-drop'), 'v1', [{ layers: [800 * 1024] }])
  await push(gateway, keep, 'sched/keep:v1')
  await push(gateway, drop, 'sched/drop:v1')
  t.equal((await client.send('DELETE', `/v2/sched/drop/manifests/${drop.digest}`)).status, 202)
  const deletedAt = Date.now()

  // Bounded: three intervals at most.
  let found: GcRunReport | undefined
  for (let i = 0; i < 400 && !found; i++) {
    const history = await admin<{ history: Array<GcRunReport & { startedAt: string }> }>(gateway, 'GET', '/admin/api/gc')
    found = history.json.history.find((entry) => entry.trigger === 'schedule' && Date.parse(entry.startedAt) >= deletedAt)
    if (!found) await sleep(100)
  }
  if (!found) throw new Error('no scheduled run within 40 s')
  t.equal(found.result, 'success', found.error ?? '')
  t.ok(found.bytesFreed >= 800 * 1024, `the scheduled run freed the deleted image (${found.bytesFreed} bytes)`)
  for (const digest of blobsOf(drop)) t.notOk(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} gone`)
  for (const digest of blobsOf(keep)) t.ok(existsSync(blobFile(gateway, digest)), `the tagged image's ${digest.slice(0, 19)} kept`)
  t.equal((await admin<{ on: boolean }>(gateway, 'GET', '/admin/api/maintenance')).json.on, false, 'maintenance left after it')
})

t.test('Chromium: the status panel draws storage over time and the repository sizes, a repository page its pulls per day', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')), config: { gc: { usage_interval: '1s' } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  // Storage grows with each push, then a delete and a GC bring it down: a line with a shape.
  const layouts: BuiltLayout[] = []
  for (let i = 0; i < 4; i++) {
    const layout = await buildLayout(join(work, `ui-${i}`), `v${i + 1}`, [{ layers: [(i + 1) * 700 * 1024, 150 * 1024] }])
    layouts.push(layout)
    await push(gateway, layout, `shop/web:v${i + 1}`)
    const pushed = (await admin<Usage>(gateway, 'GET', '/admin/api/usage?since=1d')).json.samples.length
    await usageWhen(gateway, (usage) => usage.samples.length >= pushed + 2, 'two more samples')
  }
  await push(gateway, layouts[0] as BuiltLayout, 'shop/api:v1')
  for (let i = 0; i < 5; i++) await pull(t, client, 'shop/web', 'v4')
  t.equal((await client.send('DELETE', `/v2/shop/web/manifests/${(layouts[3] as BuiltLayout).digest}`)).status, 202)
  const report = await runGc(gateway)
  t.equal(report.result, 'success', report.error ?? '')
  const usage = await usageWhen(gateway, (series) => series.samples.some((sample) => sample.reason === 'gc'), 'the sample after the GC')

  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser, { width: 1100, height: 900 })
  await page.goto(`${gateway.url}/ui/#/status`)
  const chart = page.locator('#storage-chart svg')
  await chart.waitFor()
  const drawn = Number(await chart.getAttribute('data-points'))
  t.ok(drawn >= usage.samples.length, `the line has a point per sample (${drawn} ≥ ${usage.samples.length})`)
  const values = await page.locator('#storage-chart circle.dot').evaluateAll((dots) => dots.map((dot) => Number(dot.getAttribute('data-value'))))
  t.same(values.slice(0, usage.samples.length), usage.samples.map((sample) => sample.diskBytes), 'each point is a sample\'s bytes on disk, in order')
  t.match(await page.locator('#storage-chart-title').textContent(), /Bytes on disk/)
  const latest = (await admin<Usage>(gateway, 'GET', '/admin/api/usage?since=1d')).json
  const webRow = page.locator('table.repository-sizes tr[data-repository="shop/web"] td[data-bytes]')
  t.equal(Number(await webRow.getAttribute('data-bytes')), latest.repositories.find((entry) => entry.repository === 'shop/web')?.bytes, 'the sizes table shows shop/web\'s size')
  t.equal(Number(await page.locator('.gc-history td[data-bytes]').first().getAttribute('data-bytes')), report.bytesFreed, 'and the GC history the bytes freed')
  const storageShot = await page.locator('section.storage').screenshot({ path: join(work, 'storage.png') })
  t.ok(storageShot.length > 1000, 'the storage section renders')
  await screenshot(page, 'status-storage')

  await page.goto(`${gateway.url}/ui/#/r/shop/web`)
  const bars = page.locator('#pulls-chart svg')
  await bars.waitFor()
  t.equal(await page.locator('#pulls-chart rect.bar').count(), 30, 'thirty days of bars')
  t.equal(Number(await page.locator(`#pulls-chart rect.bar[data-day="${today()}"]`).getAttribute('data-value')), 5, 'today\'s bar: five pulls')
  t.equal(Number(await bars.getAttribute('data-total')), 5)
  const pullsShot = await page.locator('section.pulls').screenshot({ path: join(work, 'pulls.png') })
  t.ok(pullsShot.length > 1000, 'the pulls section renders')
  await screenshot(page, 'tags-pulls')
  t.same(problems.errors, [], 'no page errors (no CSP violation from the SVG)')

  // PORTIER_DOCS_SCREENSHOTS=1 refreshes the README's pictures.
  if (process.env.PORTIER_DOCS_SCREENSHOTS === '1') {
    const docs = join(ROOT, 'docs', 'screenshots')
    mkdirSync(docs, { recursive: true })
    copyFileSync(join(work, 'storage.png'), join(docs, 'storage-chart.png'))
    copyFileSync(join(work, 'pulls.png'), join(docs, 'pulls-chart.png'))
  }
})
