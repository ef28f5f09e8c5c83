// Uploads into storage (upstreams[].storage_uploads): Portier holds blob upload sessions itself and writes them into a real docker-registry 2.8.2's filesystem storage as distribution lays it out; the registry, skopeo and podman read what it wrote.
import t, { type Test } from 'tap'
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { request as httpsRequest } from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, startGateway, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { GatewayClient, MiB, sha256, sleep, waitUntil, type Reply, type Streamed } from '../helpers/gwclient.js'
import { startReceiver, type ReceivedEvent } from '../helpers/receiver.js'
import { makeOciLayout, ociBlobPath, readOciLayout, sha256File } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { buildLayout } from '../helpers/oci-build.js'
import { run } from '../helpers/exec.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { blobDataPath, layerLinkPath } from '../../src/storage/paths.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/
const OCTETS = { 'content-type': 'application/octet-stream' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** One registry, and Portier in front of it holding the upload sessions in its storage (a 1 MiB limit on lim/*, events to a receiver). */
const registry = await registryFixture(t)
const receiver = await startReceiver()
t.teardown(() => receiver.close())
const gateway = await gatewayFixture(t, {
  config: {
    upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir, storage_uploads: true }],
    limits: { repositories: [{ match: 'lim/*', blob_max_bytes: '1MiB' }] },
    events: { endpoints: [{ name: 'listener', url: receiver.url, timeout: '2s', threshold: 2, backoff: '100ms', max_backoff: '500ms' }] },
  },
})
const client = new GatewayClient(gateway)
t.teardown(() => client.close())

