// Blobs from storage (upstreams[].storage, the embedded registry) against a real docker-registry: the registry's bytes and headers, ranges, links per repository, ACLs, deletes mid-stream, fallbacks.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { waitUntil } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { makeOciLayout, readOciLayout, sha256File, ociBlobPath } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { blobDataPath, layerLinkPath } from '../../src/storage/paths.js'

const MiB = 1024 * 1024
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
/** The registry's headers for a blob (blobserver.go and Go's ServeContent). */
const BLOB_HEADERS = ['content-type', 'content-length', 'docker-content-digest', 'etag', 'accept-ranges', 'cache-control', 'docker-distribution-api-version', 'content-range'] as const

/** Pushes one blob straight into the registry (POST, then PUT ?digest= with the bytes). */
async function pushBlob(registry: RegistryHandle, repository: string, data: Buffer): Promise<string> {
  const digest = sha256(data)
  const started = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: new Uint8Array(data), headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`blob push: ${put.status}`)
  return digest
}

/** Requests of the registry's access log for this path and method. */
async function upstreamHits(registry: RegistryHandle, method: string, path: string): Promise<number> {
  return (await registry.log()).split('\n').filter((line) => line.includes(`"${method} ${path} HTTP/1.1"`)).length
}

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `))
  return line === undefined ? 0 : Number(line.split(' ')[1])
}

async function users(entries: Record<string, string>): Promise<string> {
  const lines = await Promise.all(Object.entries(entries).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))
  return lines.join('')
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

function client(gateway: GatewayHandle, t: Test): (method: 'GET' | 'HEAD', base: string, path: string, headers?: Record<string, string>) => Promise<Answer> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  return async (method, base, path, headers = {}) => {
    const response = await request(`${base}${path}`, base.startsWith('https:') ? { dispatcher, method, headers } : { method, headers })
    const body = Buffer.from(await response.body.arrayBuffer())
    return { status: response.statusCode, headers: response.headers, body }
  }
}

t.test('blob GET/HEAD from storage: the registry\'s bytes and headers, ranges, per-repository links, ACLs', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-storage-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, await users({ alice: 'alice-password', admin: 'admin-password' }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir }],
      admin: { listen: '127.0.0.1:0' },
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'admin' }, actions: ['*'] },
          { match: { account: 'alice', name: 'a/*' }, actions: ['pull'] },
        ],
      },
    },
  })
  const call = client(gateway, t)
  const admin = { authorization: basic('admin', 'admin-password') }
  const alice = { authorization: basic('alice', 'alice-password') }

  const data = randomBytes(3 * MiB + 17)
  const digest = await pushBlob(registry, 'a/app', data)
  const path = `/v2/a/app/blobs/${digest}`

  // Whole blob: byte-for-byte and header-for-header what the registry answers, and the registry is not asked.
  const direct = await call('GET', registry.url, path)
  t.equal(direct.status, 200)
  const viaGateway = await call('GET', gateway.url, path, alice)
  t.equal(viaGateway.status, 200, 'GET: 200')
  t.equal(sha256(viaGateway.body), digest, 'the bytes hash to the digest')
  t.ok(viaGateway.body.equals(direct.body), 'the same bytes as the registry sends')
  for (const name of BLOB_HEADERS) t.equal(viaGateway.headers[name], direct.headers[name], `GET ${name} as the registry sends it`)
  t.equal(await upstreamHits(registry, 'GET', path), 1, 'only the direct GET reached the registry')

  const head = await call('HEAD', gateway.url, path, alice)
  const headDirect = await call('HEAD', registry.url, path)
  t.equal(head.status, 200, 'HEAD: 200')
  t.equal(head.body.length, 0, 'HEAD: no body')
  for (const name of BLOB_HEADERS) t.equal(head.headers[name], headDirect.headers[name], `HEAD ${name} as the registry sends it`)
  t.equal(await upstreamHits(registry, 'HEAD', path), 1, 'only the direct HEAD reached the registry')

  // Ranges: 206 with Content-Range and exactly those bytes, as the registry answers.
  for (const range of ['bytes=10-19', 'bytes=0-', 'bytes=-5', `bytes=${data.length - 3}-${data.length + 100}`, 'bytes=1048576-2097151']) {
    const part = await call('GET', gateway.url, path, { ...alice, range })
    const partDirect = await call('GET', registry.url, path, { range })
    t.equal(part.status, 206, `${range}: 206`)
    t.equal(partDirect.status, 206, `${range}: the registry says 206 too`)
    t.ok(part.body.equals(partDirect.body), `${range}: the registry's bytes (${part.body.length})`)
    for (const name of BLOB_HEADERS) t.equal(part.headers[name], partDirect.headers[name], `${range}: ${name} as the registry sends it`)
  }
  t.same((await call('GET', gateway.url, path, { ...alice, range: 'bytes=10-19' })).body, data.subarray(10, 20), 'bytes 10-19 are the blob\'s')
  const headPart = await call('HEAD', gateway.url, path, { ...alice, range: 'bytes=10-19' })
  t.equal(headPart.status, 206, 'HEAD with a range: 206 like the registry')
  t.equal(headPart.headers['content-range'], `bytes 10-19/${data.length}`)
  t.equal(headPart.body.length, 0)

  // Past the end: 416 with `bytes */size` (the registry's own 416 declares the blob's length over a short body; Portier's is framed right).
  const unsatisfiable = await call('GET', gateway.url, path, { ...alice, range: `bytes=${data.length}-` })
  t.equal(unsatisfiable.status, 416, 'a range past the end: 416')
  t.equal(unsatisfiable.headers['content-range'], `bytes */${data.length}`, 'Content-Range: bytes */size as the registry sends it')
  t.equal(unsatisfiable.headers['docker-content-digest'], digest)
  t.equal(unsatisfiable.body.toString(), 'invalid range: failed to overlap\n', 'the registry\'s text')
  t.equal(unsatisfiable.headers['content-length'], String(unsatisfiable.body.length), 'a Content-Length that matches the body')
  t.equal(await upstreamHits(registry, 'GET', path), 1 + 5, 'no gateway GET reached the registry so far (only the direct ones)')

  // Several ranges: the registry's multipart answer, relayed.
  const multi = await call('GET', gateway.url, path, { ...alice, range: 'bytes=0-1,5-6' })
  t.equal(multi.status, 206, 'several ranges: the registry\'s 206')
  t.match(String(multi.headers['content-type']), /^multipart\/byteranges; boundary=/)
  t.equal(await upstreamHits(registry, 'GET', path), 1 + 5 + 1, 'that one went to the registry')

  // Malformed ranges (and bytes=-0): registry 2.8 answers them 416 under the blob's Content-Length with a 14-byte body,
  // which breaks the connection (and counted as an upstream reset); Portier refuses them itself, framed right, for any upstream.
  for (const range of ['bytes=abc', 'bytes=10-5', 'bytes=0-99999999999999999999999', 'items=0-5', 'bytes=-0', 'bytes=5', 'bytes=0-1,x']) {
    const refused = await call('GET', gateway.url, path, { ...alice, range })
    t.equal(refused.status, 416, `${range}: 416`)
    t.equal(refused.headers['content-length'], String(refused.body.length), `${range}: a Content-Length that matches the body`)
    t.match(JSON.parse(refused.body.toString()), { errors: [{ code: 'RANGE_INVALID' }] }, `${range}: the registry's JSON error format`)
  }
  const headRefused = await call('HEAD', gateway.url, path, { ...alice, range: 'bytes=abc' })
  t.equal(headRefused.status, 416, 'HEAD with a malformed range: 416 too')
  t.equal(headRefused.body.length, 0, 'without a body')
  t.equal(await upstreamHits(registry, 'GET', path), 1 + 5 + 1, 'none of them reached the registry')

  // Repository B does not link the blob (it is in the same storage): the registry's 404, never the bytes.
  const other = `/v2/b/app/blobs/${digest}`
  const otherDirect = await call('GET', registry.url, other)
  t.equal(otherDirect.status, 404)
  const otherGateway = await call('GET', gateway.url, other, admin)
  t.equal(otherGateway.status, 404, 'a blob repository B does not link: 404')
  t.same(JSON.parse(otherGateway.body.toString()), JSON.parse(otherDirect.body.toString()), 'the registry\'s own BLOB_UNKNOWN body')
  t.match(otherGateway.body.toString(), /BLOB_UNKNOWN/)
  t.equal((await call('HEAD', gateway.url, other, admin)).status, 404, 'HEAD in repository B: 404')

  // ACLs come first: alice may not read b/*, anonymous callers are challenged, whatever storage holds.
  await pushBlob(registry, 'b/app', data)
  const denied = await call('GET', gateway.url, other, alice)
  t.equal(denied.status, 403, 'a repository alice may not read: 403')
  t.match(denied.body.toString(), /DENIED/)
  t.equal((await call('GET', gateway.url, path)).status, 401, 'no credentials: 401')
  const linked = await call('GET', gateway.url, other, admin)
  t.equal(linked.status, 200, 'once b/app links it: 200 from storage')
  t.equal(sha256(linked.body), digest)

  // A link whose data file is gone (removed by hand, as a GC would): the registry's answer.
  const orphan = randomBytes(1000)
  const orphanDigest = await pushBlob(registry, 'a/app', orphan)
  await rm(blobDataPath(registry.storageDir, orphanDigest) as string)
  const orphanPath = `/v2/a/app/blobs/${orphanDigest}`
  const orphanDirect = await call('GET', registry.url, orphanPath)
  const orphanGateway = await call('GET', gateway.url, orphanPath, alice)
  t.equal(orphanGateway.status, orphanDirect.status, `a link without its data file: the registry's ${orphanDirect.status}`)
  t.same(orphanGateway.body, orphanDirect.body, 'with the registry\'s body')

  // Counted, and the access log names the storage.
  const scraped = await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
  t.ok(metric(scraped, 'portier_blob_storage_reads_total', 'upstream="disk",result="200"') >= 3, 'reads from storage counted')
  t.ok(metric(scraped, 'portier_blob_storage_reads_total', 'upstream="disk",result="416"') === 1, 'the 416 counted')
  t.ok(metric(scraped, 'portier_blob_storage_reads_total', 'upstream="disk",result="no_link"') >= 2, 'fallbacks for a missing link counted')
  t.ok(metric(scraped, 'portier_blob_storage_reads_total', 'upstream="disk",result="range"') === 1, 'the multi-range fallback counted')
  t.ok(metric(scraped, 'portier_blob_storage_bytes_total', 'upstream="disk"') >= 2 * data.length, 'bytes counted')
  await gateway.logsSettled()
  const line = gateway.logs.find((l) => l.op === 'blob.get' && l.repository === 'a/app' && l.status === 200)
  t.equal(line?.upstream, 'storage:disk', 'the access log says the storage served it')
  t.equal(line?.bytes_out, data.length, 'with the bytes sent')
  const fallbackLine = gateway.logs.find((l) => l.op === 'blob.get' && l.repository === 'b/app' && l.status === 404)
  t.equal(fallbackLine?.upstream, 'disk', 'a fallback is logged as the registry\'s answer')
})

