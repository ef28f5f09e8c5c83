// Garbage collection through the admin API against the embedded docker-registry: bytes of a deleted image freed on disk and none of a tagged image's, dry runs change nothing, multi-arch children survive --delete-untagged, pushes during a run are refused and succeed after, repository delete.
import t, { type Test } from 'tap'
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { CLI, gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { buildLayout, type BuiltLayout } from '../helpers/oci-build.js'
import { readOciLayout } from '../helpers/oci.js'
import { GatewayClient, sha256, sleep } from '../helpers/gwclient.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { REGISTRY_BIN } from '../helpers/registry.js'

const work = mkdtempSync(join(tmpdir(), 'portier-gc-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }

interface GcRunReport {
  id: string
  result: string
  error?: string
  dryRun: boolean
  bytesBefore: number
  bytesAfter: number
  bytesFreed: number
  blobsDeleted: number
  blobsEligible: number
  manifestsDeleted: number
  manifestsEligible: number
  protectedManifests: number
  drain?: { finished: number; remaining: number }
}

interface Progress {
  phase: string
  message: string
}

async function admin(gateway: GatewayHandle, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${gateway.adminUrl}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  })
  return { status: response.status, json: (await response.json()) as Record<string, unknown> }
}

/** Starts a run and polls its progress until it is done (bounded: 120 s). */
async function startGc(gateway: GatewayHandle, body: Record<string, unknown>): Promise<string> {
  const started = await admin(gateway, 'POST', '/admin/api/gc', body)
  if (started.status !== 202) throw new Error(`POST /admin/api/gc answered ${started.status}: ${JSON.stringify(started.json)}`)
  return String(started.json.run_id)
}

async function waitGc(gateway: GatewayHandle, runId: string): Promise<{ run: GcRunReport; phases: string[] }> {
  const phases: string[] = []
  let since = 0
  const deadline = Date.now() + 120_000
  while (Date.now() < deadline) {
    const polled = await admin(gateway, 'GET', `/admin/api/gc?run=${runId}&since=${since}`)
    if (polled.status !== 200) throw new Error(`GET /admin/api/gc answered ${polled.status}: ${JSON.stringify(polled.json)}`)
    for (const event of polled.json.events as Progress[]) if (phases[phases.length - 1] !== event.phase) phases.push(event.phase)
    since = Number(polled.json.next)
    if (polled.json.done === true) return { run: polled.json.run as GcRunReport, phases }
    await sleep(100)
  }
  throw new Error(`garbage collection ${runId} did not finish within 120 s`)
}

async function gc(gateway: GatewayHandle, body: Record<string, unknown>): Promise<{ run: GcRunReport; phases: string[] }> {
  return await waitGc(gateway, await startGc(gateway, body))
}

function storageOf(gateway: GatewayHandle): string {
  return join(gateway.cwd, 'data', 'registry', 'storage')
}

function blobFile(gateway: GatewayHandle, digest: string): string {
  const hex = digest.slice('sha256:'.length)
  return join(storageOf(gateway), 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

/** Allocated bytes, as `du` measures them (independently of Portier's own walk). */
async function du(path: string): Promise<number> {
  const result = await run('du', ['-s', '-B1', path])
  return Number(result.stdout.split('\t')[0])
}

/** Every file under the storage with its size: the on-disk state. */
function snapshot(root: string): string[] {
  const found: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name)
      const stats = statSync(path)
      if (stats.isDirectory()) walk(path)
      else found.push(`${path.slice(root.length)} ${stats.size}`)
    }
  }
  walk(root)
  return found
}

function blobsOf(layout: BuiltLayout): string[] {
  return layout.images.flatMap((image) => [image.manifestDigest, image.configDigest, ...image.layerDigests])
}

async function push(gateway: GatewayHandle, layout: BuiltLayout, repository: string, all = false): Promise<void> {
  await skopeoCopy(`oci:${layout.dir}:${layout.tag}`, `docker://${gateway.host}/${repository}:${layout.tag}`, {
    destCertDir: gateway.certDir,
    ...(all ? { extraArgs: ['--all'] } : {}),
  })
}

async function pullAndCheck(t: Test, gateway: GatewayHandle, reference: string, expected: { manifestDigest: string; configDigest: string; layerDigests: string[] }, label: string): Promise<void> {
  const dir = mkdtempSync(join(work, 'pull-'))
  await skopeoCopy(`docker://${gateway.host}/${reference}`, `oci:${dir}:x`, { srcCertDir: gateway.certDir })
  const back = await readOciLayout(dir, 'x')
  t.equal(back.manifestDigest, expected.manifestDigest, `${label}: manifest digest`)
  t.equal(back.configDigest, expected.configDigest, `${label}: config digest`)
  t.same(back.layerDigests, expected.layerDigests, `${label}: layer digests`)
}