function repositoryDir(root: string, repository: string): string {
  return join(root, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'))
}

function uploadDir(root: string, repository: string, uuid: string): string {
  return join(repositoryDir(root, repository), '_uploads', uuid)
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

/** Size of a session's data file, -1 when it is missing. */
async function dataSize(root: string, repository: string, uuid: string): Promise<number> {
  return (await stat(join(uploadDir(root, repository, uuid), 'data')).catch(() => ({ size: -1 }))).size
}

/** The entries of a directory, [] when it does not exist. */
async function entries(path: string): Promise<string[]> {
  try {
    return (await readdir(path)).sort()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

/** Requests the registry's access log shows for `method` on paths starting with `prefix` (query included). */
async function registryHits(one: RegistryHandle, method: string, prefix: string): Promise<number> {
  return (await one.log()).split('\n').filter((line) => line.includes(`"${method} ${prefix}`)).length
}

/** Sum of a metric's samples whose labels include `labels` (label order does not matter). */
function metric(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line)
    if (match === null || match[1] !== name) continue
    const found = new Map([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((pair) => [pair[1], pair[2]]))
    if (Object.entries(labels).every(([key, value]) => found.get(key) === value)) sum += Number(match[3])
  }
  return sum
}

async function scrape(one: GatewayHandle): Promise<string> {
  return await (await fetch(`${one.adminUrl as string}/metrics`)).text()
}

/** `<location>&digest=<d>` (or `?digest=` when the location has no query), as a path on the gateway. */
function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`
}

/** Access-log lines of upload operations (POST/PATCH/GET/PUT/DELETE on blobs/uploads) for a repository. */
function uploadLines(one: GatewayHandle, repository: string): LogLine[] {
  return one.logs.filter((line) => line.repository === repository && typeof line.op === 'string' && line.op.startsWith('upload.'))
}

/** The files of a session Portier holds: data, startedat (RFC 3339, now) and its `portier` marker. */
async function expectPortierSession(t: Test, root: string, repository: string, uuid: string, size: number): Promise<void> {
  const dir = uploadDir(root, repository, uuid)
  const files = await entries(dir)
  t.ok(files.includes('data'), `${repository}: _uploads/<uuid>/data exists`)
  t.ok(files.includes('startedat'), `${repository}: _uploads/<uuid>/startedat exists`)
  t.ok(files.includes('portier'), `${repository}: the marker file 'portier' says Portier holds the session, not the registry`)
  if (files.includes('data')) t.equal((await stat(join(dir, 'data'))).size, size, `${repository}: data holds the ${size} bytes stored so far`)
  if (files.includes('startedat')) {
    const startedAt = (await readFile(join(dir, 'startedat'), 'utf8')).trim()
    t.match(startedAt, RFC3339, 'startedat is an RFC 3339 time')
    t.ok(Math.abs(Date.parse(startedAt) - Date.now()) < 5 * 60_000, `startedat is about now (${startedAt})`)
  }
}

/** After a commit: the blob's data file with the bytes, the repository's link, the session directory gone. */
async function expectCommitted(t: Test, root: string, repository: string, uuid: string | undefined, blob: Buffer): Promise<void> {
  const digest = sha256(blob)
  const data = await readFile(blobDataPath(root, digest) as string).catch(() => Buffer.alloc(0))
  t.equal(data.length, blob.length, `${repository}: blobs/sha256/<2>/<hex>/data holds ${blob.length} bytes`)
  t.ok(data.equals(blob), `${repository}: exactly the uploaded bytes`)
  t.equal(await readFile(layerLinkPath(root, repository, digest) as string, 'utf8').catch(() => ''), digest, `${repository}: _layers/sha256/<hex>/link holds the digest`)
  if (uuid !== undefined) t.notOk(await exists(uploadDir(root, repository, uuid)), `${repository}: the session directory _uploads/<uuid> is gone`)
}

function expectError(t: Test, reply: Reply, status: number, code: string, what: string): void {
  t.equal(reply.status, status, `${what}: ${status}`)
  t.equal(reply.errorCode(), code, `${what}: ${code} in the registry's JSON error format`)
  t.match(String(reply.headers['content-type']), /^application\/json/, `${what}: a JSON body`)
}

/** POST /v2/<name>/blobs/uploads/ through the gateway; answers the session's path (with query) and uuid. */
async function start(t: Test, repository: string, via = client, headers: Record<string, string> = {}): Promise<{ location: string; uuid: string }> {
  const started = await via.send('POST', `/v2/${repository}/blobs/uploads/`, { headers })
  t.equal(started.status, 202, `${repository}: POST starts a session`)
  return { location: via.pathOf(started.headers.location as string), uuid: started.headers['docker-upload-uuid'] as string }
}

t.test('a chunked upload: POST, PATCHes, status, PUT answer as the registry does, and the files are the ones distribution 2.8 writes', async (t) => {
  const repository = 'st/chunked'
  const root = registry.storageDir
  const blob = randomBytes(700_000)
  const digest = sha256(blob)

  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  t.equal(started.status, 202, 'POST: 202')
  const uuid = started.headers['docker-upload-uuid'] as string
  t.match(uuid, UUID, 'Docker-Upload-UUID is a uuid')
  const location = started.headers.location as string
  t.ok(location.startsWith(`${gateway.url}/`), `Location is absolute at Portier's origin (${location})`)
  t.equal(new URL(location).pathname, `/v2/${repository}/blobs/uploads/${uuid}`, 'Location names the session')
  t.equal(started.headers.range, '0-0', 'Range: 0-0')
  t.equal(started.headers['content-length'], '0', 'Content-Length: 0')
  t.equal(started.headers['docker-distribution-api-version'], 'registry/2.0', 'Docker-Distribution-Api-Version')
  t.equal(started.body.length, 0, 'no body')
  await expectPortierSession(t, root, repository, uuid, 0)

  const empty = await client.send('GET', client.pathOf(location))
  t.equal(empty.status, 204, 'GET status of an empty session: 204')
  t.equal(empty.headers.range, '0-0', 'Range: 0-0 when empty')
  t.equal(empty.headers['docker-upload-uuid'], uuid, 'Docker-Upload-UUID')
  t.ok(typeof empty.headers.location === 'string' && client.pathOf(empty.headers.location).startsWith(`/v2/${repository}/blobs/uploads/${uuid}`), 'Location of the session')

  // First chunk with Content-Range and Content-Type.
  const first = await client.send('PATCH', client.pathOf(location), { body: blob.subarray(0, 250_000), headers: { ...OCTETS, 'content-range': '0-249999' } })
  t.equal(first.status, 202, 'PATCH 1: 202')
  t.equal(first.headers.range, '0-249999', 'PATCH 1: Range covers the chunk')
  t.equal(first.headers['docker-upload-uuid'], uuid, 'PATCH 1: Docker-Upload-UUID')
  t.equal(first.headers['content-length'], '0', 'PATCH 1: Content-Length: 0')
  const afterFirst = client.pathOf(first.headers.location as string)
  t.ok(afterFirst.startsWith(`/v2/${repository}/blobs/uploads/${uuid}`), 'PATCH 1: a new Location on the same session')
  await expectPortierSession(t, root, repository, uuid, 250_000)

  // Second chunk streamed without Content-Range or Content-Length (Transfer-Encoding: chunked), in several writes.
  const secondChunk = blob.subarray(250_000, 600_000)
  const second = await client.send('PATCH', afterFirst, { body: [secondChunk.subarray(0, 100_000), secondChunk.subarray(100_000, 200_000), secondChunk.subarray(200_000)], chunked: true, headers: OCTETS })
  t.equal(second.status, 202, 'PATCH 2 (chunked, no Content-Range): 202')
  t.equal(second.headers.range, '0-599999', 'PATCH 2: Range covers both chunks')
  const afterSecond = client.pathOf(second.headers.location as string)
  t.equal(await dataSize(root, repository, uuid), 600_000, 'data holds 600000 bytes')

  // A chunk that does not start at the stored size: 416, and the session keeps what it has.
  const wrongStart = await client.send('PATCH', afterSecond, { body: blob.subarray(100, 200), headers: { ...OCTETS, 'content-range': '100-199' } })
  expectError(t, wrongStart, 416, 'RANGE_INVALID', 'a Content-Range starting at 100 of 600000 stored')
  t.equal(wrongStart.headers.range, '0-599999', 'the 416 says what the session holds')

  const status = await client.send('GET', afterSecond)
  t.equal(status.status, 204, 'GET status: 204')
  t.equal(status.headers.range, '0-599999', 'GET status: Range')
  t.equal(status.headers['docker-upload-uuid'], uuid)
  t.equal(await dataSize(root, repository, uuid), 600_000, 'data still holds 600000 bytes')

  // PUT ?digest= with the last bytes as its body.
  const finished = await client.send('PUT', withDigest(client.pathOf(status.headers.location as string), digest), { body: blob.subarray(600_000), headers: OCTETS })
  t.equal(finished.status, 201, 'PUT ?digest= with the final chunk: 201')
  t.equal(finished.headers.location, `${gateway.url}/v2/${repository}/blobs/${digest}`, 'Location: the blob at Portier\'s origin')
  t.equal(finished.headers['docker-content-digest'], digest, 'Docker-Content-Digest')
  t.equal(finished.headers['content-length'], '0', 'Content-Length: 0')
  await expectCommitted(t, root, repository, uuid, blob)
  t.same(await entries(join(repositoryDir(root, repository), '_uploads')), [], '_uploads is empty')

  const gone = await client.send('GET', afterSecond)
  expectError(t, gone, 404, 'BLOB_UPLOAD_UNKNOWN', 'GET on the committed session')

  // The registry itself serves what Portier wrote; Portier serves it too.
  const direct = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`)
  t.equal(direct.status, 200, 'the registry (asked directly) has the blob')
  t.ok(Buffer.from(await direct.arrayBuffer()).equals(blob), 'with the same bytes')
  const back = await client.send('GET', `/v2/${repository}/blobs/${digest}`)
  t.equal(back.status, 200)
  t.ok(back.body.equals(blob), 'Portier serves the same bytes')

  // Not relayed: the registry never saw a request of this session, and the access log names the storage.
  for (const method of ['POST', 'PATCH', 'PUT', 'GET']) t.equal(await registryHits(registry, method, `/v2/${repository}/blobs/uploads/`), 0, `the registry saw no ${method} on blobs/uploads/`)
  await gateway.logsSettled()
  const lines = uploadLines(gateway, repository)
  t.same([...new Set(lines.map((line) => line.op))].sort(), ['upload.chunk', 'upload.finish', 'upload.start', 'upload.status'], 'the session\'s operations are logged')
  for (const line of lines.filter((one) => Number(one.status) < 300)) t.equal(line.upstream, 'storage:disk', `${String(line.method)} ${String(line.status)}: upstream storage:disk`)
  // The errors Portier answers for its own sessions (the registry never saw them) are not the registry's either.
  const errors = lines.filter((one) => Number(one.status) >= 400)
  t.same(errors.map((one) => one.status).sort(), [404, 416], 'the 416 and the 404 are logged')
  for (const line of errors) t.equal(line.upstream, 'storage:disk', `${String(line.method)} ${String(line.status)} (Portier's own answer): upstream storage:disk, not the registry's name`)
})

t.test('monolithic and one-PUT uploads, a wrong digest, a mismatched Content-Range, DELETE and unknown sessions', async (t) => {
  const root = registry.storageDir
  const before = await scrape(gateway)

  // POST ?digest= with the body.
  const mono = randomBytes(200_000)
  const monoDigest = sha256(mono)
  const posted = await client.send('POST', `/v2/st/mono/blobs/uploads/?digest=${monoDigest}`, { body: mono, headers: OCTETS })
  t.equal(posted.status, 201, 'monolithic POST ?digest=: 201')
  t.equal(posted.headers.location, `${gateway.url}/v2/st/mono/blobs/${monoDigest}`, 'Location: the blob')
  t.equal(posted.headers['docker-content-digest'], monoDigest, 'Docker-Content-Digest')
  t.equal(posted.headers['content-length'], '0', 'Content-Length: 0')
  await expectCommitted(t, root, 'st/mono', undefined, mono)
  t.same(await entries(join(repositoryDir(root, 'st/mono'), '_uploads')), [], 'no session left behind')
  t.equal(await registryHits(registry, 'POST', '/v2/st/mono/blobs/uploads/'), 0, 'the registry never saw the monolithic POST')

  // POST, then one PUT ?digest= carrying every byte (what docker does for small blobs).
  const whole = randomBytes(50_000)
  const onePut = await start(t, 'st/oneput')
  await expectPortierSession(t, root, 'st/oneput', onePut.uuid, 0)
  const put = await client.send('PUT', withDigest(onePut.location, sha256(whole)), { body: whole, headers: OCTETS })
  t.equal(put.status, 201, 'PUT ?digest= with the whole blob: 201')
  t.equal(put.headers['docker-content-digest'], sha256(whole))
  await expectCommitted(t, root, 'st/oneput', onePut.uuid, whole)

  // PUT with a digest the bytes do not have: 400 DIGEST_INVALID, and the session is gone (as registry 2.8 does).
  const wrong = await start(t, 'st/wrong')
  const bytes = randomBytes(10_000)
  const patched = await client.send('PATCH', wrong.location, { body: bytes, headers: OCTETS })
  t.equal(patched.status, 202)
  const claimed = sha256(randomBytes(16))
  const refused = await client.send('PUT', withDigest(client.pathOf(patched.headers.location as string), claimed), { headers: { 'content-length': '0' } })
  expectError(t, refused, 400, 'DIGEST_INVALID', 'PUT with the wrong digest')
  expectError(t, await client.send('GET', wrong.location), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET after the wrong digest')
  t.notOk(await exists(uploadDir(root, 'st/wrong', wrong.uuid)), 'the session directory is removed')
  t.notOk(await exists(blobDataPath(root, claimed) as string), 'nothing stored under the claimed digest')
  t.notOk(await exists(layerLinkPath(root, 'st/wrong', sha256(bytes)) as string), 'nor linked under the bytes\' digest')

  // Content-Range that does not match Content-Length: 400 SIZE_INVALID.
  const mismatched = await start(t, 'st/mismatch')
  const sized = await client.send('PATCH', mismatched.location, { body: randomBytes(50), headers: { ...OCTETS, 'content-range': '0-99' } })
  expectError(t, sized, 400, 'SIZE_INVALID', 'Content-Range 0-99 over 50 bytes')
  t.equal(Math.max(0, await dataSize(root, 'st/mismatch', mismatched.uuid)), 0, 'no byte of it stored')

  // DELETE: 204, the directory goes, and the session is unknown afterwards.
  const cancelled = await start(t, 'st/cancel')
  const some = await client.send('PATCH', cancelled.location, { body: randomBytes(30_000), headers: OCTETS })
  t.equal(some.status, 202)
  await expectPortierSession(t, root, 'st/cancel', cancelled.uuid, 30_000)
  const deleted = await client.send('DELETE', client.pathOf(some.headers.location as string))
  t.equal(deleted.status, 204, 'DELETE: 204')
  t.notOk(await exists(uploadDir(root, 'st/cancel', cancelled.uuid)), 'DELETE removes _uploads/<uuid>')
  expectError(t, await client.send('GET', cancelled.location), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET after DELETE')
  expectError(t, await client.send('PATCH', cancelled.location, { body: randomBytes(10), headers: OCTETS }), 404, 'BLOB_UPLOAD_UNKNOWN', 'PATCH after DELETE')
  expectError(t, await client.send('DELETE', cancelled.location), 404, 'BLOB_UPLOAD_UNKNOWN', 'DELETE again')
  t.equal(await registryHits(registry, 'DELETE', '/v2/st/cancel/blobs/uploads/'), 0, 'the registry never saw the DELETE')

  // A uuid no session has.
  const unknown = `/v2/st/cancel/blobs/uploads/${randomUUID()}`
  expectError(t, await client.send('GET', unknown), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET of an unknown uuid')
  expectError(t, await client.send('PATCH', unknown, { body: randomBytes(10), headers: OCTETS }), 404, 'BLOB_UPLOAD_UNKNOWN', 'PATCH of an unknown uuid')
  expectError(t, await client.send('PUT', `${unknown}?digest=${sha256('x')}`, { headers: { 'content-length': '0' } }), 404, 'BLOB_UPLOAD_UNKNOWN', 'PUT of an unknown uuid')
  expectError(t, await client.send('DELETE', unknown), 404, 'BLOB_UPLOAD_UNKNOWN', 'DELETE of an unknown uuid')

  // Names that are not a uuid never reach a path outside the session directories.
  const layers = join(repositoryDir(root, 'st/oneput'), '_layers')
  for (const id of ['..', '%2e%2e', '..%2f..%2f_layers']) {
    for (const method of ['DELETE', 'GET']) {
      const reply = await client.send(method, `/v2/st/oneput/blobs/uploads/${id}`)
      t.ok(reply.status >= 400 && reply.status < 500, `${method} uploads/${id}: a 4xx (${reply.status})`)
    }
  }
  t.ok(await exists(layers), 'st/oneput/_layers is still there')
  await expectCommitted(t, root, 'st/oneput', onePut.uuid, whole)

  const after = await scrape(gateway)
  t.equal(metric(after, 'portier_blob_storage_uploads_total', { upstream: 'disk', result: '201' }) - metric(before, 'portier_blob_storage_uploads_total', { upstream: 'disk', result: '201' }), 2, 'portier_blob_storage_uploads_total{result="201"} counts the two committed blobs')
  t.equal(metric(after, 'portier_blob_storage_upload_bytes_total', { upstream: 'disk' }) - metric(before, 'portier_blob_storage_upload_bytes_total', { upstream: 'disk' }) >= mono.length + whole.length, true, 'portier_blob_storage_upload_bytes_total counts their bytes')
  await gateway.logsSettled()
  for (const repository of ['st/mono', 'st/oneput', 'st/wrong', 'st/cancel']) {
    const lines = uploadLines(gateway, repository).filter((line) => Number(line.status) < 300)
    t.ok(lines.length > 0, `${repository}: logged`)
    t.same([...new Set(lines.map((line) => line.upstream))], ['storage:disk'], `${repository}: every accepted upload request went to storage:disk`)
  }
  const digestInvalid = uploadLines(gateway, 'st/wrong').find((line) => line.status === 400)
  t.equal(digestInvalid?.upstream, 'storage:disk', 'the DIGEST_INVALID Portier answered is logged as storage:disk, not as the registry\'s')
})

t.test('a cross-repository mount still goes to the registry; a blob is served only in repositories that link it', async (t) => {
  const root = registry.storageDir
  const blob = randomBytes(120_000)
  const digest = sha256(blob)
  const source = await start(t, 'iso/src')
  t.equal((await client.send('PUT', withDigest(source.location, digest), { body: blob, headers: OCTETS })).status, 201, 'uploaded into iso/src through Portier')
  await expectCommitted(t, root, 'iso/src', source.uuid, blob)

  const other = await client.send('GET', `/v2/iso/other/blobs/${digest}`)
  expectError(t, other, 404, 'BLOB_UNKNOWN', 'iso/other does not link it')
  t.equal((await client.send('HEAD', `/v2/iso/dst/blobs/${digest}`)).status, 404, 'nor iso/dst (yet)')
  t.equal((await fetch(`${registry.url}/v2/iso/other/blobs/${digest}`, { method: 'HEAD' })).status, 404, 'the registry agrees')

  const mounted = await client.send('POST', `/v2/iso/dst/blobs/uploads/?mount=${digest}&from=iso/src`)
  t.equal(mounted.status, 201, 'mount: 201 (the registry found the blob Portier wrote into iso/src)')
  t.equal(mounted.headers['docker-content-digest'], digest)
  t.equal(mounted.headers.location, `${gateway.url}/v2/iso/dst/blobs/${digest}`)
  t.equal(await readFile(layerLinkPath(root, 'iso/dst', digest) as string, 'utf8').catch(() => ''), digest, 'iso/dst links it now')
  t.equal(await registryHits(registry, 'POST', '/v2/iso/dst/blobs/uploads/?'), 1, 'the mount went to the registry')
  const back = await client.send('GET', `/v2/iso/dst/blobs/${digest}`)
  t.equal(back.status, 200)
  t.ok(back.body.equals(blob), 'iso/dst serves the bytes')
  expectError(t, await client.send('GET', `/v2/iso/other/blobs/${digest}`), 404, 'BLOB_UNKNOWN', 'iso/other still does not')
  await gateway.logsSettled()
  t.equal(gateway.logs.find((line) => line.op === 'upload.mount' && line.repository === 'iso/dst')?.upstream, 'disk', 'the access log names the registry for the mount')
})

/** A raw PATCH/POST/PUT that sends `total` bytes in 256 KiB writes and stops as soon as an answer arrives. */
function stream(method: string, path: string, total: number, headers: Record<string, string | number>): Promise<Streamed> {
  return client.streamUntilAnswered(method, path, total, { ...OCTETS, ...headers }, { pieceBytes: 256 * 1024 })
}

function expect413(t: Test, reply: { status: number; headers: IncomingHttpHeaders; body: Buffer }, what: string): { bytes?: number } | undefined {
  t.equal(reply.status, 413, `${what}: 413`)
  t.match(String(reply.headers['content-type']), /^application\/json/, `${what}: JSON`)
  let error: { code?: string; detail?: { limit?: string; bytes?: number } } | undefined
  try {
    error = (JSON.parse(reply.body.toString('utf8')) as { errors?: Array<{ code?: string; detail?: { limit?: string; bytes?: number } }> }).errors?.[0]
  } catch {
    error = undefined
  }
  t.equal(error?.code, 'SIZE_INVALID', `${what}: SIZE_INVALID`)
  t.equal(error?.detail?.limit, 'blob_max_bytes', `${what}: detail.limit blob_max_bytes`)
  return error?.detail
}

t.test('the blob size limit counts the session\'s stored bytes; a refused session is removed', async (t) => {
  const root = registry.storageDir
  // Two PATCHes of 600 KiB against a 1 MiB limit: the second is refused and the session removed.
  const session = await start(t, 'lim/total')
  const first = await client.send('PATCH', session.location, { body: randomBytes(600 * 1024), headers: OCTETS })
  t.equal(first.status, 202, 'the first 600 KiB fit')
  await expectPortierSession(t, root, 'lim/total', session.uuid, 600 * 1024)
  const second = await client.send('PATCH', client.pathOf(first.headers.location as string), { body: randomBytes(600 * 1024), headers: OCTETS })
  const detail = expect413(t, second, 'the second 600 KiB')
  t.equal(detail?.bytes, 1200 * 1024, 'detail.bytes counts the stored bytes and the incoming ones')
  t.notOk(await exists(uploadDir(root, 'lim/total', session.uuid)), 'the session directory is removed')
  expectError(t, await client.send('GET', session.location), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET of the refused session')

  // A chunked PATCH (no length declared) streaming past the limit.
  const streamed = await start(t, 'lim/streamed')
  const reply = await stream('PATCH', streamed.location, 4 * MiB, { 'transfer-encoding': 'chunked' })
  expect413(t, reply, 'a chunked PATCH streaming 4 MiB')
  t.notOk(await exists(uploadDir(root, 'lim/streamed', streamed.uuid)), 'its session directory is removed')
  expectError(t, await client.send('GET', streamed.location), 404, 'BLOB_UPLOAD_UNKNOWN', 'GET of that session')

  // A monolithic POST over the limit leaves nothing.
  const big = randomBytes(2 * MiB)
  const mono = await client.send('POST', `/v2/lim/mono/blobs/uploads/?digest=${sha256(big)}`, { body: big, headers: OCTETS })
  expect413(t, mono, 'a monolithic 2 MiB POST')
  t.same(await entries(join(repositoryDir(root, 'lim/mono'), '_uploads')), [], 'no session left for it')
  t.notOk(await exists(layerLinkPath(root, 'lim/mono', sha256(big)) as string), 'nothing linked')
  for (const repository of ['lim/total', 'lim/streamed', 'lim/mono']) t.equal(await registryHits(registry, 'PATCH', `/v2/${repository}/`) + await registryHits(registry, 'POST', `/v2/${repository}/`), 0, `${repository}: the registry saw none of it`)
})

t.test('a client that leaves in the middle of a PATCH body: the session keeps its earlier size; the chunk sent again and the PUT succeed', async (t) => {
  const root = registry.storageDir
  const repository = 'st/aborted'
  const head = randomBytes(100_000)
  const chunks = [randomBytes(2 * MiB), randomBytes(MiB + 5)]
  const session = await start(t, repository)
  const first = await client.send('PATCH', session.location, { body: head, headers: OCTETS })
  t.equal(first.status, 202)
  let location = client.pathOf(first.headers.location as string)
  let stored = head.length

  for (const [index, chunk] of chunks.entries()) {
    const framing: Record<string, string | number> = index === 0 ? { 'content-length': chunk.length, 'content-range': `${stored}-${stored + chunk.length - 1}` } : { 'transfer-encoding': 'chunked' }
    const what = index === 0 ? 'a PATCH with Content-Length' : 'a chunked PATCH'
    const logged = gateway.logs.length
    // Half the chunk, then the connection is destroyed.
    await new Promise<void>((resolve, reject) => {
      const req = httpsRequest(client.options('PATCH', location, { ...OCTETS, ...framing }, false))
      req.on('error', () => resolve())
      req.on('response', (res) => {
        res.resume()
        reject(new Error(`${what}: answered ${res.statusCode ?? 0} before the body was complete`))
      })
      req.write(chunk.subarray(0, chunk.length >> 1), () => {
        setTimeout(() => {
          req.destroy()
          resolve()
        }, 300)
      })
    })
    await gateway.waitForLog((line) => gateway.logs.indexOf(line) >= logged && line.repository === repository && line.method === 'PATCH', 15_000)
    const settled = await waitUntil(async () => {
      const status = await client.send('GET', location)
      return status.status === 204 && status.headers.range === `0-${stored - 1}`
    }, 5000)
    t.ok(settled, `${what} left halfway: GET status shows the earlier Range 0-${stored - 1}`)
    t.equal(await dataSize(root, repository, session.uuid), stored, `${what} left halfway: data holds the earlier ${stored} bytes`)
    for (let i = 0; i < 3; i++) {
      await sleep(100)
      const status = await client.send('GET', location)
      t.equal(status.headers.range, `0-${stored - 1}`, `${what}: and it stays so (${i + 1})`)
    }

    const retried = await client.send('PATCH', location, { body: chunk, headers: { ...OCTETS, 'content-range': `${stored}-${stored + chunk.length - 1}` } })
    t.equal(retried.status, 202, `${what}: the chunk sent again is accepted`)
    stored += chunk.length
    t.equal(retried.headers.range, `0-${stored - 1}`, `${what}: Range covers it once`)
    location = client.pathOf(retried.headers.location as string)
  }
  const blob = Buffer.concat([head, ...chunks])
  const finished = await client.send('PUT', withDigest(location, sha256(blob)), { headers: { 'content-length': '0' } })
  t.equal(finished.status, 201, 'PUT ?digest= of the whole: 201')
  t.equal(finished.headers['docker-content-digest'], sha256(blob))
  await expectCommitted(t, root, repository, session.uuid, blob)
})

t.test('two PATCHes at once on one session: one is stored, the other refused, the bytes are never mixed', async (t) => {
  const root = registry.storageDir
  const repository = 'st/concurrent'
  const session = await start(t, repository)
  const chunks = [randomBytes(3 * MiB), randomBytes(3 * MiB)]
  const replies = await Promise.all(chunks.map((chunk) => client.send('PATCH', session.location, { body: [chunk.subarray(0, MiB), chunk.subarray(MiB, 2 * MiB), chunk.subarray(2 * MiB)], chunked: true, headers: OCTETS })))
  const accepted = replies.flatMap((reply, index) => (reply.status === 202 ? [index] : []))
  t.comment(`answers: ${replies.map((reply) => `${reply.status} ${reply.errorCode() ?? ''}`).join(', ')}`)
  if (accepted.length === 2) {
    // Both accepted: only right when one was written after the other (then both are in the session, in some order).
    t.equal(await dataSize(root, repository, session.uuid), 6 * MiB, 'both accepted: the session holds both, one after the other')
    const data = await readFile(join(uploadDir(root, repository, session.uuid), 'data'))
    t.ok(data.equals(Buffer.concat(chunks)) || data.equals(Buffer.concat([chunks[1] as Buffer, chunks[0] as Buffer])), 'whole chunks, not interleaved')
    return
  }
  t.equal(accepted.length, 1, 'one PATCH is accepted')
  const refused = replies.find((reply) => reply.status !== 202)
  t.ok(refused !== undefined && refused.status >= 400 && refused.status < 500 && refused.errorCode() !== undefined, `the other gets a registry error (${refused?.status ?? 0} ${refused?.errorCode() ?? ''})`)
  const winner = chunks[accepted[0] ?? 0] as Buffer
  t.equal(replies[accepted[0] ?? 0]?.headers.range, `0-${3 * MiB - 1}`, 'the accepted one\'s Range')
  t.equal(await dataSize(root, repository, session.uuid), 3 * MiB, 'the session holds one chunk')
  // The first URL now names an older size (416); the accepted PATCH's Location is where the upload continues.
  const stale = await client.send('PUT', withDigest(session.location, sha256(winner)), { headers: { 'content-length': '0' } })
  t.equal(stale.status, 416, 'the first URL is an old one now')
  const next = client.pathOf(replies[accepted[0] ?? 0]?.headers.location as string)
  const finished = await client.send('PUT', withDigest(next, sha256(winner)), { headers: { 'content-length': '0' } })
  t.equal(finished.status, 201, 'the accepted chunk commits under its digest')
  await expectCommitted(t, root, repository, session.uuid, winner)
})

for (const algorithm of ['sha512', 'sha384'] as const) {
  t.test(`a ${algorithm} blob is laid out as registry 2.8 lays it out (data under the canonical sha256, both links naming it)`, async (t) => {
    const root = registry.storageDir
    /** The files registry 2.8 writes for a blob pushed under another digest (blobwriter.go: moveBlob(canonical), linkBlob(canonical, given)). */
    const expected = (repository: string, blob: Buffer) => {
      const given = `${algorithm}:${createHash(algorithm).update(blob).digest('hex')}`
      const canonical = sha256(blob)
      return { given, canonical, files: { data: blobDataPath(root, canonical) as string, link256: layerLinkPath(root, repository, canonical) as string, linkGiven: layerLinkPath(root, repository, given) as string } }
    }
    const check = async (t: Test, who: string, repository: string, blob: Buffer, answer: { status: number; digest: unknown }): Promise<void> => {
      const { given, canonical, files } = expected(repository, blob)
      t.equal(answer.status, 201, `${who}: 201`)
      // Registry 2.8 answers the canonical sha256 digest; Portier answers the digest the client named,
      // which is what clients that check the answer (containerd's pusher) compare it with.
      t.equal(answer.digest, who.startsWith('Portier') ? given : canonical, `${who}: Docker-Content-Digest`)
      t.ok((await readFile(files.data).catch(() => Buffer.alloc(0))).equals(blob), `${who}: the data is at blobs/sha256/<canonical>`)
      t.equal(await readFile(files.link256, 'utf8').catch(() => ''), canonical, `${who}: _layers/sha256/<canonical>/link names the canonical digest`)
      t.equal(await readFile(files.linkGiven, 'utf8').catch(() => ''), canonical, `${who}: _layers/${algorithm}/<hex>/link names the canonical digest`)
      t.notOk(await exists(blobDataPath(root, given) as string), `${who}: no blobs/${algorithm} data`)
      for (const digest of [canonical, given]) {
        const read = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`)
        t.equal(read.status, 200, `${who}: the registry serves it by ${digest.split(':')[0]}`)
        t.equal(read.headers.get('docker-content-digest'), canonical, `${who}: the registry names the canonical digest when asked by ${digest.split(':')[0]}`)
        t.ok(Buffer.from(await read.arrayBuffer()).equals(blob), `${who}: the registry's bytes by ${digest.split(':')[0]}`)
      }
    }
    // The registry itself, to show what it writes.
    const direct = randomBytes(3000)
    const digest = `${algorithm}:${createHash(algorithm).update(direct).digest('hex')}`
    const started = await fetch(`${registry.url}/v2/s${algorithm}/direct/blobs/uploads/`, { method: 'POST' })
    const url = new URL(started.headers.get('location') ?? '', registry.url)
    url.searchParams.set('digest', digest)
    const put = await fetch(url, { method: 'PUT', body: new Uint8Array(direct), headers: OCTETS })
    await check(t, 'registry 2.8.2 alone', `s${algorithm}/direct`, direct, { status: put.status, digest: put.headers.get('docker-content-digest') })

    const blob = randomBytes(3000)
    const given = `${algorithm}:${createHash(algorithm).update(blob).digest('hex')}`
    const posted = await client.send('POST', `/v2/s${algorithm}/portier/blobs/uploads/?digest=${given}`, { body: blob, headers: OCTETS })
    await check(t, 'Portier with storage_uploads', `s${algorithm}/portier`, blob, { status: posted.status, digest: posted.headers['docker-content-digest'] })
    const served = await client.send('GET', `/v2/s${algorithm}/portier/blobs/${given}`)
    t.equal(served.status, 200, `Portier serves it by its ${algorithm} digest`)
    t.ok(served.body.equals(blob), 'the same bytes')
    t.equal(served.headers['docker-content-digest'], sha256(blob), 'the canonical digest, as registry 2.8 answers a GET by another digest')
    t.equal(served.headers.etag, `"${sha256(blob)}"`, 'ETag too')
    await gateway.logsSettled()
    const line = gateway.logs.find((one) => one.op === 'blob.get' && one.repository === `s${algorithm}/portier`)
    t.equal(line?.upstream, 'storage:disk', 'served from storage, following the link to the sha256 data')
  })
}

