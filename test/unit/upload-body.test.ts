// UploadBody, the client's upload body on its way upstream, over a real loopback HTTP connection: while the
// upstream side reads nothing, at most UPLOAD_QUEUE_BYTES (plus the chunk that crossed it) wait in the gateway
// and the rest stays in the kernel's socket buffers; every byte still arrives, in order. Past a size limit the
// body ends cleanly with the limit recorded.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { createServer, request, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { UPLOAD_QUEUE_BYTES, UploadBody } from '../../src/uploads/state.js'
import { sleep } from '../helpers/gwclient.js'

const CHUNK = 64 * 1024
const CHUNKS = 64 // 4 MiB: more than 1 MiB (the queue before), so a larger queue would fill past the bound
/** The most one 'data' event of the request can carry: one read of its socket (64 KiB since Node 22). */
const SOCKET_READ = 64 * 1024

const chunkAt = (index: number): Buffer => Buffer.alloc(CHUNK, index % 251)

function digestOf(chunks: number): string {
  const hash = createHash('sha256')
  for (let i = 0; i < chunks; i++) hash.update(chunkAt(i))
  return hash.digest('hex')
}

/** Starts a server whose handler gets each request; resolves with its port. Closed when the test ends. */
async function serve(t: Test, handler: (req: IncomingMessage, answer: (status: number) => void) => void): Promise<number> {
  const server: Server = createServer((req, res) => handler(req, (status) => res.writeHead(status).end()))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return (server.address() as AddressInfo).port
}

/** Sends `chunks` chunks as one PATCH body, writing on with backpressure; resolves with the status. */
function send(port: number, chunks: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'PATCH', path: '/', headers: { 'content-length': String(chunks * CHUNK) } }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    let index = 0
    const pump = (): void => {
      while (index < chunks) {
        if (!req.write(chunkAt(index++))) return void req.once('drain', pump)
      }
      req.end()
    }
    pump()
  })
}

t.test('a body nobody reads queues at most UPLOAD_QUEUE_BYTES in the gateway, then passes every byte in order', async (t) => {
  let queuedWhileIdle = -1
  let pausedWhileIdle = false
  let digest = ''
  let received = 0
  let counted = 0
  let handled: Promise<void> = Promise.resolve()
  const port = await serve(t, (req, answer) => {
    const body = new UploadBody(req, undefined, 0)
    handled = (async () => {
      // Nothing reads the body until the request has been paused and has stayed so for a while.
      const deadline = Date.now() + 30_000
      while (!req.isPaused() && Date.now() < deadline) await sleep(10)
      await sleep(300)
      pausedWhileIdle = req.isPaused()
      queuedWhileIdle = body.readableLength
      const hash = createHash('sha256')
      for await (const chunk of body as AsyncIterable<Buffer>) {
        hash.update(chunk)
        received += chunk.length
      }
      digest = hash.digest('hex')
      counted = body.bytes
      answer(201)
    })()
  })
  t.equal(await send(port, CHUNKS), 201)
  await handled
  t.ok(pausedWhileIdle, 'the client request is paused while the upstream side reads nothing')
  t.ok(queuedWhileIdle > 0, `the gateway queued ${queuedWhileIdle} bytes before pausing`)
  t.ok(queuedWhileIdle <= UPLOAD_QUEUE_BYTES + SOCKET_READ, `at most ${UPLOAD_QUEUE_BYTES} bytes plus one socket read are queued (${queuedWhileIdle})`)
  // 64 KiB is the measured choice (1 MiB raised the 16-upload peak RSS by 8–9 MB; BENCHMARKS.md, "Peak RSS").
  t.ok(queuedWhileIdle <= 64 * 1024 + SOCKET_READ, 'and that is no more than 64 KiB plus one socket read')
  t.equal(received, CHUNKS * CHUNK, 'every byte arrives')
  t.equal(counted, CHUNKS * CHUNK, 'and is counted')
  t.equal(digest, digestOf(CHUNKS), 'in order')
})

t.test('past the size limit the body ends cleanly and records the limit', async (t) => {
  const limit = { name: 'blob_max_bytes' as const, maxBytes: 1 << 20 }
  let body: UploadBody | undefined
  let received = 0
  let handled: Promise<void> = Promise.resolve()
  const port = await serve(t, (req, answer) => {
    const upload = new UploadBody(req, limit, 0)
    body = upload
    handled = (async () => {
      for await (const chunk of upload as AsyncIterable<Buffer>) received += chunk.length
      answer(413)
    })()
  })
  // The client may see the answer or, still writing when the server closes, a reset: either way the
  // assertions below are about what the gateway side let through.
  await send(port, 32).catch(() => 0)
  await handled
  t.equal(body?.stopped, 'limit', 'the body stopped for the limit')
  t.equal(body?.exceeded?.limit.maxBytes, 1 << 20)
  t.ok((body?.exceeded?.bytes ?? 0) > 1 << 20, `the byte count that crossed it is recorded (${body?.exceeded?.bytes})`)
  t.ok(received <= 1 << 20, `no more than the limit passed (${received})`)
  t.ok(received > (1 << 20) - SOCKET_READ, `everything up to the chunk that crossed it passed (${received})`)
  t.equal(body?.bytes, received, 'and was counted')
})