async function deleteManifest(t: Test, client: GatewayClient, repository: string, digest: string): Promise<void> {
  const deleted = await client.send('DELETE', `/v2/${repository}/manifests/${digest}`)
  t.equal(deleted.status, 202, `${repository}@${digest.slice(0, 19)} deleted`)
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((entry) => entry.startsWith(name))
  return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1))
}

t.test('GC frees the deleted image on disk, keeps every blob of the tagged one, and re-pushing the deleted image works after', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const keep = await buildLayout(join(work, 'keep'), 'v1', [{ layers: [1024 * 1024, 300 * 1024] }])
  const drop = await buildLayout(join(work, 'drop'), 'v1', [{ layers: [3 * 1024 * 1024, 700 * 1024] }])
  await push(gateway, keep, 'gc/keep')
  await push(gateway, drop, 'gc/drop')
  for (const digest of [...blobsOf(keep), ...blobsOf(drop)]) t.ok(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} on disk after the push`)
  await deleteManifest(t, client, 'gc/drop', drop.digest)
  const dropBytes = (drop.images[0]?.layerSizes ?? []).reduce((sum, size) => sum + size, 0)

  const before = await du(storageOf(gateway))
  const { run: report, phases } = await gc(gateway, {})
  const after = await du(storageOf(gateway))
  t.equal(report.result, 'success', report.error ?? 'the run succeeded')
  t.same(phases.filter((phase) => ['maintenance', 'draining', 'measuring', 'collecting', 'leaving', 'done'].includes(phase)), ['maintenance', 'draining', 'measuring', 'collecting', 'leaving', 'done'], `phases in order: ${phases.join(' → ')}`)
  t.ok(before - after >= dropBytes, `du: storage shrank by ${before - after} bytes ≥ the deleted image's layers (${dropBytes})`)
  t.ok(report.bytesFreed >= dropBytes, `the report says ${report.bytesFreed} bytes freed`)
  t.ok(Math.abs(report.bytesFreed - (before - after)) <= 64 * 1024, `Portier's own measure (${report.bytesFreed}) agrees with du (${before - after})`)
  t.equal(report.blobsDeleted, 4, 'two layers, the config and the manifest blob of the deleted image')
  for (const digest of blobsOf(drop)) t.notOk(existsSync(blobFile(gateway, digest)), `deleted image's ${digest.slice(0, 19)} gone from disk`)
  for (const digest of blobsOf(keep)) t.ok(existsSync(blobFile(gateway, digest)), `tagged image's ${digest.slice(0, 19)} still on disk`)
  const image = keep.images[0]
  if (!image) throw new Error('no image')
  await pullAndCheck(t, gateway, 'gc/keep:v1', image, 'the tagged image after GC')

  const maintenance = await admin(gateway, 'GET', '/admin/api/maintenance')
  t.equal(maintenance.json.on, false, 'maintenance was left')
  const history = await admin(gateway, 'GET', '/admin/api/gc')
  t.equal((history.json.history as GcRunReport[])[0]?.id, report.id, 'the run is in the history')
  t.equal(history.json.running, null)
  const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  t.equal(metric(metrics, 'portier_gc_runs_total{result="success",kind="collect"}'), 1)
  t.equal(metric(metrics, 'portier_gc_bytes_freed_total'), report.bytesFreed)
  t.equal(metric(metrics, 'portier_gc_running'), 0)
  await gateway.logsSettled()
  const logged = gateway.logs.find((line) => line.msg === 'garbage collection finished')
  t.equal(logged?.bytesFreed, report.bytesFreed, 'the log line carries the report')

  // The embedded registry has no blob descriptor cache: a layer GC deleted is uploaded again, not skipped.
  await push(gateway, drop, 'gc/drop')
  for (const digest of blobsOf(drop)) t.ok(existsSync(blobFile(gateway, digest)), `re-pushed ${digest.slice(0, 19)} on disk again`)
  const dropImage = drop.images[0]
  if (!dropImage) throw new Error('no image')
  await pullAndCheck(t, gateway, 'gc/drop:v1', dropImage, 'the re-pushed image')
})

