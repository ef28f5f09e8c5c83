// One client cannot starve everyone: fair share of upstream exchanges, the minimum transfer rate, the connection cap, health checks that never queue, and an upstream that stops answering.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { GatewayClient, MiB, sha256, sleep, waitUntil } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const ALICE = basic('alice', 'alice-password')
const BOB = basic('bob', 'bob-password')

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

async function scrape(gateway: GatewayHandle): Promise<string> {
  return await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
}

async function readyStatus(gateway: GatewayHandle): Promise<number> {
  return (await fetch(`${gateway.adminUrl as string}/readyz`)).status
}

/** htpasswd with alice and bob, both allowed everything. */
async function users(t: Test): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'portier-fair-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 4)}\nbob:${await hashPassword('bob-password', 4)}\n`)
  return htpasswd
}

/** POST + PUT ?digest= through the gateway; throws unless 201 with the right digest. */
async function pushBlob(client: GatewayClient, repository: string, data: Buffer, authorization?: string): Promise<string> {
  const headers = authorization ? { authorization } : {}
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`, { headers, timeoutMs: 20_000 })
  if (started.status !== 202) throw new Error(`upload start: ${started.status} ${started.body.toString()}`)
  const digest = sha256(data)
  const location = client.pathOf(started.headers.location as string)
  const put = await client.send('PUT', `${location}&digest=${encodeURIComponent(digest)}`, {
    body: data,
    headers: { ...headers, 'content-type': 'application/octet-stream' },
    timeoutMs: 20_000,
  })
  if (put.status !== 201 || put.headers['docker-content-digest'] !== digest) throw new Error(`blob push: ${put.status} ${put.body.toString()}`)
  return digest
}

/** A request the test keeps open: a PATCH that trickles its body, or a GET whose body is never read. */
interface SlowRequest {
  /** Settles with the status once response headers arrive (never, while the gateway holds it without answering). */
  answered: Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }>
  status: number | undefined
  /** Sends one more byte of a PATCH body. */
  trickle(): void
  /** Resolves when the connection is closed (by either side). */
  closed: Promise<void>
  /** Reads what is left of a held download: how many body bytes arrived and whether the body was whole. */
  drain(): Promise<{ bytes: number; complete: boolean }>
  destroy(): void
}

function slowRequest(client: GatewayClient, method: 'PATCH' | 'GET', path: string, headers: Record<string, string | number>): SlowRequest {
  const req = httpsRequest(client.options(method, path, headers, false))
  let status: number | undefined
  let response: IncomingMessage | undefined
  let resolveClosed: () => void = () => undefined
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve
  })
  const answered = new Promise<{ status: number; headers: IncomingMessage['headers']; body: Buffer }>((resolve) => {
    req.on('response', (res) => {
      response = res
      status = res.statusCode ?? 0
      res.on('error', () => undefined)
      res.on('close', resolveClosed)
      // A held download is never read: the gateway must be the one left waiting.
      if (method === 'GET' && status === 200) return resolve({ status, headers: res.headers, body: Buffer.alloc(0) })
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: status ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
    })
  })
  req.on('error', () => undefined)
  req.on('close', resolveClosed)
  if (method === 'PATCH') req.write('x')
  else req.end()
  return {
    answered,
    get status() {
      return status
    },
    trickle: () => {
      if (!req.destroyed && status === undefined) req.write('x')
    },
    closed,
    drain: () =>
      new Promise((resolve) => {
        const res = response
        if (!res) return resolve({ bytes: 0, complete: false })
        let bytes = 0
        let done = false
        const finish = (): void => {
          if (done) return
          done = true
          resolve({ bytes, complete: res.complete })
        }
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length
        })
        res.once('end', finish)
        res.once('close', finish)
        res.once('error', finish)
        res.resume()
      }),
    destroy: () => req.destroy(),
  }
}

/** Opens upload sessions (one POST each) and returns their paths. */
async function sessions(client: GatewayClient, repository: string, count: number, authorization?: string): Promise<string[]> {
  const paths: string[] = []
  for (let index = 0; index < count; index++) {
    const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`, { headers: authorization ? { authorization } : {}, timeoutMs: 20_000 })
    if (started.status !== 202) throw new Error(`upload start: ${started.status} ${started.body.toString()}`)
    paths.push(client.pathOf(started.headers.location as string))
  }
  return paths
}

