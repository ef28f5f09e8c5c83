// Drives the Distribution upload, mount, manifest and catalog API through Portier by hand and checks bytes, digests, Locations and path/name rejection.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, MiB, sha256, type Reply } from '../helpers/gwclient.js'

const registry = await registryFixture(t)
const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
const client = new GatewayClient(gateway)
t.teardown(() => client.close())

/** Every Location the client was given, with the request that produced it. */
const locations: Array<{ what: string; location: string }> = []
function noteLocation(what: string, reply: Reply): void {
  const location = reply.headers.location
  if (typeof location === 'string') locations.push({ what, location })
}

function withDigest(path: string, digest: string): string {
  return `${path}${path.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`
}

async function expectBlob(t: Test, repository: string, data: Buffer): Promise<void> {
  const digest = sha256(data)
  const got = await client.send('GET', `/v2/${repository}/blobs/${digest}`)
  t.equal(got.status, 200, `GET blob from ${repository}`)
  t.equal(got.body.length, data.length, 'GET returns every byte')
  t.equal(sha256(got.body), digest, 'GET returns identical bytes')
  t.equal(got.headers['docker-content-digest'], digest, 'GET Docker-Content-Digest')
  const head = await client.send('HEAD', `/v2/${repository}/blobs/${digest}`)
  t.equal(head.status, 200, 'HEAD blob')
  t.equal(head.headers['content-length'], String(data.length), 'HEAD Content-Length is the blob size')
  t.equal(head.body.length, 0, 'HEAD has no body')
}

async function startUpload(t: Test, repository: string): Promise<string> {
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  noteLocation('POST upload', started)
  t.equal(started.status, 202, 'POST starts an upload')
  t.equal(started.headers.range, '0-0', 'an empty session reports Range 0-0')
  t.match(started.headers['docker-upload-uuid'], /^[0-9a-f-]{36}$/, 'Docker-Upload-UUID')
  return client.pathOf(started.headers.location as string)
}

const chunkedData = randomBytes(5 * MiB + 123)
const chunkedDigest = sha256(chunkedData)

t.test('chunked upload: PATCH with and without Content-Range and chunked encoding, then PUT ?digest=', async (t) => {
  let location = await startUpload(t, 'up/chunked')
  let offset = 0
  const patch = async (what: string, piece: Buffer, options: { range?: boolean; chunked?: boolean }): Promise<void> => {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' }
    if (options.range) headers['content-range'] = `${offset}-${offset + piece.length - 1}`
    const body = options.chunked ? [piece.subarray(0, 1000), piece.subarray(1000, 300_000), piece.subarray(300_000)] : piece
    const reply = await client.send('PATCH', location, { headers, body, chunked: options.chunked === true })
    noteLocation(`PATCH ${what}`, reply)
    t.equal(reply.status, 202, `PATCH ${what} accepted`)
    offset += piece.length
    t.equal(reply.headers.range, `0-${offset - 1}`, `PATCH ${what}: Range covers everything sent so far`)
    location = client.pathOf(reply.headers.location as string)
  }
  await patch('with Content-Range', chunkedData.subarray(0, 1 * MiB), { range: true })
  await patch('without Content-Range', chunkedData.subarray(1 * MiB, 3 * MiB), {})
  await patch('chunked, no Content-Length', chunkedData.subarray(3 * MiB, 4 * MiB), { chunked: true })
  await patch('last, with Content-Range', chunkedData.subarray(4 * MiB), { range: true })

  const status = await client.send('GET', location)
  t.equal(status.status, 204, 'upload status')
  t.equal(status.headers.range, `0-${chunkedData.length - 1}`, 'upload status reports every byte')

  const finished = await client.send('PUT', withDigest(location, chunkedDigest))
  noteLocation('PUT finish', finished)
  t.equal(finished.status, 201, 'PUT ?digest= completes the upload')
  t.equal(finished.headers['docker-content-digest'], chunkedDigest, 'Docker-Content-Digest of the finished blob')
  t.equal(client.pathOf(finished.headers.location as string), `/v2/up/chunked/blobs/${chunkedDigest}`, 'Location of the blob')
  await expectBlob(t, 'up/chunked', chunkedData)
  t.same(await registry.uploadsOpen('up/chunked'), [], 'no upload left open')
})