t.test('with credentials: a user without push gets 401/403 at POST and nothing is written; the sessions of others are out of reach', async (t) => {
  const root = registry.storageDir
  const work = await mkdtemp(join(tmpdir(), 'portier-storage-uploads-auth-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `admin:${await hashPassword('admin-password', 5)}\nalice:${await hashPassword('alice-password', 5)}\n`)
  const secured = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir, storage_uploads: true }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'admin' }, actions: ['*'] },
          { match: { account: 'alice', name: 'auth/*' }, actions: ['pull'] },
        ],
      },
    },
  })
  const via = new GatewayClient(secured)
  t.teardown(() => via.close())
  const admin = { authorization: basic('admin', 'admin-password') }
  const alice = { authorization: basic('alice', 'alice-password') }
  const blob = randomBytes(40_000)

  const anonymous = await via.send('POST', '/v2/auth/app/blobs/uploads/')
  t.equal(anonymous.status, 401, 'no credentials: 401')
  t.match(String(anonymous.headers['www-authenticate']), /^Basic/, 'with a challenge')
  const denied = await via.send('POST', '/v2/auth/app/blobs/uploads/', { headers: alice })
  expectError(t, denied, 403, 'DENIED', 'alice (pull only) starting an upload')
  const deniedMono = await via.send('POST', `/v2/auth/app/blobs/uploads/?digest=${sha256(blob)}`, { headers: { ...alice, ...OCTETS }, body: blob })
  expectError(t, deniedMono, 403, 'DENIED', 'alice (pull only) uploading monolithically')
  t.notOk(await exists(repositoryDir(root, 'auth/app')), 'nothing written for auth/app')
  t.notOk(await exists(blobDataPath(root, sha256(blob)) as string), 'nor the blob')

  // The administrator's session: alice can neither write to it, nor cancel it.
  const session = await start(t, 'auth/app', via, admin)
  await expectPortierSession(t, root, 'auth/app', session.uuid, 0)
  expectError(t, await via.send('PATCH', session.location, { body: blob, headers: { ...alice, ...OCTETS } }), 403, 'DENIED', 'alice PATCHing the administrator\'s session')
  expectError(t, await via.send('DELETE', session.location, { headers: alice }), 403, 'DENIED', 'alice DELETEing it')
  t.equal((await via.send('PATCH', session.location, { body: blob })).status, 401, 'anonymous PATCH: 401')
  await expectPortierSession(t, root, 'auth/app', session.uuid, 0)
  const put = await via.send('PUT', withDigest(session.location, sha256(blob)), { body: blob, headers: { ...admin, ...OCTETS } })
  t.equal(put.status, 201, 'the administrator completes it')
  await expectCommitted(t, root, 'auth/app', session.uuid, blob)
  const read = await via.send('GET', `/v2/auth/app/blobs/${sha256(blob)}`, { headers: alice })
  t.equal(read.status, 200, 'alice may pull it')
  t.ok(read.body.equals(blob))
  await secured.logsSettled()
  const lines = uploadLines(secured, 'auth/app').filter((line) => line.status === 202 || line.status === 201)
  t.ok(lines.length >= 2, 'the accepted requests are logged')
  t.same([...new Set(lines.map((line) => line.upstream))], ['storage:disk'], 'from storage:disk')
})

