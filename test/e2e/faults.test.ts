// No client can crash the gateway: the three reported crashes, then hundreds of aborts at random points of real requests; the process must live, serve and count no internal error.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { request as httpsRequest } from 'node:https'
import { createConnection } from 'node:net'
import { connect } from 'node:tls'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { GatewayClient, MiB, sha256, sleep, waitUntil } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const WRITER = basic('writer', 'writer-password')
const READER = basic('reader', 'reader-password')

interface Setup {
  registry: RegistryHandle
  gateway: GatewayHandle
  client: GatewayClient
  /** A 4 MiB blob and a manifest tagged `v1` in faults/data. */
  blob: { digest: string; size: number }
  manifest: { digest: string; body: Buffer }
}

/** A real registry, the real gateway (htpasswd: a writer and a pull-only reader), and one image in faults/data. */
async function setUp(t: Test): Promise<Setup> {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-faults-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `writer:${await hashPassword('writer-password', 4)}\nreader:${await hashPassword('reader-password', 4)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'writer' }, actions: ['*'] },
          { match: { account: 'reader', name: '**' }, actions: ['pull'] },
        ],
      },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const data = randomBytes(4 * MiB)
  const blob = { digest: sha256(data), size: data.length }
  await pushBlob(client, 'faults/data', data)
  const config = Buffer.from('{}')
  await pushBlob(client, 'faults/data', config)
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: blob.digest, size: blob.size }],
    }),
  )
  const put = await client.send('PUT', '/v2/faults/data/manifests/v1', { body, headers: { authorization: WRITER, 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  if (put.status !== 201) throw new Error(`manifest push: ${put.status} ${put.body.toString()}`)
  return { registry, gateway, client, blob, manifest: { digest: sha256(body), body } }
}

/** POST + PUT ?digest= through the gateway; throws unless 201 with the right digest. */
async function pushBlob(client: GatewayClient, repository: string, data: Buffer): Promise<string> {
  const location = await startUpload(client, repository)
  const digest = sha256(data)
  const put = await client.send('PUT', `${location}&digest=${encodeURIComponent(digest)}`, { body: data, headers: { authorization: WRITER, 'content-type': 'application/octet-stream' } })
  if (put.status !== 201 || put.headers['docker-content-digest'] !== digest) throw new Error(`blob push: ${put.status} ${put.body.toString()}`)
  return digest
}

/** A fresh upload session: the path (with query) the client continues with. */
async function startUpload(client: GatewayClient, repository: string): Promise<string> {
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`, { headers: { authorization: WRITER } })
  if (started.status !== 202) throw new Error(`upload start: ${started.status}`)
  return client.pathOf(started.headers.location as string)
}

/** How a raw exchange ends: when the test's socket lets go. */
type Stop =
  | { after: 'write' }
  | { after: 'response-bytes'; bytes: number }
  | { after: 'ms'; ms: number }
  /** Waits for the gateway to close (or 5 s). */
  | { after: 'server' }

/**
 * Writes `pieces` on a fresh TLS connection and lets go as `stop` says, by a FIN-less destroy or a
 * TCP reset. Resolves with the response bytes seen; never rejects (a broken socket is the point).
 */
function rawExchange(port: number, pieces: Buffer[], stop: Stop, reset = false, onFirstBytes?: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const received: Buffer[] = []
    let seen = 0
    // A TLS socket cannot send a reset itself: its TCP socket can.
    const tcp = createConnection({ host: '127.0.0.1', port })
    const socket = connect({ socket: tcp, rejectUnauthorized: false })
    const guard = setTimeout(() => socket.destroy(), 5000)
    const letGo = (): void => {
      if (socket.destroyed) return
      // Destroying the TLS socket as well after the reset crashes Node 20 (SIGSEGV): the reset closes both.
      if (reset && !tcp.destroyed) tcp.resetAndDestroy()
      else socket.destroy()
    }
    tcp.on('error', () => undefined)
    socket.on('error', () => undefined)
    // A keep-alive connection stays open after a short answer: once nothing arrives for a while, the answer is complete.
    let idle: NodeJS.Timeout | undefined
    socket.on('data', (chunk: Buffer) => {
      clearTimeout(idle)
      idle = setTimeout(letGo, 300)
      received.push(chunk)
      if (seen === 0 && onFirstBytes) socket.write(onFirstBytes)
      seen += chunk.length
      if (stop.after === 'response-bytes' && seen >= stop.bytes) letGo()
    })
    socket.once('close', () => {
      clearTimeout(guard)
      clearTimeout(idle)
      resolve(Buffer.concat(received))
    })
    socket.once('secureConnect', () => {
      for (const piece of pieces) socket.write(piece)
      if (stop.after === 'write') letGo()
      else if (stop.after === 'ms') setTimeout(letGo, stop.ms)
      else if (stop.after === 'response-bytes' && stop.bytes === 0) letGo()
    })
  })
}