t.test('the same upload as a user types it with curl (chunked PATCH, PUT with Expect: 100-continue)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-curl-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const data = randomBytes(3 * MiB + 5)
  const digest = sha256(data)
  await writeFile(join(work, 'part1'), data.subarray(0, 2 * MiB))
  await writeFile(join(work, 'part2'), data.subarray(2 * MiB))
  const curl = async (...args: string[]): Promise<{ status: number; headers: Record<string, string> }> => {
    const result = await run('curl', ['-sS', '-i', '--cacert', gateway.caFile, ...args], { timeoutMs: 30_000 })
    if (result.code !== 0) throw new Error(`curl ${args.join(' ')}: ${result.stderr}`)
    // With Expect: 100-continue the output starts with an interim "HTTP/1.1 100 Continue" block.
    const blocks = result.stdout.split('\r\n\r\n').filter((block) => block.startsWith('HTTP/'))
    const last = (blocks.at(-1) ?? '').split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of last.slice(1)) {
      const at = line.indexOf(':')
      if (at > 0) headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim()
    }
    return { status: Number(last[0]?.split(' ')[1]), headers }
  }
  const started = await curl('-X', 'POST', `${gateway.url}/v2/up/curl/blobs/uploads/`)
  t.equal(started.status, 202, 'curl POST: 202')
  locations.push({ what: 'curl POST', location: started.headers.location as string })
  const patched = await curl('-X', 'PATCH', '-H', 'Content-Type: application/octet-stream', '-H', 'Transfer-Encoding: chunked',
    '--data-binary', `@${join(work, 'part1')}`, started.headers.location as string)
  t.equal(patched.status, 202, 'curl chunked PATCH: 202')
  t.equal(patched.headers.range, `0-${2 * MiB - 1}`, 'Range after the PATCH')
  locations.push({ what: 'curl PATCH', location: patched.headers.location as string })
  const put = await curl('-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '--data-binary', `@${join(work, 'part2')}`,
    `${patched.headers.location}&digest=${digest}`)
  t.equal(put.status, 201, 'curl PUT with the last part: 201')
  t.equal(put.headers['docker-content-digest'], digest)
  locations.push({ what: 'curl PUT', location: put.headers.location as string })
  const out = join(work, 'out')
  const got = await run('curl', ['-sS', '-f', '--cacert', gateway.caFile, '-o', out, `${gateway.url}/v2/up/curl/blobs/${digest}`])
  t.equal(got.code, 0, 'curl GET')
  t.equal(sha256(await readFile(out)), digest, 'curl downloads identical bytes')
})

t.test('a PATCH whose Content-Range does not continue the upload is refused, not silently appended', async (t) => {
  // registry 2.8.2 ignores Content-Range and would append the chunk at the wrong place.
  const location = await startUpload(t, 'up/badrange')
  const first = await client.send('PATCH', location, { headers: { 'content-range': '0-9' }, body: randomBytes(10) })
  t.equal(first.status, 202, 'first chunk')
  const next = client.pathOf(first.headers.location as string)
  const gap = await client.send('PATCH', next, { headers: { 'content-range': '20-29' }, body: randomBytes(10) })
  t.equal(gap.status, 416, 'chunk that leaves a gap: 416')
  t.equal(gap.errorCode(), 'RANGE_INVALID')
  t.equal(gap.headers['docker-distribution-api-version'], 'registry/2.0')
  const overlap = await client.send('PATCH', next, { headers: { 'content-range': '5-14' }, body: randomBytes(10) })
  t.equal(overlap.status, 416, 'chunk that overlaps: 416')
  const mismatch = await client.send('PATCH', next, { headers: { 'content-range': '10-29' }, body: randomBytes(10) })
  t.equal(mismatch.status, 400, 'Content-Range longer than the body: 400')
  t.equal(mismatch.errorCode(), 'SIZE_INVALID')
  const status = await client.send('GET', next)
  t.equal(status.headers.range, '0-9', 'the session still holds only the first chunk')
  const right = await client.send('PATCH', next, { headers: { 'content-range': '10-19' }, body: randomBytes(10) })
  t.equal(right.status, 202, 'the chunk that continues the upload is accepted')
  t.equal(right.headers.range, '0-19')
  await client.send('DELETE', client.pathOf(right.headers.location as string))
})

