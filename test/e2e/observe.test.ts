// Observability end to end: metrics that match a real push and pull, readiness that follows the upstream, an access log without secrets.
import t from 'tap'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture, startRegistry } from '../helpers/registry.js'
import { gatewayFixture, type LogLine } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { GatewayClient, waitUntil } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const KiB = 1024

/** Sums every sample of a metric whose labels include all of `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) sum += Number(match[3])
  }
  return sum
}

async function scrape(adminUrl: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; contentType: string | null }> {
  const response = await fetch(`${adminUrl}/metrics`, { headers })
  return { status: response.status, text: await response.text(), contentType: response.headers.get('content-type') }
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('metrics count exactly the blob and manifest operations and bytes of a skopeo push and pull; the access log has no secret', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-observe-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const password = 'alice-secret-Pa55word'
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(password, 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url, name: 'main' }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } }, metrics: { per_repository: true } },
  })
  t.ok(gateway.adminUrl, 'the ready line names the admin listener')
  const adminUrl = gateway.adminUrl as string

  const image = await makeOciLayout(join(work, 'src'), { layers: [300 * KiB, 1200 * KiB] })
  const blobSizes = [...image.layerSizes, (await stat(join(image.dir, 'blobs', 'sha256', image.configDigest.slice(7)))).size]
  const blobBytes = blobSizes.reduce((a, b) => a + b, 0)
  const manifestBytes = (await stat(join(image.dir, 'blobs', 'sha256', image.manifestDigest.slice(7)))).size

  const before = await scrape(adminUrl)
  t.equal(before.status, 200, '/metrics answers without auth when none is configured')
  t.match(before.contentType, /^text\/plain; version=0\.0\.4/, 'Prometheus text format')
  t.match(before.text, /# TYPE process_cpu_seconds_total counter/, 'process metrics are there')
  t.equal(metric(before.text, 'portier_blobs_pushed_total'), 0)

  const ref = `docker://${gateway.host}/team/app:v1`
  await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir, destCreds: `alice:${password}` })
  const pushed = (await scrape(adminUrl)).text
  t.equal(metric(pushed, 'portier_blobs_pushed_total'), 3, 'two layers and the config were pushed')
  t.equal(metric(pushed, 'portier_blobs_pushed_total', { repository: 'team/app' }), 3, 'labelled with the repository')
  t.equal(metric(pushed, 'portier_manifests_pushed_total'), 1, 'one manifest pushed')
  const uploadOps = ['upload.start', 'upload.chunk', 'upload.finish', 'upload.monolithic']
  const received = uploadOps.reduce((sum, operation) => sum + metric(pushed, 'portier_received_bytes_total', { operation }), 0)
  // Body bytes only (no headers, no TLS framing): exactly the blobs' sizes.
  t.equal(received, blobBytes, `upload bytes received (${received}) equal the blob sizes (${blobBytes})`)
  t.equal(metric(pushed, 'portier_received_bytes_total', { operation: 'manifest.put' }), manifestBytes, 'manifest bytes received')
  t.equal(metric(pushed, 'portier_repository_received_bytes_total', { repository: 'team/app' }), blobBytes + manifestBytes, 'per-repository bytes')
  t.equal(metric(pushed, 'portier_auth_attempts_total', { mode: 'htpasswd', result: 'no_credentials' }) >= 1, true, 'the first, anonymous request was challenged')
  t.ok(metric(pushed, 'portier_auth_attempts_total', { mode: 'htpasswd', result: 'success' }) >= 4, 'authenticated requests counted')
  t.equal(metric(pushed, 'portier_requests_total', { operation: 'manifest.put', method: 'PUT', status_class: '2xx' }), 1, 'requests by operation, method and status class')
  t.ok(metric(pushed, 'portier_request_duration_seconds_count', { operation: 'manifest.put' }) === 1, 'duration histogram observed')
  t.equal(metric(pushed, 'portier_upstream_up', { upstream: 'main' }), 1, 'upstream is up')
  t.ok(metric(pushed, 'portier_upstream_response_seconds_count', { upstream: 'main' }) >= 5, 'upstream response times observed')
  t.equal(metric(pushed, 'portier_upstream_requests_in_flight', { upstream: 'main' }), 0, 'nothing in flight upstream once done')
  t.equal(metric(pushed, 'portier_requests_in_flight'), 0, 'no registry request in flight (scrapes go to the admin listener)')
  const certExpiry = metric(pushed, 'portier_tls_certificate_expiry_timestamp_seconds', { name: 'localhost' })
  t.ok(certExpiry > Date.now() / 1000, 'certificate expiry exported as a future Unix time')

  await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: `alice:${password}` })
  const back = await readOciLayout(join(work, 'back'), 'latest')
  t.same(back.layerDigests, image.layerDigests, 'pulled the same layers')
  const pulled = (await scrape(adminUrl)).text
  t.equal(metric(pulled, 'portier_blobs_pulled_total'), 3, 'two layers and the config were pulled')
  t.equal(metric(pulled, 'portier_manifests_pulled_total'), 1, 'one manifest GET')
  t.equal(metric(pulled, 'portier_sent_bytes_total', { operation: 'blob.get' }), blobBytes, 'blob bytes sent equal the blob sizes')

  // The access log: one line per request, with what a push means, and never a secret.
  await gateway.logsSettled()
  const lines = gateway.logs.filter((line) => line.msg === 'request')
  const manifestPut = lines.find((line) => line.op === 'manifest.put') as LogLine
  t.ok(manifestPut, 'the manifest push is logged')
  t.match(manifestPut, { user: 'alice', repository: 'team/app', reference: 'v1', digest: image.manifestDigest, status: 201, bytes_in: manifestBytes, client: '127.0.0.1', upstream: 'main' })
  t.match(manifestPut.request_id, /^[0-9a-f-]{36}$/, 'a generated request id')
  const finishes = lines.filter((line) => line.op === 'upload.finish' && line.status === 201)
  t.equal(finishes.length, 3, 'three blob uploads finished')
  const layerLine = finishes.find((line) => line.digest === image.layerDigests[1])
  t.match(layerLine, { user: 'alice', repository: 'team/app', blob_bytes: image.layerSizes[1] }, 'the blob push line carries digest and size')
  const everything = JSON.stringify(gateway.logs) + gateway.stderr()
  t.notOk(everything.includes(password), 'the password is not in the log')
  t.notOk(everything.includes(Buffer.from(`alice:${password}`).toString('base64')), 'the Basic credential is not in the log')
  t.notOk(everything.includes('_state='), 'no upload state in the log')
})

t.test('X-Request-Id is accepted from the client and returned; a bad one is replaced', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const given = await client.send('GET', '/v2/', { headers: { 'x-request-id': 'trace-abc.123' } })
  t.equal(given.status, 200)
  t.equal(given.headers['x-request-id'], 'trace-abc.123', 'the client id comes back')
  const bad = await client.send('GET', '/v2/nope/manifests/latest', { headers: { 'x-request-id': 'has spaces and "quotes"' } })
  t.equal(bad.status, 404)
  t.match(bad.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a generated id replaces an unusable one, also on errors')
  const logged = await gateway.waitForLog((line) => line.request_id === 'trace-abc.123')
  t.match(logged, { op: 'base', status: 200 })
})

t.test('readiness and the upstream gauge follow the upstream down and back up', async (t) => {
  const first = await startRegistry()
  const { port, storageDir } = first
  let current = first
  t.teardown(() => current.stop())
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: first.url, name: 'only' }], health: { interval: '100ms', timeout: '1s', failure_threshold: 2, success_threshold: 1 } },
  })
  const adminUrl = gateway.adminUrl as string
  const ready = async (): Promise<{ status: number; body: { checks: Array<{ name: string; ready: boolean; detail?: unknown }> } }> => {
    const response = await fetch(`${adminUrl}/readyz`)
    return { status: response.status, body: (await response.json()) as { checks: Array<{ name: string; ready: boolean }> } }
  }
  t.ok(await waitUntil(async () => (await ready()).status === 200, 10_000), '/readyz is 200 once the first check passed')
  const healthz = await fetch(`${adminUrl}/healthz`)
  t.equal(healthz.status, 200, '/healthz')

  first.kill('SIGKILL')
  await first.exited()
  t.ok(await waitUntil(async () => (await ready()).status === 503, 10_000), '/readyz turns 503 after the failure threshold')
  const down = await ready()
  const upstreams = down.body.checks.find((check) => check.name === 'upstreams')
  t.match(upstreams, { ready: false, detail: [{ name: 'only', state: 'down' }] }, 'the detail names the upstream that is down')
  t.equal(metric((await scrape(adminUrl)).text, 'portier_upstream_up', { upstream: 'only' }), 0, 'portier_upstream_up is 0')
  t.ok(metric((await scrape(adminUrl)).text, 'portier_upstream_health_checks_total', { upstream: 'only', result: 'failure' }) >= 2, 'failed checks counted')
  await gateway.waitForLog((line) => line.msg === 'upstream marked down' && line.upstream === 'only')

  current = await startRegistry({ port, storageDir })
  t.ok(await waitUntil(async () => (await ready()).status === 200, 10_000), '/readyz is 200 again after the restart')
  t.equal(metric((await scrape(adminUrl)).text, 'portier_upstream_up', { upstream: 'only' }), 1, 'portier_upstream_up is 1 again')
  await gateway.waitForLog((line) => line.msg === 'upstream is back up')
})

t.test('/metrics behind admin.htpasswd refuses anonymous and wrong scrapes; admin.allow refuses other addresses', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-observe-auth-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const users = join(work, 'metrics.htpasswd')
  await writeFile(users, `prometheus:${await hashPassword('scrape-me', 5)}\n`)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], admin: { htpasswd: users, on_main_listener: true } } })
  const adminUrl = gateway.adminUrl as string
  const anonymous = await scrape(adminUrl)
  t.equal(anonymous.status, 401, 'anonymous scrape refused')
  t.notMatch(anonymous.text, /portier_/, 'and shows no metrics')
  t.equal((await scrape(adminUrl, { authorization: basic('prometheus', 'wrong') })).status, 401, 'wrong password refused')
  const allowed = await scrape(adminUrl, { authorization: basic('prometheus', 'scrape-me') })
  t.equal(allowed.status, 200, 'the configured user may scrape')
  t.match(allowed.text, /portier_requests_total/)
  t.not((await fetch(`${adminUrl}/readyz`)).status, 401, '/readyz needs no password')

  // on_main_listener: the same endpoints on the registry port, same protection.
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  t.equal((await client.send('GET', '/metrics')).status, 401, '/metrics on the main listener is protected too')
  t.equal((await client.send('GET', '/metrics', { headers: { authorization: basic('prometheus', 'scrape-me') } })).status, 200)
  t.equal((await client.send('GET', '/healthz')).status, 200, '/healthz on the main listener')

  const restricted = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], admin: { allow: ['10.0.0.0/8'] } } })
  const refused = await scrape(restricted.adminUrl as string)
  t.equal(refused.status, 403, 'an address outside admin.allow is refused')
  t.match(refused.text, /admin\.allow/)
})