t.test('a dry run deletes nothing: the on-disk state is unchanged, and it reports what a run would delete', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const layout = await buildLayout(join(work, 'dry'), 'v1', [{ layers: [512 * 1024] }])
  await push(gateway, layout, 'gc/dry')
  await deleteManifest(t, client, 'gc/dry', layout.digest)
  const before = snapshot(storageOf(gateway))
  const { run: report } = await gc(gateway, { dry_run: true, delete_untagged: true })
  t.equal(report.result, 'success', report.error ?? '')
  t.equal(report.dryRun, true)
  t.equal(report.blobsEligible, 3, 'the layer, config and manifest would go')
  t.equal(report.blobsDeleted, 0)
  t.equal(report.bytesFreed, 0)
  t.same(snapshot(storageOf(gateway)), before, 'every file still there, same sizes')
  const maintenance = await admin(gateway, 'GET', '/admin/api/maintenance')
  t.equal(maintenance.json.on, false, 'a dry run never switched maintenance on')
})

t.test('--delete-untagged keeps the platform manifests of a tagged multi-arch index (distribution #3178)', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const multi = await buildLayout(join(work, 'multi'), 'v1', [
    { layers: [256 * 1024], platform: { os: 'linux', architecture: 'amd64' } },
    { layers: [320 * 1024], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
  ])
  await push(gateway, multi, 'gc/multi', true)
  // An untagged single image in the same repository: --delete-untagged must still delete it.
  const loose = await buildLayout(join(work, 'loose'), 'old', [{ layers: [128 * 1024] }])
  await push(gateway, loose, 'gc/multi')
  const retag = await client.send('GET', `/v2/gc/multi/manifests/${multi.digest}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } })
  t.equal(retag.status, 200)
  // Make "old" point at the index as well, so the loose image is untagged.
  const put = await client.send('PUT', '/v2/gc/multi/manifests/old', { headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body: retag.body })
  t.equal(put.status, 201)

  // The registry's own collector, left alone, would delete both platform manifests and their layers.
  const raw = await run(REGISTRY_BIN, ['garbage-collect', '--dry-run', '--delete-untagged', join(gateway.cwd, 'data', 'registry', 'config.yml')])
  for (const image of multi.images) t.match(raw.stdout, `manifest eligible for deletion: ${image.manifestDigest}`, `unprotected, 2.8.2 would delete ${image.platform.architecture}`)

  const { run: report } = await gc(gateway, { delete_untagged: true })
  t.equal(report.result, 'success', report.error ?? '')
  t.equal(report.protectedManifests, 2, 'both platform manifests kept by a temporary tag')
  t.equal(report.manifestsDeleted, 1, 'the untagged single image was deleted')
  for (const digest of blobsOf(loose)) t.notOk(existsSync(blobFile(gateway, digest)), `untagged ${digest.slice(0, 19)} gone`)
  for (const image of multi.images) {
    for (const digest of [image.manifestDigest, image.configDigest, ...image.layerDigests]) t.ok(existsSync(blobFile(gateway, digest)), `${image.platform.architecture} ${digest.slice(0, 19)} on disk`)
    await pullAndCheck(t, gateway, `gc/multi@${image.manifestDigest}`, image, `${image.platform.architecture} by digest`)
  }
  const tags = await client.send('GET', '/v2/gc/multi/tags/list')
  t.same((tags.json() as { tags: string[] }).tags.sort(), ['old', 'v1'], 'the temporary tags are gone')
  t.equal(sha256(retag.body), multi.digest)
})

/** Uploads one blob in a single POST + PUT (monolithic upload). */
async function uploadBlob(t: Test, client: GatewayClient, repository: string, bytes: Buffer): Promise<string> {
  const digest = sha256(bytes)
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  t.equal(started.status, 202)
  const path = client.pathOf(String(started.headers.location))
  const put = await client.send('PUT', `${path}${path.includes('?') ? '&' : '?'}digest=${digest}`, { headers: { 'content-type': 'application/octet-stream' }, body: bytes })
  t.equal(put.status, 201, `blob ${digest.slice(0, 19)} uploaded`)
  return digest
}

t.test('a push started during GC is refused cleanly and succeeds after; a push in flight when GC starts keeps every blob and its image pulls intact', async (t) => {
  // A run lets uploads begun before it finish for gc.drain_timeout (the time it waits for them), not maintenance.drain_timeout.
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')), config: { gc: { drain_timeout: '60s' }, maintenance: { drain_timeout: '1s' } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  // A push in flight: its config blob is committed, its layer is half uploaded when the run starts.
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const configDigest = await uploadBlob(t, client, 'gc/inflight', config)
  const layer = Buffer.alloc(600 * 1024, 7)
  const layerDigest = sha256(layer)
  const started = await client.send('POST', '/v2/gc/inflight/blobs/uploads/')
  t.equal(started.status, 202)
  const firstHalf = await client.send('PATCH', client.pathOf(String(started.headers.location)), { headers: { 'content-type': 'application/octet-stream' }, body: layer.subarray(0, 300 * 1024) })
  t.equal(firstHalf.status, 202)

  const runId = await startGc(gateway, {})
  const waiting = await admin(gateway, 'GET', `/admin/api/gc?run=${runId}&since=0`)
  t.ok((waiting.json.events as Progress[]).some((event) => event.phase === 'draining'), 'the run waits for the upload in flight')

  // A new push now: refused in the registry's JSON error format.
  const late = await buildLayout(join(work, 'late'), 'v1', [{ layers: [200 * 1024] }])
  const refused = await skopeoCopy(`oci:${late.dir}:v1`, `docker://${gateway.host}/gc/late:v1`, { destCertDir: gateway.certDir, allowFailure: true })
  t.not(refused.code, 0, 'skopeo reports the push as failed')
  t.match(refused.stderr, /read-only|maintenance/i, 'and says why')
  const post = await client.send('POST', '/v2/gc/late/blobs/uploads/')
  t.ok(post.status === 405 || post.status === 503, `a new upload is refused (${post.status})`)
  t.ok(post.errorCode() === 'UNSUPPORTED' || post.errorCode() === 'UNAVAILABLE', `registry error code ${post.errorCode()}`)

  // The upload in flight goes on and commits its blob.
  const secondHalf = await client.send('PATCH', client.pathOf(String(firstHalf.headers.location)), { headers: { 'content-type': 'application/octet-stream' }, body: layer.subarray(300 * 1024) })
  t.equal(secondHalf.status, 202, 'its next chunk is accepted')
  const finishPath = client.pathOf(String(secondHalf.headers.location))
  const finished = await client.send('PUT', `${finishPath}${finishPath.includes('?') ? '&' : '?'}digest=${layerDigest}`)
  t.equal(finished.status, 201, 'and it commits')
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length }],
  }))
  const putManifest = (): Promise<{ status: number }> => client.send('PUT', '/v2/gc/inflight/manifests/v1', { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest })
  // The push's last step: an upload begun before the run may finish, its manifest PUT included (within gc.drain_timeout).
  const during = await putManifest()
  t.equal(during.status, 201, 'the manifest of the push in flight is admitted during the wait')
  const elsewhere = await client.send('PUT', '/v2/gc/elsewhere/manifests/v1', { headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: manifest })
  t.equal(elsewhere.status, 405, 'a manifest PUT that belongs to no push in flight is refused')

  const { run: report } = await waitGc(gateway, runId)
  t.equal(report.result, 'success', report.error ?? '')
  t.equal(report.drain?.remaining, 0, 'the run waited until nothing was in flight')
  t.ok((report.drain?.finished ?? 0) >= 1, `the upload (and what followed it) finished during the wait: ${JSON.stringify(report.drain)}`)
  for (const digest of [configDigest, layerDigest]) t.ok(existsSync(blobFile(gateway, digest)), `the push's ${digest.slice(0, 19)} survived the run`)
  const pulledManifest = await client.send('GET', '/v2/gc/inflight/manifests/v1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(pulledManifest.status, 200)
  t.equal(sha256(pulledManifest.body), sha256(manifest), 'manifest digest')
  for (const digest of [configDigest, layerDigest]) {
    const blob = await client.send('GET', `/v2/gc/inflight/blobs/${digest}`)
    t.equal(blob.status, 200, `${digest.slice(0, 19)} pulls`)
    t.equal(sha256(blob.body), digest, 'with its bytes')
  }
  const tags = await client.send('GET', '/v2/gc/inflight/tags/list')
  t.same((tags.json() as { tags: string[] }).tags, ['v1'], 'no temporary tag left')

  // After the run: the refused push succeeds.
  await push(gateway, late, 'gc/late')
  const lateImage = late.images[0]
  if (!lateImage) throw new Error('no image')
  await pullAndCheck(t, gateway, 'gc/late:v1', lateImage, 'the push refused during GC, retried after')
})