t.test('a blob deleted while it is being sent arrives whole', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url, storage: registry.storageDir }] } })
  const data = randomBytes(64 * MiB)
  const digest = await pushBlob(registry, 'a/big', data)
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const dataFile = blobDataPath(registry.storageDir, digest) as string
  const openCopies = async (): Promise<number> => {
    const fds = await readdir(`/proc/${gateway.child.pid as number}/fd`)
    const targets = await Promise.all(fds.map((fd) => readlink(`/proc/${gateway.child.pid as number}/fd/${fd}`).catch(() => '')))
    return targets.filter((target) => target.startsWith(dataFile)).length
  }

  // A client that leaves mid-download: the gateway closes the file and goes on serving.
  const left = await request(`${gateway.url}/v2/a/big/blobs/${digest}`, { dispatcher })
  t.equal(left.statusCode, 200)
  for await (const chunk of left.body) {
    t.ok((chunk as Buffer).length > 0, 'the download started')
    break // leaving the loop destroys the body: the connection closes mid-blob
  }
  t.ok(await waitUntil(async () => (await openCopies()) === 0, 10_000), 'the gateway closed the blob file after the client left')
  t.equal(gateway.child.exitCode, null, 'and it is still running')

  const response = await request(`${gateway.url}/v2/a/big/blobs/${digest}`, { dispatcher })
  t.equal(response.statusCode, 200)
  const hash = createHash('sha256')
  let received = 0
  let deleted = false
  for await (const chunk of response.body) {
    const bytes = chunk as Buffer
    hash.update(bytes)
    received += bytes.length
    if (!deleted) {
      // The gateway's read-ahead is a few MiB at most: most of the 64 MiB is still to be read from the file.
      deleted = true
      t.equal(await openCopies(), 1, 'the gateway holds the blob file open while it sends it')
      await rm(blobDataPath(registry.storageDir, digest) as string)
      await rm(layerLinkPath(registry.storageDir, 'a/big', digest) as string)
      await t.rejects(stat(blobDataPath(registry.storageDir, digest) as string), 'the data file is gone')
    }
  }
  t.ok(deleted, 'deleted mid-stream')
  t.equal(received, data.length, 'every byte arrived')
  t.equal(`sha256:${hash.digest('hex')}`, digest, 'and they hash to the digest')
  const after = await request(`${gateway.url}/v2/a/big/blobs/${digest}`, { dispatcher, method: 'HEAD' })
  await after.body.dump()
  t.equal(after.statusCode, 404, 'afterwards: the registry\'s 404')
  await gateway.logsSettled()
  t.equal(gateway.logs.find((l) => l.op === 'blob.get' && l.repository === 'a/big')?.upstream, `storage:${new URL(registry.url).host}`, 'the GET was served from storage')
})

