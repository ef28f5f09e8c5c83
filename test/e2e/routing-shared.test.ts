// routing.strategy shared: two registries on one storage with one http.secret; an upload session alternates between them, reads fail over.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { GatewayClient, MiB, sha256 } from '../helpers/gwclient.js'

const work = await mkdtemp(join(tmpdir(), 'portier-routing-shared-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const storageDir = join(work, 'storage')
const secret = `shared-${randomBytes(8).toString('hex')}`
const a = await registryFixture(t, { storageDir, secret })
const b = await registryFixture(t, { storageDir, secret })

/** Sums every sample of a metric whose labels include all of `labels`. */
function metric(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)\{(.*)\} (\S+)$/.exec(line)
    if (!match || match[1] !== name) continue
    const found = Object.fromEntries([...(match[2] as string).matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) sum += Number(match[3])
  }
  return sum
}

t.test('one upload session alternates between both registries and completes', async (t) => {
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }],
      routing: { strategy: 'shared', balance: 'round-robin' },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  const data = randomBytes(3 * MiB + 17)
  const started = await client.send('POST', '/v2/shared/alternate/blobs/uploads/', { headers: { 'x-request-id': 'shared-post' } })
  t.equal(started.status, 202, 'upload started')
  const uuid = started.headers['docker-upload-uuid'] as string
  let location = client.pathOf(started.headers.location as string)
  t.notMatch(location, /_portier=/, 'shared storage needs no signed upload URL: the registry\'s own one works everywhere')
  const served = [(await gateway.waitForLog((line) => line.request_id === 'shared-post')).upstream]
  for (let index = 0; index < 3; index++) {
    const piece = data.subarray(index * MiB, index === 2 ? data.length : (index + 1) * MiB)
    const id = `shared-patch-${index}`
    const patched = await client.send('PATCH', location, { headers: { 'content-type': 'application/octet-stream', 'x-request-id': id }, body: piece })
    t.equal(patched.status, 202, `chunk ${index} accepted`)
    location = client.pathOf(patched.headers.location as string)
    served.push((await gateway.waitForLog((line) => line.request_id === id)).upstream)
  }
  const digest = sha256(data)
  const finished = await client.send('PUT', `${location}&digest=${encodeURIComponent(digest)}`, { headers: { 'x-request-id': 'shared-put' } })
  t.equal(finished.status, 201, 'the session completes')
  t.equal(finished.headers['docker-content-digest'], digest)
  served.push((await gateway.waitForLog((line) => line.request_id === 'shared-put')).upstream)
  // Where the turn starts depends on the requests before (the fixture's readiness probe may take one).
  const first = served[0] === 'b' ? 'b' : 'a'
  const second = first === 'a' ? 'b' : 'a'
  t.same(served, [first, second, first, second, first], 'the gateway sent the session\'s requests to a and b in turn')

  // The registries' own access logs prove it: each one handled requests of this upload session.
  const [logA, logB] = await Promise.all([a.log(), b.log()])
  t.match(logA, new RegExp(`"(PATCH|PUT|POST) /v2/shared/alternate/blobs/uploads/${uuid}`), 'registry a served part of the session')
  t.match(logB, new RegExp(`"(PATCH|PUT) /v2/shared/alternate/blobs/uploads/${uuid}`), 'registry b served part of the session')

  for (const registry of [a, b]) {
    const direct = await fetch(`${registry.url}/v2/shared/alternate/blobs/${digest}`)
    const bytes = Buffer.from(await direct.arrayBuffer())
    t.equal(sha256(bytes), digest, `the blob reads back whole from ${registry.url}`)
  }
})

t.test('skopeo push and pull balanced by least requests in flight keep every digest', async (t) => {
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'shared' } },
  })
  const image = await makeOciLayout(join(work, 'image'), { layers: [2 * MiB, 512 * 1024, 64 * 1024] })
  const ref = `docker://${gateway.host}/shared/skopeo:v1`
  await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir })
  await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir })
  const back = await readOciLayout(join(work, 'back'), 'latest')
  t.equal(back.manifestDigest, image.manifestDigest, 'manifest digest')
  t.same(back.layerDigests, image.layerDigests, 'layer digests')
  await gateway.logsSettled()
  const upstreams = new Set(gateway.logs.filter((line) => line.msg === 'request' && line.op !== 'base').map((line) => line.upstream))
  t.same([...upstreams].sort(), ['a', 'b'], 'both registries took part')
})

t.test('a read whose registry was killed between two requests fails over to the other', async (t) => {
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'shared', balance: 'round-robin' } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const data = randomBytes(256 * 1024)
  const digest = sha256(data)
  const started = await client.send('POST', `/v2/shared/failover/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { body: data })
  t.equal(started.status, 201, 'blob pushed')

  const first = await client.send('GET', `/v2/shared/failover/blobs/${digest}`, { headers: { 'x-request-id': 'read-1' } })
  t.equal(first.status, 200)
  t.equal(sha256(first.body), digest)
  const servedFirst = (await gateway.waitForLog((line) => line.request_id === 'read-1')).upstream
  const victim = servedFirst === 'a' ? a : b
  victim.kill('SIGKILL')
  await victim.exited()

  // Round robin: of two reads, one is first sent to the dead registry.
  for (const id of ['read-2', 'read-3']) {
    const again = await client.send('GET', `/v2/shared/failover/blobs/${digest}`, { headers: { 'x-request-id': id } })
    t.equal(again.status, 200, `${id} still succeeds`)
    t.equal(sha256(again.body), digest, `${id} returns the same bytes`)
    t.not((await gateway.waitForLog((line) => line.request_id === id)).upstream, servedFirst, `${id} was answered by the live registry`)
  }
  const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  t.ok(metric(metrics, 'portier_upstream_failovers_total', { upstream: servedFirst as string, reason: 'connect' }) >= 1, 'the failover is counted')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'read failed over to another upstream' && line.from === servedFirst), 'and logged')
})
