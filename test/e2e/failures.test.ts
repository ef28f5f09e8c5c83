// Failures on either side: client aborts mid-upload, upstream killed mid-download, upstream down or silent; the client always learns the truth.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { refusedOrigin } from '../helpers/ports.js'
import { GatewayClient, MiB, sleep, waitUntil } from '../helpers/gwclient.js'

/** Pushes `size` random bytes straight to the registry (plain HTTP, one PUT) and returns the digest. */
async function pushDirect(registryUrl: string, repository: string, size: number): Promise<string> {
  const started = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') as string, registryUrl)
  const pieces: Buffer[] = []
  const hash = createHash('sha256')
  for (let left = size; left > 0; left -= MiB) {
    const piece = randomBytes(Math.min(MiB, left))
    hash.update(piece)
    pieces.push(piece)
  }
  const digest = `sha256:${hash.digest('hex')}`
  location.searchParams.set('digest', digest)
  await new Promise<void>((resolve, reject) => {
    const req = httpRequest(location, { method: 'PUT', headers: { 'content-length': size } }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`direct push: ${res.statusCode}`))))
    })
    req.on('error', reject)
    const write = (): void => {
      while (pieces.length > 0) {
        if (!req.write(pieces.shift() as Buffer)) return void req.once('drain', write)
      }
      req.end()
    }
    write()
  })
  return digest
}

t.test('a client that aborts mid-upload leaves no upload session behind', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  for (const declared of [true, false]) {
    const repository = declared ? 'abort/declared' : 'abort/chunked'
    const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
    t.equal(started.status, 202, `${repository}: upload started`)
    const uuid = started.headers['docker-upload-uuid'] as string
    const location = client.pathOf(started.headers.location as string)
    const dataFile = join(registry.storageDir, 'docker/registry/v2/repositories', repository, '_uploads', uuid, 'data')

    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' }
    if (declared) headers['content-length'] = 64 * MiB
    else headers['transfer-encoding'] = 'chunked'
    const req = httpsRequest(client.options('PATCH', location, headers, false))
    let answered = false
    req.on('response', () => {
      answered = true
    })
    req.on('error', () => undefined)
    const piece = randomBytes(MiB)
    for (let i = 0; i < 4; i++) {
      req.write(piece)
      await sleep(30)
    }
    // Only abort once the bytes are really arriving at the registry: a true mid-upload abort.
    const arriving = await waitUntil(async () => (await stat(dataFile).catch(() => ({ size: 0 }))).size >= MiB, 5000)
    t.ok(arriving, `${repository}: bytes reached the registry's session before the abort`)
    t.same(await registry.uploadsOpen(repository), [uuid], 'the session is open while the client streams')
    req.destroy()

    const cancelled = await waitUntil(async () => (await registry.uploadsOpen(repository)).length === 0, 5000)
    t.ok(cancelled, `${repository}: the session is cancelled upstream after the abort`)
    t.notOk(answered, 'the client got no answer (it left)')
    const status = await client.send('GET', location)
    t.equal(status.status, 404, 'the session is unknown afterwards')
    t.equal(status.errorCode(), 'BLOB_UPLOAD_UNKNOWN')
    const line = await gateway.waitForLog((l) => l.repository === repository && l.method === 'PATCH')
    t.equal(line.status, 499, 'the gateway logs the abort as 499')
  }
})

