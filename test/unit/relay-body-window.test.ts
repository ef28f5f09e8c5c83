// relayBody's backpressure on the runtime's socket buffers: Node 22 raised the default stream highWaterMark
// from 16 to 64 KiB, and a server may set its own. The relay must stop reading the upstream while the client
// does not read (memory stays bounded), and must always resume: pausing while write() still returned true
// would wait for a 'drain' that never comes.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { createServer, get, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { getDefaultHighWaterMark } from 'node:stream'
import { relayBody } from '../../src/forward/relay-body.js'

const CHUNK = 64 * 1024
const CHUNKS = 512 // 32 MiB: more than the loopback socket's kernel buffers hold, so the gateway's own queue fills

function chunkAt(index: number): Buffer {
  return Buffer.alloc(CHUNK, index % 251)
}

const expected = (() => {
  const hash = createHash('sha256')
  for (let i = 0; i < CHUNKS; i++) hash.update(chunkAt(i))
  return hash.digest('hex')
})()

interface Relayed {
  digest: string
  received: number
  counted: number
  maxQueued: number
  highWaterMark: number
  pausedWhileClientIdle: boolean
}

/**
 * Serves CHUNKS chunks through relayBody to one client that reads nothing until the relay has paused the
 * source (or the source is exhausted), then reads everything. Bounded: fails after 60 s instead of hanging.
 */
async function relayThrough(t: Test, serverOptions: { highWaterMark?: number }): Promise<Relayed> {
  let counted = 0
  let maxQueued = 0
  let highWaterMark = 0
  let pausedWhileClientIdle = false
  let release: () => void = () => undefined
  const clientMayRead = new Promise<void>((resolve) => (release = resolve))
  const server: Server = createServer(serverOptions, (req, res) => {
    highWaterMark = res.writableHighWaterMark
    let index = 0
    const body = new Readable({
      read() {
        if (index === CHUNKS) {
          release()
          this.push(null)
        } else this.push(chunkAt(index++))
      },
    })
    body.on('pause', () => {
      pausedWhileClientIdle = true
      release()
    })
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    relayBody(body, res, (count) => (counted += count)).catch((error: unknown) => t.fail(String(error)))
    // Added after relayBody's own listener: sees the queue right after each chunk was written.
    body.on('data', () => {
      maxQueued = Math.max(maxQueued, res.writableLength)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as AddressInfo

  const result = new Promise<{ digest: string; received: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      request.destroy()
      reject(new Error('the relay stalled: no complete body within 60 s'))
    }, 60_000)
    const request = get({ host: '127.0.0.1', port, path: '/' }, (res) => {
      res.pause()
      const hash = createHash('sha256')
      let received = 0
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        received += chunk.length
      })
      res.on('end', () => {
        clearTimeout(timer)
        resolve({ digest: hash.digest('hex'), received })
      })
      res.on('error', reject)
      void clientMayRead.then(() => res.resume())
    }).on('error', reject)
  })
  const { digest, received } = await result
  return { digest, received, counted, maxQueued, highWaterMark, pausedWhileClientIdle }
}

t.test('default socket buffers (64 KiB since Node 22): the relay pauses the source and completes', async (t) => {
  t.equal(getDefaultHighWaterMark(false), 64 * 1024, 'this runtime’s default stream highWaterMark')
  const r = await relayThrough(t, {})
  t.equal(r.highWaterMark, 64 * 1024)
  t.equal(r.received, CHUNKS * CHUNK)
  t.equal(r.digest, expected, 'same bytes, in order')
  t.equal(r.counted, CHUNKS * CHUNK, 'onBytes counted every byte')
  t.ok(r.pausedWhileClientIdle, 'the source was paused while the client read nothing')
  t.ok(r.maxQueued < 256 * 1024 + CHUNK, `at most WINDOW + one chunk queued towards the client (${r.maxQueued})`)
})

t.test('a socket highWaterMark above the relay window: still completes (no pause that waits for a drain never due)', async (t) => {
  const r = await relayThrough(t, { highWaterMark: 1024 * 1024 })
  t.equal(r.highWaterMark, 1024 * 1024)
  t.equal(r.received, CHUNKS * CHUNK)
  t.equal(r.digest, expected, 'same bytes, in order')
  t.equal(r.counted, CHUNKS * CHUNK)
  t.ok(r.pausedWhileClientIdle, 'the source was paused while the client read nothing')
  t.ok(r.maxQueued < 1024 * 1024 + CHUNK, `at most the socket's highWaterMark + one chunk queued (${r.maxQueued})`)
})
