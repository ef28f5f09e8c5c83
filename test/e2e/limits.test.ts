// Size limits: declared, streamed and cumulative blob sizes, manifests and per-repository rules end in a JSON 413 and a cancelled session.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, MiB, sha256, sleep, type Reply, type Streamed } from '../helpers/gwclient.js'

const registry = await registryFixture(t)
const gateway = await gatewayFixture(t, {
  config: {
    upstreams: [{ url: registry.url }],
    limits: { blob_max_bytes: '8MiB', repositories: [{ match: 'big/*', blob_max_bytes: '64MiB' }] },
  },
})
const client = new GatewayClient(gateway)
t.teardown(() => client.close())
const LIMIT = 8 * MiB

function expect413(t: Test, reply: { status: number; headers: IncomingMessage['headers']; body: Buffer }, limit = 'blob_max_bytes'): void {
  t.equal(reply.status, 413, '413')
  t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0', 'Docker-Distribution-Api-Version on the 413')
  t.match(reply.headers['content-type'], /^application\/json/, 'JSON body')
  const error = (JSON.parse(reply.body.toString('utf8')) as { errors: Array<{ code: string; message: string; detail: { limit: string; max_bytes: number } }> }).errors[0]
  t.equal(error?.code, 'SIZE_INVALID', 'error code SIZE_INVALID')
  t.equal(error?.detail.limit, limit, `detail.limit = ${limit}`)
  t.type(error?.message, 'string')
}

async function startUpload(repository: string): Promise<string> {
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  if (started.status !== 202) throw new Error(`POST upload: ${started.status}`)
  return client.pathOf(started.headers.location as string)
}

async function expectNoUpload(t: Test, repository: string, location: string, digest?: string): Promise<void> {
  t.same(await registry.uploadsOpen(repository), [], 'no upload session left in the registry')
  const status = await client.send('GET', location)
  t.equal(status.status, 404, 'the session is unknown to the registry')
  t.equal(status.errorCode(), 'BLOB_UPLOAD_UNKNOWN')
  if (digest) {
    const head = await client.send('HEAD', `/v2/${repository}/blobs/${digest}`)
    t.equal(head.status, 404, 'no blob under that digest')
  }
}

/** Count of registry access-log lines for `method` on `repository`. */
async function upstreamRequests(method: string, repository: string): Promise<number> {
  const log = await registry.log()
  return log.split('\n').filter((line) => line.includes(`"${method} /v2/${repository}/`)).length
}

/**
 * Sends a body of `total` bytes in 1 MiB writes (with backpressure) and stops writing as soon as
 * the answer arrives. `declare` sends Content-Length up front; otherwise Transfer-Encoding: chunked.
 * With `headersOnly`, only the headers go out: the answer must come without any body byte.
 */
function stream(method: string, path: string, total: number, opts: { declare?: boolean; headersOnly?: boolean; headers?: Record<string, string> } = {}): Promise<Streamed> {
  const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', ...(opts.headers ?? {}) }
  if (opts.declare || opts.headersOnly) headers['content-length'] = total
  else headers['transfer-encoding'] = 'chunked'
  return client.streamUntilAnswered(method, path, total, headers, { pieceBytes: MiB, ...(opts.headersOnly ? { headersOnly: true } : {}) })
}

t.test('a PATCH declaring more than the limit is refused before any body byte, and the session is cancelled', async (t) => {
  const location = await startUpload('lim/declared')
  const started = Date.now()
  const reply = await stream('PATCH', location, 9 * MiB, { headersOnly: true })
  t.ok(Date.now() - started < 5000, 'answered without waiting for the body')
  t.equal(reply.sent, 0, 'not one body byte was sent')
  expect413(t, reply)
  t.equal(await upstreamRequests('PATCH', 'lim/declared'), 0, 'the PATCH never reached the registry')
  await expectNoUpload(t, 'lim/declared', location, sha256('never stored'))
})

t.test('a chunked PATCH that streams past the limit gets 413 and its session is cancelled', async (t) => {
  const location = await startUpload('lim/streamed')
  const reply = await stream('PATCH', location, 12 * MiB)
  expect413(t, reply)
  t.ok(reply.sent > LIMIT, `the client had streamed past the limit (${(reply.sent / MiB).toFixed(0)} MiB sent)`)
  await expectNoUpload(t, 'lim/streamed', location)
})