t.test('skopeo pushes through Portier into storage; skopeo pulls the same image straight from the registry', async (t) => {
  const repository = 'sk/app'
  const work = await mkdtemp(join(tmpdir(), 'portier-storage-uploads-skopeo-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const image = await makeOciLayout(join(work, 'src'), { layers: [9 * MiB + 123, 300_000, MiB] })
  const configSize = (await stat(ociBlobPath(image.dir, image.configDigest))).size
  const before = await scrape(gateway)

  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}:v1`, { destCertDir: gateway.certDir })
  await skopeoCopy(`docker://127.0.0.1:${registry.port}/${repository}:v1`, `oci:${join(work, 'direct')}:v1`, { srcTlsVerify: false })
  const direct = await readOciLayout(join(work, 'direct'), 'v1')
  t.equal(direct.manifestDigest, image.manifestDigest, 'the registry serves the manifest digest that was pushed')
  t.same(direct.layerDigests, image.layerDigests, 'and the same layers')
  for (const [index, layer] of image.layerDigests.entries()) {
    t.equal(await sha256File(ociBlobPath(direct.dir, layer)), layer, `layer ${index} (${image.layerSizes[index]} bytes) read from the registry hashes to its digest`)
    t.ok((await readFile(ociBlobPath(direct.dir, layer))).equals(await readFile(ociBlobPath(image.dir, layer))), `layer ${index}: the same bytes`)
  }
  t.same(await entries(join(repositoryDir(registry.storageDir, repository), '_uploads')), [], 'the repository\'s _uploads directory is empty')
  t.same(await registry.uploadsOpen(repository), [])

  // Not relayed: the registry saw no upload request; the access log and the metrics name the storage.
  for (const method of ['POST', 'PATCH', 'PUT']) t.equal(await registryHits(registry, method, `/v2/${repository}/blobs/uploads/`), 0, `the registry saw no ${method} on blobs/uploads/`)
  await gateway.logsSettled()
  const lines = uploadLines(gateway, repository)
  for (const op of ['upload.start', 'upload.chunk', 'upload.finish']) {
    const ofOp = lines.filter((line) => line.op === op)
    t.ok(ofOp.length >= 1, `skopeo's ${op} requests are logged (${ofOp.length})`)
    t.same([...new Set(ofOp.map((line) => line.upstream))], ['storage:disk'], `${op}: upstream storage:disk`)
  }
  t.equal(lines.filter((line) => line.op === 'upload.finish' && line.status === 201).length, 4, 'four blobs committed (3 layers and the config)')
  const after = await scrape(gateway)
  const committed = metric(after, 'portier_blob_storage_uploads_total', { upstream: 'disk', result: '201' }) - metric(before, 'portier_blob_storage_uploads_total', { upstream: 'disk', result: '201' })
  t.equal(committed, 4, 'portier_blob_storage_uploads_total{upstream="disk",result="201"} grew by 4')
  const bytes = metric(after, 'portier_blob_storage_upload_bytes_total', { upstream: 'disk' }) - metric(before, 'portier_blob_storage_upload_bytes_total', { upstream: 'disk' })
  t.equal(bytes, image.layerSizes.reduce((sum, size) => sum + size, 0) + configSize, 'portier_blob_storage_upload_bytes_total grew by the blobs\' bytes')
})

t.test('podman pushes through Portier into storage and pulls back the same image', async (t) => {
  const version = await run('podman', ['--version']).catch(() => undefined)
  if (version === undefined || version.code !== 0) {
    t.comment('podman is not installed: its push is not tested')
    return
  }
  // Lower case and short: podman's runroot must stay under 50 characters.
  const work = join(tmpdir(), `portier-su-${randomBytes(4).toString('hex')}`)
  await mkdir(work)
  t.teardown(() => rm(work, { recursive: true, force: true }))
  // Real tar layers: podman unpacks them into its storage.
  const layout = await buildLayout(join(work, 'layout'), 'v1', [{ layers: [3 * MiB, 200_000], tar: true }])
  const authFile = join(work, 'auth.json')
  await writeFile(authFile, '{}')
  const base = ['--root', join(work, 'root'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const env = { ...process.env, REGISTRY_AUTH_FILE: authFile }
  const podman = (args: string[]) => run('podman', [...base, ...args], { env, timeoutMs: 120_000 })
  t.teardown(async () => {
    await podman(['rmi', '-a', '-f'])
  })

  const pulled = await podman(['pull', '-q', `oci:${layout.dir}:v1`])
  t.equal(pulled.code, 0, `podman pull oci: (${pulled.stderr.trim()})`)
  const id = pulled.stdout.trim().split('\n').pop() ?? ''
  const digestFile = join(work, 'digest')
  const reference = `${gateway.host}/pm/app:v1`
  const pushed = await podman(['push', '--cert-dir', gateway.certDir, '--digestfile', digestFile, id, `docker://${reference}`])
  t.equal(pushed.code, 0, `podman push through Portier (${pushed.stderr.trim()})`)
  const digest = (await readFile(digestFile, 'utf8').catch(() => '')).trim()
  t.match(digest, /^sha256:[0-9a-f]{64}$/, 'podman reports the pushed digest')
  const direct = await fetch(`${registry.url}/v2/pm/app/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' } })
  t.equal(direct.headers.get('docker-content-digest'), digest, 'the registry holds that manifest under v1')

  const removed = await podman(['rmi', '-a', '-f'])
  t.equal(removed.code, 0, `podman rmi (${removed.stderr.trim()})`)
  const back = await podman(['pull', '--cert-dir', gateway.certDir, reference])
  t.equal(back.code, 0, `podman pull through Portier (${back.stderr.trim()})`)
  const inspected = await podman(['image', 'inspect', '--format', '{{.Digest}}', reference])
  t.equal(inspected.stdout.trim(), digest, 'podman pulled back the digest it pushed')

  await gateway.logsSettled()
  const finishes = uploadLines(gateway, 'pm/app').filter((line) => line.op === 'upload.finish' && line.status === 201)
  t.ok(finishes.length >= 3, `podman's blobs were committed (${finishes.length})`)
  t.same([...new Set(uploadLines(gateway, 'pm/app').map((line) => line.upstream))], ['storage:disk'], 'every upload request of podman\'s went to storage:disk')
  t.equal(await registryHits(registry, 'PATCH', '/v2/pm/app/blobs/uploads/'), 0, 'the registry saw no PATCH')
})

t.test('events: a blob committed from a storage session is a push event with its digest and size, chunked or monolithic', async (t) => {
  const pushes = (): ReceivedEvent[] => receiver.events().filter((event) => event.action === 'push' && String(event.target.repository).startsWith('ev/'))

  const chunked = randomBytes(500_000)
  const session = await start(t, 'ev/chunked')
  let location = session.location
  for (const [from, to] of [[0, 150_000], [150_000, 300_000], [300_000, 500_000]] as const) {
    const reply = await client.send('PATCH', location, { body: chunked.subarray(from, to), headers: { ...OCTETS, 'content-range': `${from}-${to - 1}` } })
    t.equal(reply.status, 202, `PATCH ${from}-${to - 1}`)
    location = client.pathOf(reply.headers.location as string)
  }
  t.equal((await client.send('PUT', withDigest(location, sha256(chunked)), { headers: { 'content-length': '0' } })).status, 201, 'chunked upload (3 PATCHes, empty PUT) committed')

  const mono = randomBytes(80_000)
  t.equal((await client.send('POST', `/v2/ev/mono/blobs/uploads/?digest=${sha256(mono)}`, { body: mono, headers: OCTETS })).status, 201, 'monolithic POST committed')

  const mixed = randomBytes(90_000)
  const mixedSession = await start(t, 'ev/mixed')
  const part = await client.send('PATCH', mixedSession.location, { body: mixed.subarray(0, 60_000), headers: OCTETS })
  t.equal(part.status, 202)
  t.equal((await client.send('PUT', withDigest(client.pathOf(part.headers.location as string), sha256(mixed)), { body: mixed.subarray(60_000), headers: OCTETS })).status, 201, 'PATCH then PUT with the rest committed')

  t.ok(await waitUntil(() => pushes().length >= 3, 15_000), `three push events arrived (${pushes().length})`)
  await sleep(300)
  const expected = [
    { repository: 'ev/chunked', blob: chunked, method: 'PUT' },
    { repository: 'ev/mono', blob: mono, method: 'POST' },
    { repository: 'ev/mixed', blob: mixed, method: 'PUT' },
  ]
  t.equal(pushes().length, 3, 'one push event per blob, no more')
  for (const { repository, blob, method } of expected) {
    const event = pushes().find((one) => one.target.repository === repository)
    const digest = sha256(blob)
    t.same(event?.target, { mediaType: 'application/octet-stream', size: blob.length, digest, length: blob.length, repository, url: `${gateway.url}/v2/${repository}/blobs/${digest}` }, `${repository}: the push event's target (size ${blob.length})`)
    t.equal(event?.request.method, method, `${repository}: request.method ${method}`)
  }
})

t.test('the embedded registry holds its uploads in storage by default', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-storage-uploads-embedded-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const embedded = await gatewayFixture(t, { config: { embedded_registry: { data_dir: join(work, 'embedded') } } })
  const via = new GatewayClient(embedded)
  t.teardown(() => via.close())
  const root = join(work, 'embedded', 'storage')
  const blob = randomBytes(300_000)
  const session = await start(t, 'emb/app', via)
  await expectPortierSession(t, root, 'emb/app', session.uuid, 0)
  const patched = await via.send('PATCH', session.location, { body: blob.subarray(0, 100_000), headers: OCTETS })
  t.equal(patched.status, 202)
  await expectPortierSession(t, root, 'emb/app', session.uuid, 100_000)
  const put = await via.send('PUT', withDigest(via.pathOf(patched.headers.location as string), sha256(blob)), { body: blob.subarray(100_000), headers: OCTETS })
  t.equal(put.status, 201, 'committed')
  await expectCommitted(t, root, 'emb/app', session.uuid, blob)
  const back = await via.send('GET', `/v2/emb/app/blobs/${sha256(blob)}`)
  t.ok(back.body.equals(blob), 'served back')
  await embedded.logsSettled()
  t.same([...new Set(uploadLines(embedded, 'emb/app').map((line) => line.upstream))], ['storage:embedded'], 'upstream storage:embedded')
})

t.test('relayed as before: storage without storage_uploads, and mirror routing', async (t) => {
  // storage alone: reads from storage, uploads go to the registry (no marker, the registry sees them).
  const readsOnly = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir }] } })
  const via = new GatewayClient(readsOnly)
  t.teardown(() => via.close())
  const blob = randomBytes(60_000)
  const session = await start(t, 'rel/plain', via)
  const files = await entries(uploadDir(registry.storageDir, 'rel/plain', session.uuid))
  t.ok(files.includes('startedat'), 'the registry opened the session')
  t.notOk(files.includes('portier'), 'no portier marker: the registry holds it')
  const patched = await via.send('PATCH', session.location, { body: blob, headers: OCTETS })
  t.equal(patched.status, 202)
  t.equal((await via.send('PUT', withDigest(via.pathOf(patched.headers.location as string), sha256(blob)), { headers: { 'content-length': '0' } })).status, 201)
  t.equal(await registryHits(registry, 'PATCH', '/v2/rel/plain/blobs/uploads/'), 1, 'the registry saw the PATCH')
  await readsOnly.logsSettled()
  t.same([...new Set(uploadLines(readsOnly, 'rel/plain').map((line) => line.upstream))], ['disk'], 'the access log names the registry')

  // A registry session (started before storage_uploads was turned on: its URL carries _state) is continued by the registry.
  const older = randomBytes(80_000)
  const before = await start(t, 'rel/older', via)
  t.match(before.location, /_state=/, 'the registry\'s session URL carries _state')
  const continued = await client.send('PATCH', before.location, { body: older.subarray(0, 50_000), headers: OCTETS })
  t.equal(continued.status, 202, 'Portier with storage_uploads continues the registry\'s session: 202')
  t.equal(continued.headers.range, '0-49999')
  const completed = await client.send('PUT', withDigest(client.pathOf(continued.headers.location as string), sha256(older)), { body: older.subarray(50_000), headers: OCTETS })
  t.equal(completed.status, 201, 'and completes it')
  await expectCommitted(t, registry.storageDir, 'rel/older', undefined, older)
  t.equal(await registryHits(registry, 'PUT', '/v2/rel/older/blobs/uploads/'), 1, 'the registry took the PUT')
  await gateway.logsSettled()
  t.same([...new Set(uploadLines(gateway, 'rel/older').map((line) => line.upstream))], ['disk'], 'logged as the registry\'s')

  // mirror: several upstreams written at once keep relaying, even with storage_uploads on each.
  const second = await registryFixture(t)
  const mirrored = await gatewayFixture(t, {
    config: {
      upstreams: [
        { url: registry.url, name: 'first', storage: registry.storageDir, storage_uploads: true },
        { url: second.url, name: 'second', storage: second.storageDir, storage_uploads: true },
      ],
      routing: { strategy: 'mirror', secret: randomBytes(16).toString('hex'), mirror: { require: 'all' } },
    },
  })
  const mirrorClient = new GatewayClient(mirrored)
  t.teardown(() => mirrorClient.close())
  const mirrorBlob = randomBytes(70_000)
  const mirrorSession = await start(t, 'rel/mirror', mirrorClient)
  for (const one of [registry, second]) {
    const sessions = await entries(join(repositoryDir(one.storageDir, 'rel/mirror'), '_uploads'))
    t.equal(sessions.length, 1, 'each mirror holds one session')
    t.notOk((await entries(join(repositoryDir(one.storageDir, 'rel/mirror'), '_uploads', sessions[0] ?? 'none'))).includes('portier'), 'opened by the registry, not Portier')
  }
  const mirrorPatched = await mirrorClient.send('PATCH', mirrorSession.location, { body: mirrorBlob, headers: OCTETS })
  t.equal(mirrorPatched.status, 202)
  t.equal((await mirrorClient.send('PUT', withDigest(mirrorClient.pathOf(mirrorPatched.headers.location as string), sha256(mirrorBlob)), { headers: { 'content-length': '0' } })).status, 201)
  for (const one of [registry, second]) {
    t.equal(await registryHits(one, 'PATCH', '/v2/rel/mirror/blobs/uploads/'), 1, 'each mirror saw the PATCH')
    const read = await fetch(`${one.url}/v2/rel/mirror/blobs/${sha256(mirrorBlob)}`)
    t.ok(Buffer.from(await read.arrayBuffer()).equals(mirrorBlob), 'and holds the blob')
  }
  await mirrored.logsSettled()
  t.notOk(uploadLines(mirrored, 'rel/mirror').some((line) => String(line.upstream).startsWith('storage:')), 'no upload request was answered from storage')
})