t.test('a whole repository is deleted through the admin API and its blobs freed by the GC it starts', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const one = await buildLayout(join(work, 'repo-one'), 'v1', [{ layers: [400 * 1024] }])
  const two = await buildLayout(join(work, 'repo-two'), 'v2', [{ layers: [500 * 1024] }])
  const other = await buildLayout(join(work, 'repo-other'), 'v1', [{ layers: [100 * 1024] }])
  await push(gateway, one, 'gc/whole')
  await push(gateway, two, 'gc/whole')
  await push(gateway, other, 'gc/other')
  const unknown = await admin(gateway, 'POST', '/admin/api/repositories/delete', { repository: 'gc/nothing-here' })
  t.equal(unknown.status, 404, 'an unknown repository is a 404')
  const bad = await admin(gateway, 'POST', '/admin/api/repositories/delete', { repository: 'Not/Valid' })
  t.equal(bad.status, 400)
  t.equal(bad.json.code, 'ADMIN_BAD_REQUEST')
  const deleted = await admin(gateway, 'POST', '/admin/api/repositories/delete', { repository: 'gc/whole', gc: true })
  t.equal(deleted.status, 200, JSON.stringify(deleted.json))
  t.same(deleted.json.tags, ['v1', 'v2'])
  t.same(deleted.json.manifests, [one.digest, two.digest].sort())
  const gcRun = deleted.json.gc as { run_id: string }
  const { run: report } = await waitGc(gateway, gcRun.run_id)
  t.equal(report.result, 'success', report.error ?? '')
  for (const digest of [...blobsOf(one), ...blobsOf(two)]) t.notOk(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} freed`)
  for (const digest of blobsOf(other)) t.ok(existsSync(blobFile(gateway, digest)), `other repository's ${digest.slice(0, 19)} kept`)
  const tags = await client.send('GET', '/v2/gc/whole/tags/list')
  t.notOk(tags.status === 200 && ((tags.json() as { tags?: string[] | null }).tags ?? []).length > 0, 'no tags left')
  const busy = await admin(gateway, 'POST', '/admin/api/gc', { dry_run: 'yes' })
  t.equal(busy.status, 400, 'a flag that is not a boolean is refused')
})

