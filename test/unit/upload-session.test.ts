// The upload session against real registries: chunk, finish and cancel over one and two upstreams, RANGE_INVALID, and the size limit counted across chunks.
import t from 'tap'
import { createHash } from 'node:crypto'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { classify } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'
import { Forwarder, type RouteContext } from '../../src/forward/forward.js'
import { UploadSession, type SignedTarget, type UploadTarget } from '../../src/uploads/session.js'
import { sessionFromLocation } from '../../src/uploads/token.js'
import { createUpstreams, type Upstream } from '../../src/upstreams/upstreams.js'
import type { SizeLimit } from '../../src/pipeline/limits.js'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'

const REPO = 'unit/session'
const client = { peer: '127.0.0.1', clientIp: '127.0.0.1', forwardedFor: '127.0.0.1', proto: 'http' as const, host: '127.0.0.1', publicOrigin: 'http://127.0.0.1' }
const timeouts = { upstream_connect: 5000, upstream_headers: 30_000, body_idle: 30_000 } as Parameters<typeof createUpstreams>[1]

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** A client request as the gateway's HTTP server hands it over: headers, then the body, then its end. */
function clientRequest(method: string, url: string, headers: Record<string, string>, body: Buffer): IncomingMessage {
  const req = new IncomingMessage(new Socket())
  req.method = method
  req.url = url
  req.headers = { host: '127.0.0.1', ...headers }
  setImmediate(() => {
    if (body.length > 0) req.push(body)
    req.complete = true
    req.push(null)
  })
  return req
}

function contextFor(method: string, url: string, headers: Record<string, string>, body: Buffer, limit?: SizeLimit): RouteContext {
  const req = clientRequest(method, url, headers, body)
  return { request: classify(method, url), req, res: new ServerResponse(req), client, limit, bytes: { received: 0, sent: 0 } }
}

async function startUpload(registry: RegistryHandle): Promise<string> {
  const answer = await fetch(`${registry.url}/v2/${REPO}/blobs/uploads/`, { method: 'POST' })
  t.equal(answer.status, 202, 'the registry opened a session')
  return new URL(answer.headers.get('location') ?? '', registry.url).pathname + new URL(answer.headers.get('location') ?? '', registry.url).search
}

async function blobOn(registry: RegistryHandle, digest: string): Promise<Buffer | number> {
  const answer = await fetch(`${registry.url}/v2/${REPO}/blobs/${digest}`)
  return answer.status === 200 ? Buffer.from(await answer.arrayBuffer()) : answer.status
}

const cancelErrors: unknown[] = []
const forwarder = new Forwarder((error) => cancelErrors.push(error))

t.test('one upstream: two chunks, the second admitted at the offset its _state names, then finished', async (t) => {
  const registry = await registryFixture(t)
  const upstreams = createUpstreams([{ url: registry.url }], timeouts)
  t.teardown(() => upstreams.close())
  const upstream = upstreams.all[0] as Upstream
  const first = Buffer.from('first chunk, ')
  const second = Buffer.from('second chunk')
  const limit: SizeLimit = { name: 'blob_max_bytes', maxBytes: first.length + second.length }

  const url = await startUpload(registry)
  const one = UploadSession.fromUrl(forwarder, contextFor('PATCH', url, { 'content-length': String(first.length), 'content-type': 'application/octet-stream' }, first, limit), upstream)
  t.equal(await one.admit(), 0, 'a fresh session holds nothing')
  const body = one.body(0)
  const [patched] = await one.chunk(body, false)
  t.equal(patched?.response?.statusCode, 202)
  t.equal(patched?.response?.headers.range, `0-${first.length - 1}`)
  t.equal(one.context.bytes.received, first.length, 'the chunk counts what it passed upstream')
  const next = one.next(upstream, patched?.response?.statusCode, patched?.response?.headers.location) as UploadTarget
  patched?.response?.body.resume()
  t.ok(next?.session?.state, 'the next target carries the new _state')

  const range = `${first.length}-${first.length + second.length - 1}`
  const two = UploadSession.fromUrl(forwarder, contextFor('PUT', `${next.path}&digest=${sha256(Buffer.concat([first, second]))}`, { 'content-length': String(second.length), 'content-range': range }, second, limit), upstream)
  t.equal(two.offset, first.length, 'the offset is read from _state')
  t.equal(await two.admit(), first.length)
  const secondBody = two.body(first.length)
  const [written] = await two.chunk(secondBody, true)
  t.equal(written?.response?.statusCode, 202)
  const last = two.next(upstream, written?.response?.statusCode, written?.response?.headers.location) as UploadTarget
  written?.response?.body.resume()
  const [finished] = await two.finish([last], two.shape.digest as string)
  t.equal(finished?.response?.statusCode, 201)
  t.equal(finished?.response?.headers['docker-content-digest'], sha256(Buffer.concat([first, second])))
  finished?.response?.body.resume()
  t.same(await blobOn(registry, sha256(Buffer.concat([first, second]))), Buffer.concat([first, second]), 'the registry holds both chunks in order')
})