t.test('routing by repository: each session goes into the storage of the upstream the repository lives on', async (t) => {
  const second = await registryFixture(t)
  const registries = new Map([['first', registry], ['second', second]])
  const routed = await gatewayFixture(t, {
    config: {
      upstreams: [
        { url: registry.url, name: 'first', storage: registry.storageDir, storage_uploads: true },
        { url: second.url, name: 'second', storage: second.storageDir, storage_uploads: true },
      ],
      routing: { strategy: 'by-repository', secret: randomBytes(16).toString('hex') },
    },
  })
  const via = new GatewayClient(routed)
  t.teardown(() => via.close())
  const placed = new Set<string>()
  for (const repository of ['byrepo/a', 'byrepo/b', 'byrepo/c', 'byrepo/d']) {
    const blob = randomBytes(40_000)
    const session = await start(t, repository, via)
    const found: string[] = []
    for (const [name, one] of registries) if ((await entries(uploadDir(one.storageDir, repository, session.uuid))).includes('portier')) found.push(name)
    t.equal(found.length, 1, `${repository}: the session is in one storage, Portier's (${found.join(', ')})`)
    const name = found[0] ?? 'none'
    placed.add(name)
    const patched = await via.send('PATCH', session.location, { body: blob, headers: OCTETS })
    t.equal(patched.status, 202)
    t.equal((await via.send('PUT', withDigest(via.pathOf(patched.headers.location as string), sha256(blob)), { headers: { 'content-length': '0' } })).status, 201)
    const owner = registries.get(name)
    if (owner !== undefined) await expectCommitted(t, owner.storageDir, repository, session.uuid, blob)
    await routed.logsSettled()
    t.same([...new Set(uploadLines(routed, repository).map((line) => line.upstream))], [`storage:${name}`], `${repository}: upstream storage:${name}`)
  }
  t.comment(`repositories placed on: ${[...placed].join(', ')}`)
})