/** Every second, one more byte on every slow PATCH still open; stops by itself after `maxSeconds`. */
function trickleEverySecond(requests: SlowRequest[], maxSeconds: number): () => void {
  let ticks = 0
  const timer = setInterval(() => {
    if (++ticks > maxSeconds) return clearInterval(timer)
    for (const request of requests) request.trickle()
  }, 1000)
  return () => clearInterval(timer)
}

t.test('one user with 140 slow requests holds only max_exchanges_per_user (32); the rest get 429; another user and the health checks carry on', async (t) => {
  const registry = await registryFixture(t)
  const htpasswd = await users(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'main' }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } },
      health: { interval: '500ms', timeout: '2s' },
      // Default fair share; the minimum rate would cut the trickles, which this test keeps on purpose.
      timeouts: { min_rate_grace: '10m' },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const blob = randomBytes(MiB)
  const blobDigest = await pushBlob(client, 'fair/data', blob, BOB)
  const big = randomBytes(16 * MiB)
  const bigDigest = await pushBlob(client, 'fair/data', big, BOB)

  // 100 PATCHes at 1 byte/s, then 40 downloads never read: 140 slow requests from alice.
  const paths = await sessions(client, 'fair/alice', 100, ALICE)
  const held: SlowRequest[] = []
  t.teardown(() => {
    for (const request of held) request.destroy()
  })
  const patches = paths.map((path) => slowRequest(client, 'PATCH', path, { authorization: ALICE, 'content-type': 'application/octet-stream', 'content-length': 1000 }))
  held.push(...patches)
  const stopTrickle = trickleEverySecond(patches, 90)
  t.teardown(stopTrickle)
  const refusedPatches = await waitUntil(() => patches.filter((request) => request.status === 429).length >= 68, 30_000)
  t.ok(refusedPatches, `68 of alice's 100 PATCHes are refused (got ${patches.filter((request) => request.status === 429).length})`)
  const downloads = Array.from({ length: 40 }, () => slowRequest(client, 'GET', `/v2/fair/data/blobs/${bigDigest}`, { authorization: ALICE }))
  held.push(...downloads)
  t.ok(await waitUntil(() => downloads.every((request) => request.status !== undefined), 30_000), 'every download of alice is answered')
  t.same(new Set(downloads.map((request) => request.status)), new Set([429]), 'all 40 downloads: 429, alice holds her share already')
  const refusal = await downloads[0]?.answered
  t.equal(refusal?.headers['content-type'], 'application/json; charset=utf-8')
  t.match(refusal?.headers['retry-after'], /^\d+$/, 'Retry-After')
  t.equal(refusal?.headers['docker-distribution-api-version'], 'registry/2.0')
  t.match(JSON.parse(refusal?.body.toString() || '{}'), { errors: [{ code: 'TOOMANYREQUESTS', detail: { limit: 'max_exchanges_per_user', max: 32 } }] })
  const holding = patches.filter((request) => request.status === undefined)
  t.equal(holding.length, 32, 'alice holds exactly 32 PATCHes open upstream')
  const inFlight = metric(await scrape(gateway), 'portier_upstream_requests_in_flight', { upstream: 'main' })
  t.ok(inFlight >= 32 && inFlight <= 33, `the upstream sees alice's 32 exchanges (in flight: ${inFlight}, a health check may be one more)`)
  // A request that goes upstream: GET /v2/ may be answered by the gateway itself while the upstream is healthy.
  const extra = await client.send('HEAD', `/v2/fair/data/blobs/${blobDigest}`, { headers: { authorization: ALICE }, timeoutMs: 20_000 })
  t.equal(extra.status, 429, 'even a small request of alice waits for her share')

  // Bob, from the same address, while alice's 32 exchanges are still held.
  const checksBefore = metric(await scrape(gateway), 'portier_upstream_health_checks_total', { upstream: 'main', result: 'success' })
  const bobStarted = Date.now()
  const base = await client.send('GET', '/v2/', { headers: { authorization: BOB }, timeoutMs: 20_000 })
  t.equal(base.status, 200, 'bob: GET /v2/ 200')
  const pulled = await client.send('GET', `/v2/fair/data/blobs/${blobDigest}`, { headers: { authorization: BOB }, timeoutMs: 20_000 })
  t.equal(pulled.status, 200, 'bob: blob GET 200')
  t.equal(sha256(pulled.body), blobDigest, 'bob: the bytes match the digest')
  const head = await client.send('HEAD', `/v2/fair/data/blobs/${bigDigest}`, { headers: { authorization: BOB }, timeoutMs: 20_000 })
  t.equal(head.headers['content-length'], String(big.length), 'bob: HEAD names the size')
  const pushed = randomBytes(2 * MiB)
  t.equal(await pushBlob(client, 'fair/bob', pushed, BOB), sha256(pushed), 'bob: an upload completes with its digest')
  // A figure for the notes, not an assertion: five requests and an upload of 2 MiB.
  t.comment(`bob's requests took ${Date.now() - bobStarted} ms in all while alice held her share`)
  t.equal(holding.filter((request) => request.status === undefined).length, 32, 'all of that while alice still held her 32')
  t.ok(
    await waitUntil(async () => metric(await scrape(gateway), 'portier_upstream_health_checks_total', { upstream: 'main', result: 'success' }) >= checksBefore + 2, 15_000),
    'health checks keep passing',
  )
  t.equal(await readyStatus(gateway), 200, '/readyz 200')
  t.equal(metric(await scrape(gateway), 'portier_limit_rejections_total', { limit: 'max_exchanges_per_user' }), 109, 'every refusal counted by its limit')

  // Alice lets go: her share comes back (each slot released once).
  stopTrickle()
  for (const request of held) request.destroy()
  t.ok(
    await waitUntil(async () => metric(await scrape(gateway), 'portier_upstream_requests_in_flight', { upstream: 'main' }) <= 1, 20_000),
    'alice\'s exchanges end upstream once she closes them',
  )
  const again = await Promise.all(Array.from({ length: 32 }, () => client.send('HEAD', `/v2/fair/data/blobs/${blobDigest}`, { headers: { authorization: ALICE }, timeoutMs: 20_000 })))
  t.same(new Set(again.map((reply) => reply.status)), new Set([200]), 'alice has her 32 slots again')
})