t.test('one upstream: a chunk that does not start at the stored offset is RANGE_INVALID, before any byte is sent', async (t) => {
  const registry = await registryFixture(t)
  const upstreams = createUpstreams([{ url: registry.url }], timeouts)
  t.teardown(() => upstreams.close())
  const upstream = upstreams.all[0] as Upstream
  const url = await startUpload(registry)
  const first = Buffer.from('0123456789')
  const one = UploadSession.fromUrl(forwarder, contextFor('PATCH', url, { 'content-length': '10' }, first), upstream)
  const [patched] = await one.chunk(one.body(await one.admit()), false)
  const next = one.next(upstream, patched?.response?.statusCode, patched?.response?.headers.location) as UploadTarget
  patched?.response?.body.resume()

  const again = UploadSession.fromUrl(forwarder, contextFor('PATCH', next.path, { 'content-length': '10', 'content-range': '0-9' }, first), upstream)
  const error = await again.admit().then(() => undefined, (caught: unknown) => caught)
  t.ok(error instanceof RegistryError, 'refused')
  t.equal((error as RegistryError).code, 'RANGE_INVALID')
  t.equal((error as RegistryError).status, 416)
  t.same((error as RegistryError).headers, { Range: '0-9' }, 'Range names what the session holds')
  const status = await fetch(`${registry.url}${next.path}`)
  t.equal(status.headers.get('range'), '0-9', 'the session upstream is untouched')
})

t.test('one upstream: the limit counts bytes across chunks; a chunk that would cross it is refused and the session cancelled', async (t) => {
  const registry = await registryFixture(t)
  const upstreams = createUpstreams([{ url: registry.url }], timeouts)
  t.teardown(() => upstreams.close())
  const upstream = upstreams.all[0] as Upstream
  const limit: SizeLimit = { name: 'blob_max_bytes', maxBytes: 16 }
  const url = await startUpload(registry)
  const chunk = Buffer.alloc(10, 0x61)
  const one = UploadSession.fromUrl(forwarder, contextFor('PATCH', url, { 'content-length': '10' }, chunk, limit), upstream)
  const [patched] = await one.chunk(one.body(await one.admit()), false)
  t.equal(patched?.response?.statusCode, 202, 'the first 10 bytes fit under 16')
  const next = one.next(upstream, patched?.response?.statusCode, patched?.response?.headers.location) as UploadTarget
  patched?.response?.body.resume()
  t.equal((await registry.uploadsOpen(REPO)).length, 1)

  const two = UploadSession.fromUrl(forwarder, contextFor('PATCH', next.path, { 'content-length': '10' }, chunk, limit), upstream)
  const error = await two.admit().then(() => undefined, (caught: unknown) => caught)
  t.equal((error as RegistryError).code, 'TOO_LARGE', '10 stored + 10 declared > 16')
  t.match((error as RegistryError).detail, { limit: 'blob_max_bytes', max_bytes: 16, bytes: 20 })
  t.same(await registry.uploadsOpen(REPO), [], 'the session was cancelled upstream')

  // A streamed chunk (no length) stops at the limit: the body ends cleanly and says why.
  const url2 = await startUpload(registry)
  const streamed = UploadSession.fromUrl(forwarder, contextFor('PATCH', url2, { 'transfer-encoding': 'chunked' }, Buffer.alloc(20, 0x62), limit), upstream)
  const body = streamed.body(await streamed.admit())
  const [outcome] = await streamed.chunk(body, false)
  outcome?.response?.body.resume()
  t.equal(body.stopped, 'limit')
  t.equal(body.exceeded?.bytes, 20)
  t.equal(streamed.context.bytes.received, 0, 'nothing past the limit went upstream')
})