t.test('skopeo pulls an image whose layers come from storage, and the embedded registry serves its blobs from storage', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-storage-skopeo-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir }] } })
  const image = await makeOciLayout(join(work, 'src'), { layers: [5 * MiB, 1 * MiB] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/pulls/app:latest`, { destCertDir: gateway.certDir })
  await skopeoCopy(`docker://${gateway.host}/pulls/app:latest`, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir })
  const back = await readOciLayout(join(work, 'back'), 'latest')
  t.same(back.layerDigests, image.layerDigests, 'the same layers')
  for (const layer of back.layerDigests) t.equal(await sha256File(ociBlobPath(back.dir, layer)), layer, `${layer.slice(0, 19)}… hashes to its digest`)
  await gateway.logsSettled()
  const fromStorage = gateway.logs.filter((l) => l.op === 'blob.get' && l.repository === 'pulls/app' && l.upstream === 'storage:disk')
  t.ok(fromStorage.length >= image.layerDigests.length, `skopeo's layer GETs came from storage (${fromStorage.length})`)
  for (const layer of image.layerDigests) t.equal(await upstreamHits(registry, 'GET', `/v2/pulls/app/blobs/${layer}`), 0, 'the registry never sent a layer')

  // No upstreams: the embedded registry, whose storage Portier always reads.
  const embedded = await gatewayFixture(t, { config: { embedded_registry: { data_dir: join(work, 'embedded') } } })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${embedded.host}/local/app:latest`, { destCertDir: embedded.certDir })
  await skopeoCopy(`docker://${embedded.host}/local/app:latest`, `oci:${join(work, 'back-embedded')}:latest`, { srcCertDir: embedded.certDir })
  const local = await readOciLayout(join(work, 'back-embedded'), 'latest')
  t.same(local.layerDigests, image.layerDigests, 'the same layers through the embedded registry')
  await embedded.logsSettled()
  t.ok(embedded.logs.some((l) => l.op === 'blob.get' && l.upstream === 'storage:embedded' && l.status === 200), 'the embedded registry\'s blobs came from storage')
})