t.test('the limit counts every chunk of one session: the third 3 MiB PATCH of an 8 MiB limit is refused', async (t) => {
  let location = await startUpload('lim/total')
  for (const n of [1, 2]) {
    const reply = await client.send('PATCH', location, { body: randomBytes(3 * MiB) })
    t.equal(reply.status, 202, `PATCH ${n} accepted`)
    location = client.pathOf(reply.headers.location as string)
  }
  const third = await client.send('PATCH', location, { body: randomBytes(3 * MiB) })
  expect413(t, { ...third })
  t.equal((third.json() as { errors: Array<{ detail: { bytes: number } }> }).errors[0]?.detail.bytes, 9 * MiB, 'the 413 counts the 6 MiB already stored')
  await expectNoUpload(t, 'lim/total', location)

  // Same with chunked PATCHes, where only counting can tell.
  location = await startUpload('lim/total2')
  for (const n of [1, 2]) {
    const reply = await stream('PATCH', location, 3 * MiB)
    t.equal(reply.status, 202, `chunked PATCH ${n} accepted`)
    location = client.pathOf(reply.headers.location as string)
  }
  const streamed = await stream('PATCH', location, 3 * MiB)
  expect413(t, streamed)
  await expectNoUpload(t, 'lim/total2', location)
})

t.test('a Content-Range reaching past the limit is refused without forwarding the chunk', async (t) => {
  const location = await startUpload('lim/range')
  const reply = await client.send('PATCH', location, {
    headers: { 'content-range': `${LIMIT - 100}-${LIMIT + 923}`, 'content-type': 'application/octet-stream' },
    body: randomBytes(1024),
  })
  expect413(t, { ...reply })
  t.equal(await upstreamRequests('PATCH', 'lim/range'), 0, 'the chunk never reached the registry')
  await expectNoUpload(t, 'lim/range', location)
})

t.test('monolithic uploads over the limit are refused', async (t) => {
  const declared = await stream('POST', `/v2/lim/mono/blobs/uploads/?digest=${sha256('x')}`, 9 * MiB, { headersOnly: true })
  expect413(t, declared)
  t.equal(await upstreamRequests('POST', 'lim/mono'), 0, 'a declared oversized monolithic upload never reaches the registry')
  t.same(await registry.uploadsOpen('lim/mono'), [], 'no session opened')

  const streamed = await stream('POST', `/v2/lim/mono/blobs/uploads/?digest=${sha256('y')}`, 10 * MiB)
  expect413(t, streamed)
  t.same(await registry.uploadsOpen('lim/mono'), [], 'the session the gateway opened is cancelled')

  const location = await startUpload('lim/monoput')
  const put = await stream('PUT', `${location}&digest=${sha256('z')}`, 10 * MiB)
  expect413(t, put)
  t.same(await registry.uploadsOpen('lim/monoput'), [], 'PUT with a body over the limit: session cancelled')

  const small = randomBytes(2 * MiB)
  const ok = await client.send('POST', `/v2/lim/mono/blobs/uploads/?digest=${sha256(small)}`, { body: small })
  t.equal(ok.status, 201, 'a monolithic upload under the limit still works')
})

t.test('manifests over 4 MiB are refused; per-repository rules raise the blob limit for their repositories only', async (t) => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', annotations: { pad: 'x'.repeat(5 * MiB) } }))
  const declared = await client.send('PUT', '/v2/lim/manifest/manifests/v1', {
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  })
  expect413(t, { ...declared }, 'manifest_max_bytes')
  t.equal(await upstreamRequests('PUT', 'lim/manifest'), 0, 'the declared one never reached the registry')
  const chunked = await client.send('PUT', '/v2/lim/manifest/manifests/v1', {
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
    body: [manifest.subarray(0, 3 * MiB), manifest.subarray(3 * MiB)],
    chunked: true,
  })
  expect413(t, { ...chunked }, 'manifest_max_bytes')
  const stored = await client.send('GET', '/v2/lim/manifest/manifests/v1')
  t.equal(stored.status, 404, 'the streamed one was not stored either')

  const blob = randomBytes(12 * MiB)
  const digest = sha256(blob)
  const big = await client.send('POST', `/v2/big/app/blobs/uploads/?digest=${digest}`, { body: blob })
  t.equal(big.status, 201, 'big/* may push a 12 MiB blob')
  const back = await client.send('GET', `/v2/big/app/blobs/${digest}`)
  t.equal(sha256(back.body), digest, 'and it comes back whole')
  const small = await client.send('POST', `/v2/lim/app/blobs/uploads/?digest=${digest}`, { body: blob })
  expect413(t, { ...small })
  const nested = await client.send('POST', `/v2/big/app/nested/blobs/uploads/?digest=${digest}`, { body: blob })
  expect413(t, { ...nested })
})