t.test('the CLI: portier repo delete and portier gc through the admin API, plain progress lines when not on a terminal', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const layout = await buildLayout(join(work, 'cli'), 'v1', [{ layers: [700 * 1024] }])
  await push(gateway, layout, 'gc/cli')
  const adminUrl = String(gateway.adminUrl)
  const cli = (args: string[]) => run(process.execPath, [CLI, ...args, '--admin-url', adminUrl], { env: { ...process.env, ...env, PORTIER_CONFIG: '' }, timeoutMs: 120_000 })

  const unconfirmed = await cli(['gc'])
  t.equal(unconfirmed.code, 64, 'a real run without --yes and without a terminal is a usage error')
  t.match(unconfirmed.stderr, /--yes/)

  const deleted = await cli(['repo', 'delete', 'gc/cli', '--yes'])
  t.equal(deleted.code, 0, deleted.stderr)
  t.match(deleted.stdout, /deleted gc\/cli: 1 manifest\(s\), tags v1/)
  t.match(deleted.stdout, /portier gc/, 'with a hint to collect')

  const collected = await cli(['gc', '--yes'])
  t.equal(collected.code, 0, collected.stderr)
  for (const phase of ['maintenance', 'draining', 'collecting', 'leaving']) t.match(collected.stderr, new RegExp(`^${phase}: `, 'm'), `a plain "${phase}:" line`)
  t.match(collected.stdout, /^freed \d+\.\d MiB \(storage .* → .*\); deleted 3 blob\(s\) and 0 manifest\(s\)/m, collected.stdout)
  for (const digest of blobsOf(layout)) t.notOk(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} freed`)

  const dry = await cli(['gc', '--dry-run', '--json'])
  t.equal(dry.code, 0, dry.stderr)
  const report = JSON.parse(dry.stdout) as GcRunReport
  t.equal(report.dryRun, true)
  t.equal(report.blobsEligible, 0, 'nothing left to collect')
})

t.test('the web UI: an administrator deletes a whole repository (same origin + CSRF) and starts a GC; the status panel lists the run with the bytes freed', async (t) => {
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')) })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const layout = await buildLayout(join(work, 'ui'), 'v1', [{ layers: [900 * 1024] }])
  await push(gateway, layout, 'gc/ui')
  const session = await client.send('GET', '/ui/api/session', { headers: { accept: 'application/json' } })
  t.equal(session.status, 200)
  const cookie = String(session.headers['set-cookie']?.[0] ?? '').split(';')[0] ?? ''
  const { csrfToken, admin: isAdmin } = session.json() as { csrfToken: string; admin: boolean }
  t.equal(isAdmin, true, 'open access: the anonymous session is an administrator')
  const path = '/ui/api/repository?repository=gc%2Fui&gc=1'
  const noToken = await client.send('DELETE', path, { headers: { cookie, origin: gateway.url } })
  t.equal(noToken.status, 403, 'without the CSRF token: refused')
  for (const digest of blobsOf(layout)) t.ok(existsSync(blobFile(gateway, digest)), 'nothing deleted by the refused call')
  const deleted = await client.send('DELETE', path, { headers: { cookie, origin: gateway.url, 'x-csrf-token': csrfToken } })
  t.equal(deleted.status, 200, deleted.body.toString())
  const result = deleted.json() as { tags: string[]; manifests: string[]; gcRun?: string }
  t.same(result.tags, ['v1'])
  t.same(result.manifests, [layout.digest])
  t.type(result.gcRun, 'string', 'a garbage collection was started')
  const { run: report } = await waitGc(gateway, String(result.gcRun))
  t.equal(report.result, 'success', report.error ?? '')
  for (const digest of blobsOf(layout)) t.notOk(existsSync(blobFile(gateway, digest)), `${digest.slice(0, 19)} freed`)
  const status = await client.send('GET', '/ui/api/status', { headers: { cookie } })
  t.equal(status.status, 200)
  const gcStatus = (status.json() as { gc?: { history: Array<{ id: string; bytesFreed: number; trigger: string }> } }).gc
  t.equal(gcStatus?.history[0]?.id, report.id, 'the status panel lists the run')
  t.equal(gcStatus?.history[0]?.bytesFreed, report.bytesFreed, 'with the bytes it freed')
  t.equal(gcStatus?.history[0]?.trigger, 'ui')
})

t.test('a registry of your own: gc.registry_config names its config, gc.storage_root where its storage is mounted', async (t) => {
  const { registryFixture } = await import('../helpers/registry.js')
  const { symlinkSync } = await import('node:fs')
  const registry = await registryFixture(t)
  const mounted = join(mkdtempSync(join(work, 'mount-')), 'registry')
  symlinkSync(registry.storageDir, mounted)
  const gateway = await gatewayFixture(t, {
    env,
    cwd: mkdtempSync(join(work, 'gw-')),
    config: { upstreams: [{ url: registry.url }], gc: { registry_config: registry.configFile, storage_root: mounted, binary: REGISTRY_BIN } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const keep = await buildLayout(join(work, 'ext-keep'), 'v1', [{ layers: [300 * 1024] }])
  const drop = await buildLayout(join(work, 'ext-drop'), 'v1', [{ layers: [800 * 1024] }])
  await push(gateway, keep, 'ext/keep')
  await push(gateway, drop, 'ext/drop')
  await deleteManifest(t, client, 'ext/drop', drop.digest)
  const dataOf = (digest: string): string => join(registry.storageDir, 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data')
  const before = await du(registry.storageDir)
  const { run: report } = await gc(gateway, {})
  t.equal(report.result, 'success', report.error ?? '')
  t.ok(before - (await du(registry.storageDir)) >= 800 * 1024, 'du: the deleted layer\'s bytes are gone')
  t.ok(report.bytesFreed >= 800 * 1024, `measured through the mount: ${report.bytesFreed} bytes freed`)
  for (const digest of blobsOf(drop)) t.notOk(existsSync(dataOf(digest)), `${digest.slice(0, 19)} collected`)
  for (const digest of blobsOf(keep)) t.ok(existsSync(dataOf(digest)), `${digest.slice(0, 19)} kept`)
  const image = keep.images[0]
  if (!image) throw new Error('no image')
  await pullAndCheck(t, gateway, 'ext/keep:v1', image, 'the tagged image')
})

t.test('without the registry storage, a GC is refused with what to configure', async (t) => {
  const { registryFixture } = await import('../helpers/registry.js')
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { env, cwd: mkdtempSync(join(work, 'gw-')), config: { upstreams: [{ url: registry.url }] } })
  const refused = await admin(gateway, 'POST', '/admin/api/gc', {})
  t.equal(refused.status, 503)
  t.equal(refused.json.code, 'GC_UNAVAILABLE')
  t.match(String(refused.json.error), /gc\.registry_config/)
  const maintenance = await admin(gateway, 'GET', '/admin/api/maintenance')
  t.equal(maintenance.json.on, false, 'maintenance untouched')
})