t.test('an upstream killed mid-download never looks like a complete 200 to the client', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const size = 200 * MiB
  const digest = await pushDirect(registry.url, 'crash/big', size)

  const outcome = await new Promise<{ status: number; length: string | undefined; received: number; ended: boolean; errored: string | undefined; complete: boolean }>((resolve, reject) => {
    const req = httpsRequest(client.options('GET', `/v2/crash/big/blobs/${digest}`, {}, false), (res: IncomingMessage) => {
      let received = 0
      let ended = false
      let errored: string | undefined
      let killed = false
      res.on('data', (chunk: Buffer) => {
        received += chunk.length
        if (!killed && received >= 16 * MiB) {
          killed = true
          res.pause()
          registry.kill('SIGKILL')
          void registry.exited().then(() => setTimeout(() => res.resume(), 200))
        }
      })
      res.on('end', () => {
        ended = true
      })
      res.on('aborted', () => {
        errored ??= 'aborted'
      })
      res.on('error', (error) => {
        errored ??= error.message
      })
      res.on('close', () => resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'], received, ended, errored, complete: res.complete }))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(outcome.status, 200, 'the download started as a 200')
  t.equal(outcome.length, String(size), 'with the full Content-Length')
  t.ok(outcome.received < size, `the client got ${(outcome.received / MiB).toFixed(1)} MiB of ${size / MiB} MiB`)
  t.notOk(outcome.ended, 'the response never ended normally')
  t.notOk(outcome.complete, 'the response is marked incomplete')
  t.ok(outcome.errored, `the client saw an error (${outcome.errored})`)
  const line = await gateway.waitForLog((l) => l.op === 'blob.get' && l.repository === 'crash/big')
  t.ok(line.error, `the gateway logs the broken transfer (${String(line.error)})`)
})

t.test('an upstream that is down answers 503 UNAVAILABLE with Retry-After', async (t) => {
  const refused = await refusedOrigin()
  t.teardown(refused.release)
  const nowhere = await gatewayFixture(t, { config: { upstreams: [{ url: refused.url }] } })
  const registry = await registryFixture(t)
  const stopped = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const nowhereClient = new GatewayClient(nowhere)
  const stoppedClient = new GatewayClient(stopped)
  t.teardown(() => {
    nowhereClient.close()
    stoppedClient.close()
  })

  const warm = await stoppedClient.send('GET', '/v2/')
  t.equal(warm.status, 200, 'the gateway reached the registry while it ran')
  await registry.stop()

  for (const [name, client] of [['closed port', nowhereClient], ['stopped registry', stoppedClient]] as const) {
    for (const [method, path] of [['GET', '/v2/'], ['GET', '/v2/down/app/tags/list'], ['POST', '/v2/down/app/blobs/uploads/'], ['HEAD', '/v2/down/app/manifests/v1']]) {
      const reply = await client.send(method as string, path as string)
      t.equal(reply.status, 503, `${name}: ${method} ${path} → 503`)
      t.match(reply.headers['retry-after'], /^\d+$/, 'Retry-After in seconds')
      t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0')
      if (method !== 'HEAD') t.equal(reply.errorCode(), 'UNAVAILABLE', 'JSON code UNAVAILABLE')
    }
  }
})

t.test('an upstream that accepts but never answers gets a 504 after timeouts.upstream_headers', async (t) => {
  const sockets = new Set<Socket>()
  const silent = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => undefined)
    socket.resume()
  })
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    silent.close()
  })
  const port = (silent.address() as { port: number }).port
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: `http://127.0.0.1:${port}` }], timeouts: { upstream_headers: '1s' } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  const started = Date.now()
  const reply = await client.send('GET', '/v2/silent/app/manifests/v1', { timeoutMs: 15_000 })
  const ms = Date.now() - started
  t.equal(reply.status, 504, '504')
  t.ok(ms >= 900 && ms < 5000, `after about a second (${ms} ms)`)
  t.equal(reply.errorCode(), 'UNAVAILABLE', 'JSON code UNAVAILABLE')
  t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0')
  t.ok(sockets.size >= 1, 'the request did reach the silent upstream')
})

t.test('an upstream that drops the connection before answering gets a 502', async (t) => {
  const rude = createServer((socket) => socket.destroy())
  await new Promise<void>((resolve) => rude.listen(0, '127.0.0.1', resolve))
  t.teardown(() => rude.close())
  const port = (rude.address() as { port: number }).port
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: `http://127.0.0.1:${port}` }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const reply = await client.send('GET', '/v2/')
  t.equal(reply.status, 502, '502')
  t.equal(reply.errorCode(), 'UNAVAILABLE', 'JSON code UNAVAILABLE')
  t.match(reply.headers['retry-after'], /^\d+$/, 'Retry-After')
})
