// relayBody against a real HTTP server and client: a body that errors after it was destroyed (as undici's does) must not crash the process.
import t from 'tap'
import { createServer, request, type Server } from 'node:http'
import { Readable } from 'node:stream'
import { ClientGone, relayBody } from '../../src/forward/relay-body.js'

/**
 * Like undici's BodyReadable: destroying it without an error still fails it, asynchronously
 * (RequestAbortedError), after whoever destroyed it may have stopped listening.
 */
class AbortingBody extends Readable {
  sent = 0
  constructor(private readonly total: number) {
    super({ highWaterMark: 16 * 1024 })
  }

  override _read(): void {
    // Slow enough that the client leaves mid-body.
    setTimeout(() => {
      if (this.destroyed) return
      if (this.sent >= this.total) return void this.push(null)
      this.sent += 16 * 1024
      this.push(Buffer.alloc(16 * 1024, 0x61))
    }, 2)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    setImmediate(callback, error ?? Object.assign(new Error('Request aborted'), { code: 'UND_ERR_ABORTED' }))
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

t.test('a client that leaves mid-body: relayBody rejects with ClientGone and the body error that follows the destroy is handled', async (t) => {
  const body = new AbortingBody(8 * 1024 * 1024)
  const bodyClosed = new Promise<void>((resolve) => body.once('close', resolve))
  let relayed: Promise<unknown> | undefined
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    relayed = relayBody(body, res, () => undefined).then(() => 'resolved', (error: unknown) => error)
  })
  t.teardown(() => server.close())
  const port = await listen(server)
  await new Promise<void>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
      let seen = 0
      res.on('data', (chunk: Buffer) => {
        seen += chunk.length
        // Leave after some of the body: the relay is in the middle of it.
        if (seen >= 64 * 1024) req.destroy()
      })
      res.on('error', () => undefined)
      res.on('close', resolve)
    })
    req.on('error', () => undefined)
    req.end()
  })
  t.ok((await relayed) instanceof ClientGone, 'the relay ends with ClientGone')
  // The body's own error is emitted only now, a tick after the destroy: without a listener it is an uncaught exception.
  await bodyClosed
  t.ok(body.destroyed, 'the upstream body was destroyed')
  t.ok(body.errored, 'and failed after the relay had let go of it')
  await new Promise((resolve) => setImmediate(resolve))
})

t.test('a body that fails mid-transfer breaks the client response and rejects with its error', async (t) => {
  const body = new Readable({ read() {} })
  let relayed: Promise<unknown> | undefined
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': '1000' })
    relayed = relayBody(body, res, () => undefined).then(() => 'resolved', (error: unknown) => error)
    body.push(Buffer.alloc(100))
    setTimeout(() => body.destroy(new Error('upstream reset')), 10)
  })
  t.teardown(() => server.close())
  const port = await listen(server)
  const outcome = await new Promise<string>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => {
      res.resume()
      res.on('end', () => resolve('complete'))
      res.on('error', () => resolve('broken'))
      res.on('aborted', () => resolve('broken'))
    })
    req.on('error', () => resolve('broken'))
    req.end()
  })
  t.equal(outcome, 'broken', 'the client sees a broken transfer, never a short 200')
  t.match(await relayed, { message: 'upstream reset' }, 'the relay rejects with the body error')
})