t.test('health checks never queue behind client requests, even with the upstream pool full of slow uploads', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'main' }],
      // A timeout long enough for a busy 2-core machine: a queued check never gets an answer at all.
      health: { interval: '500ms', timeout: '3s', failure_threshold: 2 },
      // No fair share and no minimum rate: the pool itself is what fills.
      limits: { per_client: { max_exchanges_per_user: 0, max_exchanges_per_address: 0 } },
      timeouts: { min_rate: 0 },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const paths = await sessions(client, 'fair/pool', 140)
  const patches = paths.map((path) => slowRequest(client, 'PATCH', path, { 'content-type': 'application/octet-stream', 'content-length': 1000 }))
  t.teardown(() => {
    for (const request of patches) request.destroy()
  })
  const stopTrickle = trickleEverySecond(patches, 60)
  t.teardown(stopTrickle)
  t.ok(
    await waitUntil(async () => metric(await scrape(gateway), 'portier_upstream_requests_in_flight', { upstream: 'main' }) >= 128, 30_000),
    'the 128 connections of the client pool are taken (12 more requests wait for one)',
  )
  const checksBefore = metric(await scrape(gateway), 'portier_upstream_health_checks_total', { upstream: 'main', result: 'success' })
  t.ok(
    await waitUntil(async () => metric(await scrape(gateway), 'portier_upstream_health_checks_total', { upstream: 'main', result: 'success' }) >= checksBefore + 3, 15_000),
    'health checks pass while the pool is full',
  )
  t.equal(await readyStatus(gateway), 200, '/readyz 200')
  t.same(patches.filter((request) => request.status !== undefined).map((request) => request.status), [], 'while every slow upload was still held')
  t.notOk(gateway.logs.some((line) => line.msg === 'upstream marked down'), 'the upstream was never marked down')
})