t.test('a PATCH to a session the registry does not know gets its error, even while the client is still sending', async (t) => {
  const location = await startUpload(t, 'up/gone')
  const cancelled = await client.send('DELETE', location)
  t.equal(cancelled.status, 204, 'session cancelled by the client')
  for (const path of [location, '/v2/up/gone/blobs/uploads/00000000-0000-0000-0000-000000000000?_state=forged']) {
    const reply = await client.send('PATCH', path, { body: randomBytes(8 * MiB), timeoutMs: 10_000 })
    t.ok(reply.status === 404 || reply.status === 400, `the registry's answer comes back (${reply.status})`)
    t.match(reply.errorCode(), /^BLOB_UPLOAD_(UNKNOWN|INVALID)$/, `the registry's code comes back (${reply.errorCode() ?? 'none'})`)
  }
  const after = await client.send('GET', '/v2/')
  t.equal(after.status, 200, 'the gateway keeps serving')
})

t.test('monolithic POST ?digest= with the body creates the blob in one request', async (t) => {
  const data = randomBytes(3 * MiB + 7)
  const digest = sha256(data)
  const reply = await client.send('POST', `/v2/up/mono/blobs/uploads/?digest=${digest}`, {
    headers: { 'content-type': 'application/octet-stream' },
    body: data,
  })
  noteLocation('monolithic POST', reply)
  t.equal(reply.status, 201, 'monolithic POST: 201')
  t.equal(reply.headers['docker-content-digest'], digest, 'Docker-Content-Digest')
  t.equal(client.pathOf(reply.headers.location as string), `/v2/up/mono/blobs/${digest}`, 'Location of the blob')
  await expectBlob(t, 'up/mono', data)

  const streamed = randomBytes(2 * MiB + 1)
  const chunked = await client.send('POST', `/v2/up/mono/blobs/uploads/?digest=${sha256(streamed)}`, {
    body: [streamed.subarray(0, MiB), streamed.subarray(MiB)],
    chunked: true,
  })
  noteLocation('monolithic POST chunked', chunked)
  t.equal(chunked.status, 201, 'monolithic POST with a chunked body: 201')
  t.equal(chunked.headers['docker-content-digest'], sha256(streamed))
  await expectBlob(t, 'up/mono', streamed)
  t.same(await registry.uploadsOpen('up/mono'), [], 'no upload left open')
})

t.test('monolithic POST with a wrong digest fails and leaves nothing behind', async (t) => {
  const data = randomBytes(64 * 1024)
  const wrong = sha256('something else')
  const reply = await client.send('POST', `/v2/up/monobad/blobs/uploads/?digest=${wrong}`, { body: data })
  t.equal(reply.status, 400, 'digest mismatch: 400')
  t.equal(reply.errorCode(), 'DIGEST_INVALID')
  t.same(await registry.uploadsOpen('up/monobad'), [], 'the session the gateway opened is gone')
  const head = await client.send('HEAD', `/v2/up/monobad/blobs/${wrong}`)
  t.equal(head.status, 404, 'no blob under the claimed digest')
})