t.test('two upstreams: one read of the body reaches both sessions; finish and cancel run on each', async (t) => {
  const [a, b] = await Promise.all([registryFixture(t), registryFixture(t)])
  const upstreams = createUpstreams([{ name: 'a', url: (a as RegistryHandle).url }, { name: 'b', url: (b as RegistryHandle).url }], timeouts)
  t.teardown(() => upstreams.close())
  const blob = Buffer.from('the same bytes on both mirrors')
  const digest = sha256(blob)
  const context = contextFor('POST', `/v2/${REPO}/blobs/uploads/?digest=${digest}`, { 'content-length': String(blob.length) }, blob)
  const upload = new UploadSession(forwarder, context, [])
  upload.admitNew()
  const opened = await upload.open(upstreams.all)
  upload.targets = opened.flatMap((outcome) => {
    outcome.response?.body.resume()
    return upload.signed(outcome.upstream, outcome.response?.statusCode, outcome.response?.headers.location) ?? []
  })
  t.equal(upload.targets.length, 2, 'a session on each upstream')
  const patched = await upload.chunk(upload.body(0), true)
  t.same(patched.map((outcome) => outcome.response?.statusCode), [202, 202])
  t.same(patched.map((outcome) => outcome.response?.headers.range), [`0-${blob.length - 1}`, `0-${blob.length - 1}`], 'both hold every byte')
  t.equal(context.bytes.received, blob.length, 'the client body was read once')
  const next = patched.map((outcome) => {
    outcome.response?.body.resume()
    return upload.signed(outcome.upstream, outcome.response?.statusCode, outcome.response?.headers.location) as SignedTarget
  })
  const finished = await upload.finish(next, digest)
  t.same(finished.map((outcome) => outcome.response?.statusCode), [201, 201])
  for (const outcome of finished) outcome.response?.body.resume()
  t.same(await blobOn(a as RegistryHandle, digest), blob)
  t.same(await blobOn(b as RegistryHandle, digest), blob)

  // Cancel over both: two fresh sessions, both gone from storage afterwards.
  const starts = await Promise.all([startUpload(a as RegistryHandle), startUpload(b as RegistryHandle)])
  const targets = starts.map((path, index) => {
    const upstream = upstreams.all[index] as Upstream
    const found = sessionFromLocation(upstream.name, path)
    return { upstream, path, ...(found ? { session: found.session } : {}) }
  })
  t.equal((await (a as RegistryHandle).uploadsOpen(REPO)).length, 1)
  t.equal((await (b as RegistryHandle).uploadsOpen(REPO)).length, 1)
  await new UploadSession(forwarder, context, targets).cancel()
  t.same(await (a as RegistryHandle).uploadsOpen(REPO), [])
  t.same(await (b as RegistryHandle).uploadsOpen(REPO), [])
  t.same(cancelErrors, [], 'every cancel reached its upstream')
})