function head(method: string, path: string, headers: Record<string, string | number> = {}): Buffer {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)]
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`)
}

async function internalErrors(gateway: GatewayHandle): Promise<number> {
  const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  let total = 0
  for (const match of text.matchAll(/^portier_internal_errors_total(?:\{[^}]*\})? (\S+)$/gm)) total += Number(match[1])
  if (!/^# TYPE portier_internal_errors_total counter$/m.test(text)) throw new Error('portier_internal_errors_total is not exported')
  return total
}

/** The gateway still answers a pull with the right bytes. */
async function stillServes(t: Test, setup: Setup): Promise<void> {
  const got = await setup.client.send('GET', `/v2/faults/data/blobs/${setup.blob.digest}`, { headers: { authorization: READER } })
  t.equal(got.status, 200, 'a blob GET still works')
  t.equal(sha256(got.body), setup.blob.digest, 'with the right bytes')
  const manifest = await setup.client.send('GET', '/v2/faults/data/manifests/v1', { headers: { authorization: READER, accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(manifest.status, 200, 'a manifest GET still works')
  t.equal(manifest.headers['docker-content-digest'], setup.manifest.digest, 'with the right digest')
}

t.test('the three reported crashes: TLS GET tags/list then close, a request then garbage, a PATCH longer than its Content-Length', async (t) => {
  const setup = await setUp(t)
  const { gateway, client } = setup
  const port = gateway.port

  // 1. A pull-only client asks for the tags and closes its socket at once, again and again, at slightly different moments.
  const tags = head('GET', '/v2/faults/data/tags/list', { authorization: READER })
  for (let i = 0; i < 60; i++) {
    await rawExchange(port, [tags], i % 3 === 0 ? { after: 'write' } : { after: 'ms', ms: i % 5 }, i % 2 === 0)
  }
  t.equal(gateway.child.exitCode, null, 'the gateway lives after 60 tags/list aborts')

  // 2. A valid request followed by garbage on the same connection: in the same write, or once the answer
  // has begun (a tags list, or a 4 MiB blob on its way).
  const garbage = Buffer.from('\x00\x01garbage that is not HTTP\r\n\r\n')
  for (let i = 0; i < 30; i++) {
    const path = i % 2 === 0 ? '/v2/faults/data/tags/list' : `/v2/faults/data/blobs/${setup.blob.digest}`
    const request = head('GET', path, { authorization: READER })
    if (i % 3 === 0) await rawExchange(port, [request, garbage], { after: 'server' })
    else await rawExchange(port, [request], { after: 'server' }, false, garbage)
  }
  t.equal(gateway.child.exitCode, null, 'the gateway lives after 30 requests followed by garbage')
  // What Node's parser cannot read is answered in the registry's error format, not with a bare 400.
  for (const [what, bytes, status] of [
    ['garbage', garbage, '400 Bad Request'],
    ['a header over 16 KiB', head('GET', '/v2/', { 'x-filler': 'a'.repeat(20_000) }), '431 Request Header Fields Too Large'],
    // What Node answered itself (a bare 400, a bare 417) or dropped without a word (CONNECT), unlogged.
    ['HTTP/1.1 without Host', Buffer.from('GET /v2/ HTTP/1.1\r\nUser-Agent: no-host\r\n\r\n'), '400 Bad Request'],
    ['an Expect other than 100-continue', head('GET', '/v2/', { expect: '999-nope' }), '417 Expectation Failed'],
    ['CONNECT', Buffer.from('CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n'), '405 Method Not Allowed'],
  ] as const) {
    const refused = (await rawExchange(port, [bytes], { after: 'server' })).toString('latin1')
    t.match(refused, new RegExp(`^HTTP/1\\.1 ${status}\r\n`), `${what}: ${status}`)
    t.match(refused, /\r\nDocker-Distribution-Api-Version: registry\/2\.0\r\n/i, `${what}: the API version header`)
    const answer = JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4)) as { errors: Array<{ code: string }> }
    t.equal(answer.errors[0]?.code, 'UNSUPPORTED', `${what}: a registry JSON error`)
  }
  // A CONNECT's socket is handed over by Node without its error listener: a reset right after must not reach the process.
  const connect = Buffer.from('CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n')
  for (let i = 0; i < 20; i++) await rawExchange(port, [connect], i % 2 === 0 ? { after: 'response-bytes', bytes: 1 } : { after: 'ms', ms: i % 4 }, true)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(gateway.child.exitCode, null, 'the gateway lives after 20 CONNECTs reset once answered, or at once')
  const noHost = (await rawExchange(port, [Buffer.from('GET /v2/ HTTP/1.1\r\n\r\n')], { after: 'server' })).toString('latin1')
  t.match(noHost, /\r\nConnection: close\r\n/i, 'the answer to a request without Host closes the connection')
  await gateway.logsSettled()
  const unreadable = gateway.logs.filter((line) => line.msg === 'unreadable request').map((line) => line.status)
  t.ok(unreadable.includes(417) && unreadable.includes(405), `the Expect and the CONNECT logged as unreadable requests (${unreadable.join(', ')})`)
  t.ok(gateway.logs.some((line) => line.status === 400 && line.error === 'REQUEST_INVALID' && line.op === undefined), 'the request without Host logged once, with its error')

  // 3. A PATCH that sends more bytes than its Content-Length (the rest is parsed as a broken next request).
  const before = await setup.registry.uploadsOpen('faults/over')
  for (let i = 0; i < 10; i++) {
    const location = await startUpload(client, 'faults/over')
    const declared = 256 * 1024
    const body = randomBytes(declared + 64 * 1024 + i * 1000)
    await rawExchange(port, [head('PATCH', location, { authorization: WRITER, 'content-type': 'application/octet-stream', 'content-length': declared }), body], { after: 'server' })
  }
  t.equal(gateway.child.exitCode, null, 'the gateway lives after 10 over-long PATCHes')
  t.same(before, [], 'no session open before')

  await stillServes(t, setup)
  t.equal(await internalErrors(gateway), 0, 'portier_internal_errors_total is 0: nothing failed in a way the gateway did not expect')
})

/** mulberry32: a seeded generator, so a failing run can be repeated with FAULTS_SEED. */
function generator(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let x = state
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

t.test('hundreds of aborts at random points of GETs, HEADs, PATCHes, PUTs, tags and catalog, on one connection and many', async (t) => {
  const setup = await setUp(t)
  const { gateway, client, registry } = setup
  const port = gateway.port
  const seed = Number(process.env.FAULTS_SEED ?? Math.floor(Math.random() * 2 ** 31))
  t.comment(`FAULTS_SEED=${seed}`)
  const random = generator(seed)
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T
  const below = (n: number): number => Math.floor(random() * n)

  const MAX_ABORTS = 300
  const deadline = Date.now() + 60_000
  const WORKERS = 6
  let aborts = 0
  /** Request id → upload session path, for PATCH/PUT faults: a session the gateway cancelled must be gone. */
  const uploads = new Map<string, string>()
  const upload = randomBytes(2 * MiB)
  const kinds = ['blob', 'blob-head', 'manifest', 'manifest-head', 'tags', 'catalog', 'patch', 'put', 'patch-over'] as const
  const points = ['headers', 'after-headers', 'mid-body', 'response'] as const

  async function oneFault(worker: number): Promise<void> {
    const kind = pick(kinds)
    const point = pick(points)
    const id = `fault-${worker}-${aborts}-${below(1e9)}`
    const common = { authorization: kind === 'catalog' || kind.startsWith('p') ? WRITER : READER, 'x-request-id': id }
    let request: Buffer
    let body = Buffer.alloc(0)
    switch (kind) {
      case 'blob':
        request = head('GET', `/v2/faults/data/blobs/${setup.blob.digest}`, common)
        break
      case 'blob-head':
        request = head('HEAD', `/v2/faults/data/blobs/${setup.blob.digest}`, common)
        break
      case 'manifest':
        request = head('GET', '/v2/faults/data/manifests/v1', { ...common, accept: 'application/vnd.oci.image.manifest.v1+json' })
        break
      case 'manifest-head':
        request = head('HEAD', '/v2/faults/data/manifests/v1', { ...common, accept: 'application/vnd.oci.image.manifest.v1+json' })
        break
      case 'tags':
        request = head('GET', '/v2/faults/data/tags/list', common)
        break
      case 'catalog':
        request = head('GET', '/v2/_catalog', common)
        break
      default: {
        const location = await startUpload(client, 'faults/up')
        uploads.set(id, location)
        body = upload.subarray(0, 64 * 1024 + below(upload.length - 64 * 1024))
        const declared = kind === 'patch-over' ? Math.floor(body.length / 2) : body.length
        const path = kind === 'put' ? `${location}&digest=${encodeURIComponent(sha256(body))}` : location
        request = head(kind === 'put' ? 'PUT' : 'PATCH', path, { ...common, 'content-type': 'application/octet-stream', 'content-length': declared })
      }
    }
    // One connection: complete requests pipelined before the one that is cut.
    const before = random() < 0.3 ? Array.from({ length: 1 + below(3) }, () => head('GET', '/v2/faults/data/tags/list', { authorization: READER })) : []
    const reset = random() < 0.5
    if (point === 'headers') {
      await rawExchange(port, [...before, request.subarray(0, 1 + below(request.length - 1))], random() < 0.5 ? { after: 'write' } : { after: 'ms', ms: below(20) }, reset)
    } else if (point === 'after-headers') {
      await rawExchange(port, [...before, request], random() < 0.5 ? { after: 'write' } : { after: 'ms', ms: below(30) }, reset)
    } else if (point === 'mid-body' && body.length > 0) {
      await rawExchange(port, [...before, request, body.subarray(0, below(body.length))], random() < 0.5 ? { after: 'write' } : { after: 'ms', ms: below(50) }, reset)
    } else {
      // After a random number of response bytes (a blob GET is 4 MiB: anywhere inside it).
      const size = kind === 'blob' ? setup.blob.size : 2000
      await rawExchange(port, [...before, request, body], { after: 'response-bytes', bytes: below(size) }, reset)
    }
    aborts += 1
  }

  async function worker(index: number, concurrent: boolean): Promise<void> {
    while (aborts < MAX_ABORTS && Date.now() < deadline && gateway.child.exitCode === null) {
      await oneFault(index)
      if (!concurrent) break
    }
  }

  // One at a time first (each fault alone on the gateway), then many connections at once.
  for (let i = 0; i < 60 && Date.now() < deadline && gateway.child.exitCode === null; i++) await worker(0, false)
  await Promise.all(Array.from({ length: WORKERS }, (_, index) => worker(index + 1, true)))
  t.comment(`aborts survived: ${aborts} (seed ${seed})`)
  t.ok(aborts >= 100, `at least 100 aborts ran (${aborts})`)
  t.equal(gateway.child.exitCode, null, `the gateway process lives after ${aborts} aborts`)
  t.equal(gateway.child.signalCode, null, 'and was not killed by a signal')

  await stillServes(t, setup)
  // A push through the same gateway still stores the right bytes.
  const data = randomBytes(MiB + 17)
  const digest = await pushBlob(client, 'faults/after', data)
  const back = await client.send('GET', `/v2/faults/after/blobs/${digest}`, { headers: { authorization: READER } })
  t.equal(sha256(back.body), sha256(data), 'a push after the faults stores the right bytes')
  t.equal(await internalErrors(gateway), 0, 'portier_internal_errors_total is 0')

  // Upload writes the gateway cancelled (the client left mid-body: 499) leave no session behind.
  await gateway.logsSettled()
  const cancelled = new Set<string>()
  for (const line of gateway.logs) {
    const id = typeof line.request_id === 'string' ? line.request_id : ''
    const location = uploads.get(id)
    if (location && line.status === 499 && (line.method === 'PATCH' || line.method === 'PUT')) {
      cancelled.add(new URL(location, 'https://x').pathname.split('/').pop() as string)
    }
  }
  t.comment(`upload writes cut mid-body and cancelled by the gateway: ${cancelled.size}`)
  const gone = await waitUntil(async () => (await registry.uploadsOpen('faults/up')).every((uuid) => !cancelled.has(uuid)), 10_000)
  t.ok(gone, 'no session the gateway cancelled is still open upstream')
  await sleep(0)
})

/**
 * A preload module (NODE_OPTIONS --import) that injects a fault into the real gateway process: when the gateway
 * sends upstream a request whose path names it, an error escapes every handler in that request's context.
 */
const FAULT_INJECTOR = `
import { subscribe } from 'node:diagnostics_channel'
subscribe('undici:request:create', ({ request }) => {
  if (request.path.includes('/crash/uncaught/')) setImmediate(() => { throw new Error('injected uncaught exception') })
  if (request.path.includes('/crash/rejection/')) setImmediate(() => { void Promise.reject(new Error('injected unhandled rejection')) })
})
`

t.test('last resort: an error nothing handled is logged with its request, then the gateway drains in-flight requests and exits 70', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-faults-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const injector = join(work, 'inject.mjs')
  await writeFile(injector, FAULT_INJECTOR)
  const env = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(injector).href}` }

  for (const kind of ['uncaught', 'rejection'] as const) {
    const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], server: { drain_timeout: '30s' } } })
    const client = new GatewayClient(gateway)
    t.teardown(() => client.close())
    const data = randomBytes(8 * MiB)
    const digest = await pushBlobOpen(client, 'faults/drain', data)

    // A download in flight when the fault happens. Its client reads slowly to the end, so the upstream
    // finishes while the last bytes still wait in the gateway's socket: the drain must not cut them off.
    let begun: () => void = () => undefined
    const started = new Promise<void>((resolve) => (begun = resolve))
    const download = new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = httpsRequest(client.options('GET', `/v2/faults/drain/blobs/${digest}`, {}, false), (res) => {
        begun()
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          res.pause()
          setTimeout(() => res.resume(), 2)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
    await started
    const requestId = `crash-${kind}-${randomBytes(4).toString('hex')}`
    const faulty = client.send('GET', `/v2/crash/${kind}/tags/list`, { headers: { 'x-request-id': requestId } }).catch((error: unknown) => error)
    const fatal = await gateway.waitForLog((line) => line.level === 60)
    t.match(fatal, { kind: kind === 'uncaught' ? 'uncaught_exception' : 'unhandled_rejection', request_id: requestId, method: 'GET', path: `/v2/crash/${kind}/tags/list` }, `${kind}: logged at fatal with the request it belonged to`)
    t.match(fatal.err, { message: `injected ${kind === 'uncaught' ? 'uncaught exception' : 'unhandled rejection'}` }, 'and the error')
    await faulty
    const got = await download
    t.equal(got.status, 200, `${kind}: the download in flight was drained, not cut`)
    t.equal(sha256(got.body), digest, 'with every byte')
    // It stops by itself: no signal from the test (bounded by drain_timeout + 5 s, then it exits anyway).
    const exitedAlone = await waitUntil(() => gateway.child.exitCode !== null || gateway.child.signalCode !== null, 40_000)
    t.ok(exitedAlone, `${kind}: the process ended without being told to`)
    if (!exitedAlone) t.comment(gateway.stderr().slice(-2000))
    const exit = await gateway.stop()
    t.same(exit, { code: 70, signal: null }, `${kind}: the process exits 70 (EX_SOFTWARE) by itself, for its supervisor to restart it`)
    t.match(gateway.stderr(), /portier: internal error/, 'and says so on stderr')
    t.ok(gateway.logs.some((line) => line.msg === 'stopped after an internal error; exit code 70'), 'after draining')
  }
})

/** POST + PUT ?digest= on a gateway without auth. */
async function pushBlobOpen(client: GatewayClient, repository: string, data: Buffer): Promise<string> {
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  const digest = sha256(data)
  const put = await client.send('PUT', `${client.pathOf(started.headers.location as string)}&digest=${encodeURIComponent(digest)}`, { body: data, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`blob push: ${put.status}`)
  return digest
}
