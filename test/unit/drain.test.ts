// Closing a listener by draining: a response that has ended but whose bytes still wait for a slow reader
// is not cut; idle keep-alive connections are closed; the drain timeout cuts what is left.
import { createHash, randomBytes } from 'node:crypto'
import { createServer, request, Agent, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { closeServer, Connections } from '../../src/app/drain.js'
import { createLogger } from '../../src/observe/log.js'

const log = createLogger('silent')
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

function slowRead(res: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      res.pause()
      setTimeout(() => res.resume(), 1)
    })
    res.on('end', () => resolve(Buffer.concat(chunks)))
    res.on('error', reject)
  })
}

t.test('a response that has ended but still sits in the socket buffer reaches a slow reader whole', async (t) => {
  const body = randomBytes(4 * 1024 * 1024)
  let ended: () => void = () => undefined
  const endedNow = new Promise<void>((resolve) => (ended = resolve))
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Length': String(body.length) })
    res.end(body)
    ended()
  })
  const connections = new Connections(server, false)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const got = new Promise<Buffer>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/' }, (res) => void slowRead(res).then(resolve, reject))
    req.on('error', reject)
    req.end()
  })
  await endedNow
  // Ended, and megabytes still buffered: Node's closeIdleConnections() would destroy this connection now.
  const closed = closeServer(server, connections, 30_000, log)
  const data = await got
  t.equal(data.length, body.length, 'every byte')
  t.equal(sha256(data), sha256(body))
  await closed
  t.equal(server.listening, false)
})

t.test('an idle keep-alive connection is closed by the drain; the timeout cuts a response that never ends', async (t) => {
  let hang: (() => void) | undefined
  const server = createServer((req, res) => {
    if (req.url === '/hang') {
      res.writeHead(200)
      res.write('part')
      hang = () => res.destroy()
      return
    }
    res.end('ok')
  })
  server.keepAliveTimeout = 60_000
  const connections = new Connections(server, false)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const order: string[] = []
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  // Wrapped: a promise resolved with a promise would wait for it (the socket's close) before the drain began.
  const { closed: idleClosed } = await new Promise<{ closed: Promise<void> }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume()
      res.on('end', () => resolve({ closed: closedSocket }))
    })
    const closedSocket = new Promise<void>((closedResolve) => req.once('socket', (socket) => socket.once('close', () => {
      order.push('idle closed')
      closedResolve()
    })))
    req.on('error', reject)
    req.end()
  })
  const hanging = new Promise<string>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/hang' }, (res) => {
      res.on('data', () => undefined)
      res.on('error', () => resolve('cut'))
      res.on('end', () => resolve('ended'))
    })
    req.on('error', () => resolve('cut'))
    req.on('close', () => order.push('hanging closed'))
    req.end()
  })
  await new Promise((resolve) => setTimeout(resolve, 100))
  const started = Date.now()
  const closed = closeServer(server, connections, 1000, log)
  await idleClosed
  t.equal(await hanging, 'cut', 'the response that never ends is cut at the drain timeout')
  t.same(order, ['idle closed', 'hanging closed'], 'the idle keep-alive connection was closed by the drain, before the timeout')
  await closed
  t.ok(Date.now() - started >= 900, 'not before the timeout')
  hang?.()
})
