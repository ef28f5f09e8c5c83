// routing.strategy mirror: three registries with their own storage; every push reaches all of them, pulls survive one dying, failed pushes leave nothing behind.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout, type OciImage } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { GatewayClient, MiB, sha256, waitUntil } from '../helpers/gwclient.js'

const work = await mkdtemp(join(tmpdir(), 'portier-routing-mirror-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const registries = [await registryFixture(t), await registryFixture(t), await registryFixture(t)]
const [m0, m1, m2] = registries as [RegistryHandle, RegistryHandle, RegistryHandle]
const upstreams = registries.map((registry, index) => ({ url: registry.url, name: `m${index}` }))
const secret = `mirror test secret ${randomBytes(16).toString('hex')}`
const config = (require: 'all' | 'quorum'): Record<string, unknown> => ({ upstreams, routing: { strategy: 'mirror', secret, mirror: { require } } })
const gateway = await gatewayFixture(t, { config: config('all') })
const client = new GatewayClient(gateway)
t.teardown(() => client.close())

async function status(registry: RegistryHandle, path: string, accept?: string): Promise<number> {
  const response = await fetch(`${registry.url}${path}`, { method: 'HEAD', ...(accept ? { headers: { accept } } : {}) })
  return response.status
}

async function imageOn(registry: RegistryHandle, repository: string, image: OciImage): Promise<boolean> {
  const response = await fetch(`${registry.url}/v2/${repository}/manifests/v1`, { method: 'HEAD', headers: { accept: image.manifestMediaType } })
  if (response.status !== 200 || response.headers.get('docker-content-digest') !== image.manifestDigest) return false
  for (const digest of [image.configDigest, ...image.layerDigests]) {
    if ((await status(registry, `/v2/${repository}/blobs/${digest}`)) !== 200) return false
  }
  return true
}

const octets = { 'content-type': 'application/octet-stream' }
const image = await makeOciLayout(join(work, 'image'), { layers: [3 * MiB, 256 * 1024] })

t.test('one skopeo push lands on all three registries', async (t) => {
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/mirror/app:v1`, { destCertDir: gateway.certDir })
  for (const [index, registry] of registries.entries()) {
    t.ok(await imageOn(registry, 'mirror/app', image), `m${index} holds the manifest, config and every layer (checked directly)`)
    t.same(await registry.uploadsOpen('mirror/app'), [], `m${index} has no upload left open`)
  }
  const uploads = new Set(['upload.chunk', 'upload.finish', 'upload.monolithic'])
  const received = gateway.logs
    .filter((line) => line.msg === 'request' && line.repository === 'mirror/app' && uploads.has(String(line.op)))
    .reduce((sum, line) => sum + Number(line.bytes_in), 0)
  t.equal(received, image.layerSizes.reduce((sum, size) => sum + size, 0) + (image.manifest.config.size), 'the client sent each blob once')
})

t.test('a chunked upload started through one instance is finished through another, on every registry', async (t) => {
  const other = await gatewayFixture(t, { config: config('all') })
  const otherClient = new GatewayClient(other)
  t.teardown(() => otherClient.close())
  const data = randomBytes(2 * MiB + 99)
  const digest = sha256(data)
  const started = await client.send('POST', '/v2/mirror/chunks/blobs/uploads/')
  t.equal(started.status, 202)
  let location = client.pathOf(started.headers.location as string)
  t.match(location, /\?_portier=[A-Za-z0-9_-]+$/, 'one signed URL for the three sessions')
  t.ok(location.length < 1000, `compact enough for three sessions (${location.length} characters)`)
  const first = await client.send('PATCH', location, { headers: octets, body: data.subarray(0, MiB) })
  t.equal(first.status, 202)
  t.equal(first.headers.range, `0-${MiB - 1}`)
  location = client.pathOf(first.headers.location as string)
  const state = await otherClient.send('GET', location)
  t.equal(state.status, 204, 'instance B reads the session')
  t.equal(state.headers.range, `0-${MiB - 1}`)
  const finished = await otherClient.send('PUT', `${otherClient.pathOf(state.headers.location as string)}&digest=${encodeURIComponent(digest)}`, {
    headers: octets,
    body: data.subarray(MiB),
    chunked: true,
  })
  t.equal(finished.status, 201, 'instance B finishes it')
  t.equal(finished.headers['portier-mirror-missing'], undefined, 'nothing missing anywhere')
  t.equal((await other.waitForLog((line) => line.op === 'upload.finish' && line.status === 201)).blob_bytes, data.length, 'the access log has the whole blob\'s size')
  for (const [index, registry] of registries.entries()) {
    const bytes = Buffer.from(await (await fetch(`${registry.url}/v2/mirror/chunks/blobs/${digest}`)).arrayBuffer())
    t.equal(sha256(bytes), digest, `m${index} holds the whole blob`)
    t.same(await registry.uploadsOpen('mirror/chunks'), [], `m${index} has no upload open`)
  }

  const again = await client.send('POST', '/v2/mirror/chunks/blobs/uploads/')
  const token = new URL(again.headers.location as string).searchParams.get('_portier') as string
  const tampered = `/v2/mirror/chunks/blobs/uploads/${String(again.headers['docker-upload-uuid'])}?_portier=${token.slice(0, 30)}${token[30] === 'A' ? 'B' : 'A'}${token.slice(31)}`
  const refused = await client.send('PATCH', tampered, { headers: octets, body: Buffer.from('x') })
  t.equal(refused.status, 404, 'a tampered mirror upload URL is refused')
  t.equal(refused.errorCode(), 'BLOB_UPLOAD_UNKNOWN')
  const cancelled = await client.send('DELETE', client.pathOf(again.headers.location as string))
  t.equal(cancelled.status, 204, 'cancelling the real one cancels it everywhere')
  for (const registry of registries) t.same(await registry.uploadsOpen('mirror/chunks'), [])
})

t.test('reads come from the first registry that has the content; deletes and the catalog cover all', async (t) => {
  // Put a blob on m1 only, behind the gateway's back: m0 answers 404, so the read moves on.
  const data = randomBytes(4096)
  const digest = sha256(data)
  const started = await fetch(`${m1.url}/v2/mirror/partial/blobs/uploads/`, { method: 'POST' })
  const put = new URL(started.headers.get('location') as string, m1.url)
  put.searchParams.set('digest', digest)
  t.equal((await fetch(put, { method: 'PUT', body: data })).status, 201)
  const read = await client.send('GET', `/v2/mirror/partial/blobs/${digest}`)
  t.equal(read.status, 200, 'found on the second registry')
  t.equal(sha256(read.body), digest)
  t.equal((await client.send('GET', `/v2/mirror/partial/blobs/sha256:${'0'.repeat(64)}`)).status, 404, 'absent everywhere: 404')

  const catalog = await client.send('GET', '/v2/_catalog')
  t.same((catalog.json() as { repositories: string[] }).repositories, ['mirror/app', 'mirror/chunks', 'mirror/partial'], 'merged and de-duplicated')

  const removed = await client.send('DELETE', `/v2/mirror/app/manifests/${image.manifestDigest}`)
  t.equal(removed.status, 202, 'manifest deleted')
  for (const [index, registry] of registries.entries()) {
    t.equal(await status(registry, `/v2/mirror/app/manifests/${image.manifestDigest}`, image.manifestMediaType), 404, `gone from m${index}`)
  }
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/mirror/app:v1`, { destCertDir: gateway.certDir })
})

t.test('a mirrored upload over the size limit, or abandoned by its client, is cancelled on every registry', async (t) => {
  const limited = await gatewayFixture(t, { config: { ...config('all'), limits: { blob_max_bytes: '1MiB' } } })
  const limitedClient = new GatewayClient(limited)
  t.teardown(() => limitedClient.close())
  const started = await limitedClient.send('POST', '/v2/mirror/limited/blobs/uploads/')
  const over = await limitedClient.send('PATCH', limitedClient.pathOf(started.headers.location as string), {
    headers: octets,
    body: [randomBytes(700 * 1024), randomBytes(700 * 1024)],
    chunked: true,
  })
  t.equal(over.status, 413, 'a streamed chunk crossing blob_max_bytes is refused')
  t.equal(over.errorCode(), 'SIZE_INVALID')
  for (const [index, registry] of registries.entries()) t.same(await registry.uploadsOpen('mirror/limited'), [], `no upload left on m${index}`)

  const abandoned = await limitedClient.send('POST', '/v2/mirror/abandoned/blobs/uploads/')
  const { request } = await import('node:https')
  await new Promise<void>((resolve) => {
    const req = request(limitedClient.options('PATCH', limitedClient.pathOf(abandoned.headers.location as string), { ...octets, 'content-length': 900 * 1024 }))
    req.on('error', () => resolve())
    req.write(randomBytes(300 * 1024), () => setTimeout(() => req.destroy(), 200))
  })
  const closed = await waitUntil(async () => (await Promise.all(registries.map((registry) => registry.uploadsOpen('mirror/abandoned')))).every((open) => open.length === 0), 10_000)
  t.ok(closed, 'the client went away mid-chunk: every registry\'s session is cancelled')
})

t.test('without manifest_max_bytes, a mirrored manifest PUT is still read into memory only up to registry 2.8\'s 4 MiB', async (t) => {
  // The mirror reads a manifest whole to send it to every registry; with the limit off it read any
  // size. Now the reader stops past 4 MiB (what registry 2.8 accepts) and answers itself.
  const unlimited = await gatewayFixture(t, { config: { ...config('all'), limits: { manifest_max_bytes: 0 } } })
  const unlimitedClient = new GatewayClient(unlimited)
  t.teardown(() => unlimitedClient.close())
  const chunk = Buffer.alloc(MiB, 0x20)
  const big = await unlimitedClient.send('PUT', '/v2/mirror/huge/manifests/v1', {
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: [Buffer.from('{"schemaVersion":2,"pad":"'), chunk, chunk, chunk, chunk, chunk, Buffer.from('"}')],
    chunked: true,
  })
  t.equal(big.status, 400)
  t.equal(big.errorCode(), 'MANIFEST_INVALID')
  const detail = (big.json() as { errors?: Array<{ detail?: { max_bytes?: number } }> }).errors?.[0]?.detail
  t.equal(detail?.max_bytes, 4 * MiB, 'refused by the gateway at the 4 MiB cap, not after reading all of it')
  for (const [index, registry] of registries.entries()) t.equal(await status(registry, '/v2/mirror/huge/manifests/v1'), 404, `nothing on m${index}`)
})

t.test('with the first registry killed, pulls still work and every digest matches', async (t) => {
  m0.kill('SIGKILL')
  await m0.exited()
  const back = join(work, 'pulled')
  await skopeoCopy(`docker://${gateway.host}/mirror/app:v1`, `oci:${back}:latest`, { srcCertDir: gateway.certDir })
  const pulled = await readOciLayout(back, 'latest')
  t.equal(pulled.manifestDigest, image.manifestDigest, 'manifest digest')
  t.equal(pulled.configDigest, image.configDigest, 'config digest')
  t.same(pulled.layerDigests, image.layerDigests, 'layer digests')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'read failed over to another upstream' && line.from === 'm0'), 'reads failed over from m0')
})