t.test('a transfer below timeouts.min_rate is cut after the grace: a slow upload gets 408 and is cancelled upstream, a stalled download is closed', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], timeouts: { min_rate: '1KiB', min_rate_grace: '1s', min_rate_window: '1s' } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  // A fast upload of 4 MiB is not affected.
  const data = randomBytes(4 * MiB)
  t.equal(await pushBlob(client, 'rate/fast', data), sha256(data), 'an ordinary upload completes')

  // An upload at 5 bytes/s.
  const [path] = await sessions(client, 'rate/slow', 1)
  t.same((await registry.uploadsOpen('rate/slow')).length, 1, 'the session is open upstream')
  const slow = slowRequest(client, 'PATCH', path as string, { 'content-type': 'application/octet-stream', 'content-length': 100_000, 'x-request-id': 'slow-upload' })
  t.teardown(() => slow.destroy())
  let sent = 0
  const trickle = setInterval(() => {
    if (++sent > 150) return clearInterval(trickle)
    slow.trickle()
  }, 200)
  t.teardown(() => clearInterval(trickle))
  const answer = await Promise.race([slow.answered, sleep(20_000).then(() => undefined)])
  clearInterval(trickle)
  t.equal(answer?.status, 408, 'the slow upload is answered 408')
  t.equal(answer?.headers.connection, 'close', 'and its connection closed')
  t.equal(answer?.headers['docker-distribution-api-version'], 'registry/2.0')
  t.match(JSON.parse(answer?.body.toString() || '{}'), { errors: [{ code: 'UNAVAILABLE', detail: { direction: 'request' } }] }, 'in the registry\'s JSON format')
  t.ok(await waitUntil(async () => (await registry.uploadsOpen('rate/slow')).length === 0, 10_000), 'the upload session is cancelled upstream')
  const cutLines = async (): Promise<number> => {
    await gateway.logsSettled()
    return gateway.logs.filter((line) => line.msg === 'transfer slower than timeouts.min_rate: connection closed' && line.request_id === 'slow-upload').length
  }
  t.equal(await cutLines(), 1, 'logged once')

  // A 32 MiB download the client never reads.
  const big = randomBytes(32 * MiB)
  const digest = await pushBlob(client, 'rate/big', big)
  const stalled = slowRequest(client, 'GET', `/v2/rate/big/blobs/${digest}`, { 'x-request-id': 'stalled-download' })
  t.teardown(() => stalled.destroy())
  t.equal((await stalled.answered).status, 200, 'the download starts')
  await gateway.waitForLog((line) => line.msg === 'transfer slower than timeouts.min_rate: connection closed' && line.request_id === 'stalled-download', 20_000)
  // What the kernel buffered still arrives, then the connection ends short of the Content-Length.
  const rest = await stalled.drain()
  t.notOk(rest.complete, `the client sees a broken download (${rest.bytes} of ${big.length} bytes), never a whole one`)
  t.ok(rest.bytes < big.length, 'short of the blob')
  await gateway.logsSettled()
  t.match(
    gateway.logs.filter((line) => line.msg === 'transfer slower than timeouts.min_rate: connection closed' && line.request_id === 'stalled-download'),
    [{ direction: 'response' }],
    'logged once, as a response too slow to be taken',
  )

  // Time spent waiting on the upstream never counts against the client.
  registry.kill('SIGSTOP')
  t.teardown(() => registry.kill('SIGCONT'))
  const waiting = client.send('GET', `/v2/rate/big/blobs/${digest}`, { timeoutMs: 30_000 })
  await sleep(3500)
  registry.kill('SIGCONT')
  const reply = await waiting
  t.equal(reply.status, 200, 'a download that waited 3.5 s on a stopped upstream (grace + window = 2 s) completes')
  t.equal(sha256(reply.body), digest, 'with every byte')
  const limitRejections = metric(await scrape(gateway), 'portier_limit_rejections_total', { limit: 'min_rate' })
  t.equal(limitRejections, 2, 'two cuts counted')
})

/** Sends one HTTP/1.1 request on an open TLS socket and reads one response (Content-Length bodies only). */
function exchange(socket: TLSSocket, path: string): Promise<{ status: number; headers: Record<string, string>; body: string; closed: Promise<void> }> {
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return new Promise((resolve, reject) => {
    let buffer = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buffer = Buffer.concat([buffer, chunk])
      const end = buffer.indexOf('\r\n\r\n')
      if (end < 0) return
      const [statusLine, ...lines] = buffer.subarray(0, end).toString('latin1').split('\r\n')
      const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
      const length = Number(headers['content-length'] ?? 0)
      if (buffer.length < end + 4 + length) return
      socket.off('data', onData)
      resolve({ status: Number(statusLine?.split(' ')[1]), headers, body: buffer.subarray(end + 4, end + 4 + length).toString(), closed })
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })
}