t.test('monolithic PUT: POST, then one PUT ?digest= with the whole body', async (t) => {
  const data = randomBytes(4 * MiB + 99)
  const digest = sha256(data)
  const location = await startUpload(t, 'up/put')
  const reply = await client.send('PUT', withDigest(location, digest), {
    headers: { 'content-type': 'application/octet-stream' },
    body: data,
  })
  noteLocation('monolithic PUT', reply)
  t.equal(reply.status, 201, 'PUT with body: 201')
  t.equal(reply.headers['docker-content-digest'], digest)
  await expectBlob(t, 'up/put', data)
})

t.test('cross-repository mount', async (t) => {
  const reply = await client.send('POST', `/v2/up/mounted/blobs/uploads/?mount=${chunkedDigest}&from=up/chunked`)
  noteLocation('mount', reply)
  t.equal(reply.status, 201, 'mount: 201')
  t.equal(reply.headers['docker-content-digest'], chunkedDigest)
  t.equal(client.pathOf(reply.headers.location as string), `/v2/up/mounted/blobs/${chunkedDigest}`, 'Location in the new repository')
  await expectBlob(t, 'up/mounted', chunkedData)

  const unknown = sha256('never pushed')
  const fallback = await client.send('POST', `/v2/up/mounted/blobs/uploads/?mount=${unknown}&from=up/chunked`)
  noteLocation('mount of an unknown blob', fallback)
  t.equal(fallback.status, 202, 'mount of an unknown blob falls back to a new upload session')
  await client.send('DELETE', client.pathOf(fallback.headers.location as string))
})

t.test('manifests: PUT, GET by tag and digest, HEAD, tags/list, catalog, DELETE', async (t) => {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [chunkedDigest] } }))
  const configReply = await client.send('POST', `/v2/up/chunked/blobs/uploads/?digest=${sha256(config)}`, { body: config })
  t.equal(configReply.status, 201, 'config blob pushed')
  const manifest = Buffer.from(`${JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: chunkedDigest, size: chunkedData.length }],
  }, null, 2)}\n`)
  const digest = sha256(manifest)
  const type = 'application/vnd.oci.image.manifest.v1+json'

  for (const tag of ['v1', 'v2']) {
    const put = await client.send('PUT', `/v2/up/chunked/manifests/${tag}`, { headers: { 'content-type': type }, body: manifest })
    noteLocation(`manifest PUT ${tag}`, put)
    t.equal(put.status, 201, `manifest PUT ${tag}`)
    t.equal(put.headers['docker-content-digest'], digest, 'manifest digest is the digest of the exact bytes')
    t.equal(client.pathOf(put.headers.location as string), `/v2/up/chunked/manifests/${digest}`, 'manifest Location')
  }
  for (const reference of ['v1', digest]) {
    const got = await client.send('GET', `/v2/up/chunked/manifests/${reference}`, { headers: { accept: type } })
    t.equal(got.status, 200, `GET manifest by ${reference === digest ? 'digest' : 'tag'}`)
    t.equal(got.headers['content-type'], type, 'Content-Type')
    t.equal(got.headers['docker-content-digest'], digest, 'Docker-Content-Digest')
    t.ok(got.body.equals(manifest), 'the same bytes come back')
  }
  const head = await client.send('HEAD', `/v2/up/chunked/manifests/v1`, { headers: { accept: type } })
  t.equal(head.status, 200, 'HEAD manifest')
  t.equal(head.headers['content-length'], String(manifest.length), 'HEAD Content-Length')
  t.equal(head.headers['docker-content-digest'], digest)

  const tags = await client.send('GET', '/v2/up/chunked/tags/list')
  t.equal(tags.status, 200, 'tags/list')
  t.same(tags.json(), { name: 'up/chunked', tags: ['v1', 'v2'] }, 'both tags listed')
  const catalog = await client.send('GET', '/v2/_catalog')
  t.equal(catalog.status, 200, 'catalog')
  t.ok((catalog.json() as { repositories: string[] }).repositories.includes('up/chunked'), 'catalog lists the repository')
  const unknownTags = await client.send('GET', '/v2/up/nothing/tags/list')
  t.equal(unknownTags.status, 404, 'tags of an unknown repository')
  t.equal(unknownTags.errorCode(), 'NAME_UNKNOWN')

  const deleted = await client.send('DELETE', `/v2/up/chunked/manifests/${digest}`)
  t.equal(deleted.status, 202, 'DELETE manifest by digest')
  for (const reference of ['v1', digest]) {
    const gone = await client.send('GET', `/v2/up/chunked/manifests/${reference}`, { headers: { accept: type } })
    t.equal(gone.status, 404, `manifest ${reference === digest ? 'digest' : 'tag'} gone after DELETE`)
    t.equal(gone.errorCode(), 'MANIFEST_UNKNOWN')
  }
})