t.test('require all: a push while one registry is down fails cleanly and leaves no partial blob', async (t) => {
  const fresh = await makeOciLayout(join(work, 'fresh'), { layers: [1 * MiB] })
  const push = await skopeoCopy(`oci:${fresh.dir}:latest`, `docker://${gateway.host}/mirror/refused:v1`, { destCertDir: gateway.certDir, allowFailure: true })
  t.not(push.code, 0, 'skopeo reports the failure')
  t.match(push.stderr, /UNAVAILABLE|503|unavailable/i, 'as the registry error')
  const logged = await gateway.waitForLog((line) => line.error === 'UNAVAILABLE' && line.repository === 'mirror/refused')
  t.equal(logged.status, 503, 'the refused request is in the access log')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'upstream failed its part of a mirrored write' && line.upstream === 'm0'), 'with a line naming the upstream that failed')
  for (const registry of [m1, m2]) {
    t.same(await registry.uploadsOpen('mirror/refused'), [], `no upload left open on ${registry.url}`)
    for (const digest of fresh.layerDigests) t.equal(await status(registry, `/v2/mirror/refused/blobs/${digest}`), 404, 'no blob stored')
  }

  const direct = await client.send('POST', '/v2/mirror/refused/blobs/uploads/')
  t.equal(direct.status, 503, 'the start of an upload is answered 503')
  t.ok(Number(direct.headers['retry-after']) > 0, 'with Retry-After')
  const detail = (direct.json() as { errors: Array<{ code: string; detail: { mirror: { needed: number; failed: Array<{ upstream: string }> } } }> }).errors[0]
  t.equal(detail?.code, 'UNAVAILABLE')
  t.equal(detail?.detail.mirror.needed, 3)
  t.same(detail?.detail.mirror.failed.map((entry) => entry.upstream), ['m0'], 'naming the upstream that failed')

  // A fresh instance has not marked m0 down yet: it starts sessions everywhere, m0 refuses the
  // connection, and the sessions the others opened are cancelled.
  const unaware = await gatewayFixture(t, { config: config('all') })
  const unawareClient = new GatewayClient(unaware)
  t.teardown(() => unawareClient.close())
  const data = randomBytes(300 * 1024)
  const digest = sha256(data)
  const monolithic = await unawareClient.send('POST', `/v2/mirror/refused/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { headers: octets, body: data })
  t.equal(monolithic.status, 503, 'a monolithic push is refused')
  const failed = (monolithic.json() as { errors: Array<{ detail: { mirror: { succeeded: string[]; failed: Array<{ upstream: string; reason: string }> } } }> }).errors[0]?.detail.mirror
  // Depending on whether a health check saw m0 die first: refused before anything starts, or m0's
  // connection refused while the others had started (and are cancelled below).
  const reason = failed?.failed[0]?.reason
  t.match(failed?.failed, [{ upstream: 'm0', reason: /^(ECONNREFUSED|marked down by health checks)$/ }], `m0 could not be reached (${reason})`)
  t.same(failed?.succeeded.sort(), reason === 'ECONNREFUSED' ? ['m1', 'm2'] : [], 'the others had started only if m0 was tried')
  for (const registry of [m1, m2]) {
    t.same(await registry.uploadsOpen('mirror/refused'), [], `their sessions were cancelled (${registry.url})`)
    t.equal(await status(registry, `/v2/mirror/refused/blobs/${digest}`), 404, 'and hold no blob')
  }
})

t.test('require quorum: a push while one registry is down succeeds on the majority and says which one misses it', async (t) => {
  const quorum = await gatewayFixture(t, { config: config('quorum') })
  const quorumClient = new GatewayClient(quorum)
  t.teardown(() => quorumClient.close())
  const data = randomBytes(512 * 1024)
  const digest = sha256(data)
  const pushed = await quorumClient.send('POST', `/v2/mirror/quorum/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { headers: octets, body: data })
  t.equal(pushed.status, 201, 'a monolithic push succeeds with two of three')
  t.equal(pushed.headers['portier-mirror-missing'], 'm0', 'the response names the registry that does not have it')
  for (const registry of [m1, m2]) {
    const bytes = Buffer.from(await (await fetch(`${registry.url}/v2/mirror/quorum/blobs/${digest}`)).arrayBuffer())
    t.equal(sha256(bytes), digest, `${registry.url} holds it`)
  }

  // One more registry dies in the middle of an upload: one of three is no majority, so the push fails and is cancelled.
  const started = await quorumClient.send('POST', '/v2/mirror/quorum/blobs/uploads/')
  t.equal(started.status, 202)
  m2.kill('SIGKILL')
  await m2.exited()
  const chunk = await quorumClient.send('PATCH', quorumClient.pathOf(started.headers.location as string), { headers: octets, body: randomBytes(256 * 1024) })
  t.equal(chunk.status, 503, 'the chunk fails')
  t.same(((chunk.json() as { errors: Array<{ detail: { mirror: { failed: Array<{ upstream: string }> } } }> }).errors[0]?.detail.mirror.failed ?? []).map((entry) => entry.upstream), ['m2'])
  t.same(await m1.uploadsOpen('mirror/quorum'), [], 'the surviving session was cancelled')
  await quorum.logsSettled()
  t.ok(quorum.logs.some((line) => line.msg === 'upstream failed its part of a mirrored write' && line.upstream === 'm2'), 'the failed upstream is logged')
})