t.test('a 413 is logged once, with its error code', async (t) => {
  const location = await startUpload('lim/logged')
  const reply: Reply = await client.send('PATCH', location, { body: randomBytes(9 * MiB) })
  t.equal(reply.status, 413)
  await gateway.waitForLog((line) => line.repository === 'lim/logged' && line.status === 413)
  await sleep(300)
  await gateway.logsSettled()
  const lines = gateway.logs.filter((line) => line.repository === 'lim/logged' && line.method === 'PATCH')
  t.equal(lines.length, 1, 'one log line for the request')
  t.equal(lines[0]?.error, 'TOO_LARGE', 'with the error code')
  t.equal(lines[0]?.status, 413, 'and the status')
})

t.test('a cross-repository mount of a blob over the target repository limit gets 413 and mounts nothing; one within it mounts', async (t) => {
  const blob = randomBytes(12 * MiB)
  const digest = sha256(blob)
  const pushed = await client.send('POST', `/v2/big/mount-source/blobs/uploads/?digest=${digest}`, { body: blob })
  t.equal(pushed.status, 201, 'big/* (64 MiB limit) holds the 12 MiB blob')
  const direct = await client.send('POST', `/v2/lim/mount-direct/blobs/uploads/?digest=${digest}`, { body: blob })
  expect413(t, { ...direct })

  const mounted = await client.send('POST', `/v2/lim/mount-target/blobs/uploads/?mount=${digest}&from=big/mount-source`)
  expect413(t, { ...mounted })
  const error = (mounted.json() as { errors: Array<{ detail: { bytes: number; max_bytes: number } }> }).errors[0]
  t.equal(error?.detail.bytes, 12 * MiB, 'detail.bytes is the source blob size')
  t.equal(error?.detail.max_bytes, LIMIT, 'detail.max_bytes is the target limit')
  t.equal(await upstreamRequests('POST', 'lim/mount-target'), 0, 'the mount never reached the registry')
  const head = await client.send('HEAD', `/v2/lim/mount-target/blobs/${digest}`)
  t.equal(head.status, 404, 'the target repository has no such blob')
  const direct404 = await fetch(`${registry.url}/v2/lim/mount-target/blobs/${digest}`, { method: 'HEAD' })
  t.equal(direct404.status, 404, 'not in the registry either (asked directly)')

  const wide = await client.send('POST', `/v2/big/mount-target/blobs/uploads/?mount=${digest}&from=big/mount-source`)
  t.equal(wide.status, 201, 'the same mount into a repository whose limit it fits: 201')
  t.equal(wide.headers['docker-content-digest'], digest)

  const small = randomBytes(1 * MiB)
  const smallDigest = sha256(small)
  t.equal((await client.send('POST', `/v2/big/mount-source/blobs/uploads/?digest=${smallDigest}`, { body: small })).status, 201)
  const within = await client.send('POST', `/v2/lim/mount-target/blobs/uploads/?mount=${smallDigest}&from=big/mount-source`)
  t.equal(within.status, 201, 'a 1 MiB blob mounts into the 8 MiB repository')
  const back = await client.send('GET', `/v2/lim/mount-target/blobs/${smallDigest}`)
  t.equal(sha256(back.body), smallDigest, 'and reads back whole from there')

  const unknown = sha256(randomBytes(32))
  const fallback = await client.send('POST', `/v2/lim/mount-target/blobs/uploads/?mount=${unknown}&from=big/mount-source`)
  t.equal(fallback.status, 202, 'a blob the source does not have: the registry starts an ordinary (limited) upload')
  await client.send('DELETE', client.pathOf(fallback.headers.location as string))
})