t.test('invalid names, unknown paths and ambiguous paths are answered by the gateway', async (t) => {
  const control = await client.send('GET', '/v2/zzcontrol/tags/list')
  t.equal(control.status, 404, 'a valid but unknown repository reaches the registry')
  t.equal(control.errorCode(), 'NAME_UNKNOWN')

  for (const path of ['/v2/UPPER/manifests/latest', '/v2/bad_-name/tags/list', `/v2/${'a'.repeat(256)}/tags/list`, '/v2/ok/-lead/blobs/uploads/']) {
    const method = path.endsWith('uploads/') ? 'POST' : 'GET'
    const reply = await client.send(method, path)
    t.equal(reply.status, 400, `${method} ${path.slice(0, 40)}: 400`)
    t.equal(reply.errorCode(), 'NAME_INVALID', 'NAME_INVALID')
    t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0')
  }
  const mountFrom = await client.send('POST', `/v2/up/x/blobs/uploads/?mount=${chunkedDigest}&from=Bad/Name`)
  t.equal(mountFrom.status, 400, 'mount from an invalid repository name')
  t.equal(mountFrom.errorCode(), 'NAME_INVALID')

  for (const path of ['/v2/up/chunked/whatever', '/v3/', '/favicon.ico', '/v2/up/chunked/blobs']) {
    const reply = await client.send('GET', path)
    t.equal(reply.status, 404, `GET ${path}: 404`)
    t.match(reply.headers['content-type'], /^application\/json/, 'JSON body')
    const body = reply.json() as { errors?: Array<{ code?: unknown }> }
    t.ok(Array.isArray(body.errors) && typeof body.errors[0]?.code === 'string', 'registry error body')
  }

  const traversal = [
    '/v2/zzmarker/../zzmarker2/tags/list',
    '/v2/zzmarker/%2e%2e/x/tags/list',
    '/v2//zzmarker/tags/list',
    '/v2/zzmarker//tags/list',
    '/v2/zzmarker%2fx/tags/list',
    '/v2/zzmarker%2Fx/manifests/latest',
    '/v2/zzmarker/./tags/list',
    '/v2/zzmarker%5cx/tags/list',
  ]
  for (const path of traversal) {
    const reply = await client.send('GET', path)
    t.equal(reply.status, 400, `GET ${path}: 400`)
    t.match(reply.errorCode(), /^[A-Z_]+$/, 'registry error code')
  }
  const log = await registry.log()
  t.match(log, /zzcontrol/, 'the registry logs the requests it receives')
  t.notMatch(log, /zzmarker/, 'none of the ambiguous paths reached the registry')
})

t.test('every Location the client received points at the gateway', async (t) => {
  t.ok(locations.length >= 12, `${locations.length} Locations seen`)
  for (const { what, location } of locations) {
    t.ok(location.startsWith(`${gateway.url}/v2/`), `${what}: ${location.slice(0, 60)}`)
    t.notOk(location.includes(`:${registry.port}`), `${what}: no registry address`)
  }
})