t.test('storage_uploads without storage is a configuration error naming the key', async (t) => {
  const failed = await startGateway({ config: { upstreams: [{ url: registry.url, storage_uploads: true }] }, readyTimeoutMs: 30_000 }).then(
    async (started) => {
      await started.stop()
      return undefined
    },
    (error: unknown) => error as Error,
  )
  t.ok(failed !== undefined, 'the gateway does not start')
  t.match(failed?.message ?? '', /upstreams\[0\]\.storage_uploads/, 'the error names upstreams[0].storage_uploads')
  t.match(failed?.message ?? '', /storage/, 'and says it needs storage')
})

t.test('a PUT while a PATCH is still writing the session is refused: the blob is never committed from half its bytes', async (t) => {
  const root = registry.storageDir
  const repository = 'st/commit-during-write'
  const session = await start(t, repository)
  const layer = randomBytes(512 * 1024)
  // The whole layer is sent, but the chunked body is not ended: the PATCH is still writing.
  const patch = httpsRequest(client.options('PATCH', session.location, { ...OCTETS, 'transfer-encoding': 'chunked' }, false))
  const patched = new Promise<number>((resolve, reject) => {
    patch.on('response', (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    patch.on('error', reject)
  })
  await new Promise<void>((resolve) => patch.write(layer, () => resolve()))
  // (Bytes are written in batches: the last part of the layer may still wait for the body to go on or end.)
  t.ok(await waitUntil(async () => (await dataSize(root, repository, session.uuid)) > 0, 10_000), 'bytes reached the session file')
  const early = await client.send('PUT', withDigest(session.location, sha256(layer)), { headers: { 'content-length': '0' } })
  t.equal(early.status, 400, 'the PUT during the write is refused')
  t.equal(early.errorCode(), 'BLOB_UPLOAD_INVALID')
  t.notOk(await stat(blobDataPath(root, sha256(layer)) as string).then(() => true, () => false), 'nothing stored under the digest')
  patch.end()
  t.equal(await patched, 202, 'the PATCH completes')
  const next = await client.send('GET', session.location)
  const finished = await client.send('PUT', withDigest(client.pathOf(next.headers.location as string), sha256(layer)), { headers: { 'content-length': '0' } })
  t.equal(finished.status, 201, 'then the PUT commits')
  t.ok((await readFile(blobDataPath(root, sha256(layer)) as string)).equals(layer), 'the whole layer is stored')
})

t.test('the next request sent the moment a PATCH is answered finds the session free: the lock is gone before the 202', async (t) => {
  // skopeo sends its PUT as soon as it reads a PATCH's 202. When the 202 went out before the session's lock
  // file was removed (the removal waiting in the thread pool behind other sessions' writes), that PUT got
  // 400 BLOB_UPLOAD_INVALID in about one push of six. Six sessions write at once so the thread pool is busy.
  const root = registry.storageDir
  const sessions = 6
  const chunks = 8
  const chunkBytes = 512 * 1024
  let lockSeen = 0
  const outcomes = await Promise.all(
    Array.from({ length: sessions }, async (_, index) => {
      const repository = `st/back-to-back-${index}`
      const session = await start(t, repository)
      const blob = randomBytes(chunks * chunkBytes)
      const statuses: number[] = []
      let location = session.location
      for (let chunk = 0; chunk < chunks; chunk++) {
        const reply = await client.send('PATCH', location, { body: blob.subarray(chunk * chunkBytes, (chunk + 1) * chunkBytes), headers: OCTETS })
        if (await exists(join(uploadDir(root, repository, session.uuid), 'lock'))) lockSeen++
        statuses.push(reply.status)
        if (reply.status !== 202) break
        location = client.pathOf(reply.headers.location as string)
      }
      const finished = await client.send('PUT', withDigest(location, sha256(blob)), { headers: { 'content-length': '0' } })
      statuses.push(finished.status)
      return { repository, uuid: session.uuid, blob, statuses }
    }),
  )
  t.equal(lockSeen, 0, 'no session still held its lock when its 202 was read')
  for (const outcome of outcomes) {
    t.same(outcome.statuses, [...Array.from({ length: chunks }, () => 202), 201], `${outcome.repository}: every PATCH 202, then the PUT 201`)
    await expectCommitted(t, root, outcome.repository, outcome.uuid, outcome.blob)
  }
})