function openTls(gateway: GatewayHandle, ca: Buffer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: gateway.port, ca, servername: 'localhost' }, () => resolve(socket))
    socket.once('error', reject)
  })
}

t.test('past server.max_connections a new connection gets 503 UNAVAILABLE with Retry-After and is closed', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], server: { max_connections: 3 } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const ca = client.ca
  const open: TLSSocket[] = []
  t.teardown(() => {
    for (const socket of open) socket.destroy()
  })
  for (let index = 0; index < 3; index++) {
    const socket = await openTls(gateway, ca)
    open.push(socket)
    t.equal((await exchange(socket, '/v2/')).status, 200, `connection ${index + 1} of 3 is served`)
  }
  const fourth = await openTls(gateway, ca)
  open.push(fourth)
  const refused = await exchange(fourth, '/v2/')
  t.equal(refused.status, 503, 'the fourth connection: 503')
  t.match(refused.headers['retry-after'], /^\d+$/, 'Retry-After')
  t.equal(refused.headers.connection, 'close')
  t.equal(refused.headers['docker-distribution-api-version'], 'registry/2.0')
  t.match(JSON.parse(refused.body), { errors: [{ code: 'UNAVAILABLE', detail: { limit: 'max_connections', max: 3 } }] }, 'a JSON reason')
  t.ok(await Promise.race([refused.closed.then(() => true), sleep(10_000).then(() => false)]), 'and the gateway closes that connection')
  t.equal((await exchange(open[0] as TLSSocket, '/v2/')).status, 200, 'the connections within the cap keep being served')

  open[1]?.destroy()
  t.ok(
    await waitUntil(async () => {
      const socket = await openTls(gateway, ca)
      open.push(socket)
      const reply = await exchange(socket, '/v2/')
      return reply.status === 200
    }, 10_000),
    'once one closes, a new connection is served again',
  )
  t.equal(metric(await scrape(gateway), 'portier_limit_rejections_total', { limit: 'max_connections' }) >= 1, true, 'refusals counted')
})

t.test('an upstream that stops answering (SIGSTOP) is marked down and new requests get 503 at once; it recovers after SIGCONT', async (t) => {
  const registry: RegistryHandle = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    // upstream_headers stays at its 60 s default: without fail-fast a request would hang that long.
    config: { upstreams: [{ url: registry.url, name: 'main' }], health: { interval: '1s', timeout: '1s', failure_threshold: 2 } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  t.equal((await client.send('GET', '/v2/')).status, 200, 'served while the registry runs')
  t.ok(await waitUntil(async () => (await readyStatus(gateway)) === 200, 10_000), 'ready')

  registry.kill('SIGSTOP')
  let stopped = true
  t.teardown(() => {
    if (stopped) registry.kill('SIGCONT')
  })
  await gateway.waitForLog((line) => line.msg === 'upstream marked down' && line.upstream === 'main', 20_000)
  for (const [method, path] of [['GET', '/v2/'], ['GET', '/v2/stopped/app/manifests/v1'], ['POST', '/v2/stopped/app/blobs/uploads/']] as const) {
    const reply = await client.send(method, path, { timeoutMs: 10_000 })
    t.equal(reply.status, 503, `${method} ${path}: 503 while the registry is still stopped`)
    t.equal(reply.errorCode(), 'UNAVAILABLE')
    t.match(reply.headers['retry-after'], /^\d+$/, 'Retry-After')
  }
  t.equal(await readyStatus(gateway), 503, '/readyz 503')

  registry.kill('SIGCONT')
  stopped = false
  await gateway.waitForLog((line) => line.msg === 'upstream is back up' && line.upstream === 'main', 20_000)
  t.equal((await client.send('GET', '/v2/', { timeoutMs: 10_000 })).status, 200, 'served again')
  const manifest = await client.send('GET', '/v2/stopped/app/manifests/v1', { timeoutMs: 10_000 })
  t.equal(manifest.status, 404, 'the registry answers again (an unknown manifest)')
  t.equal(manifest.errorCode(), 'MANIFEST_UNKNOWN')
})
