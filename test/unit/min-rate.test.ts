// The minimum transfer rate on real loopback sockets: a trickling client is cut, a client the server keeps waiting is not.
import t, { type Test } from 'tap'
import { createServer, request, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createMinRate, type SlowTransfer } from '../../src/pipeline/min-rate.js'

const timeouts = { upstream_connect: 10_000, upstream_headers: 60_000, body_idle: 300_000, min_rate: 1024, min_rate_grace: 500, min_rate_window: 1000 }

/** A server whose handler watches each request and then does what `serve` says; returns the port and every slow transfer reported. */
async function serverWith(t: Test, serve: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ port: number; slow: SlowTransfer[] }> {
  const minRate = createMinRate(timeouts)
  if (!minRate) throw new Error('min rate should be on')
  const slow: SlowTransfer[] = []
  const server = createServer((req, res) => {
    const stop = minRate.watch(req, res, (transfer) => slow.push(transfer))
    res.once('close', stop)
    serve(req, res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  return { port: (server.address() as AddressInfo).port, slow }
}

function answer(req: ClientRequest): Promise<{ status: number; body: string } | 'closed'> {
  return new Promise((resolve) => {
    req.on('error', () => resolve('closed'))
    req.on('close', () => resolve('closed'))
    req.on('response', (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => {
        body += chunk.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', () => resolve('closed'))
    })
  })
}

t.test('a request body at 5 bytes/s (min 1 KiB/s) gets 408 after grace + one window, reported once', async (t) => {
  const { port, slow } = await serverWith(t, (req) => {
    // The "upstream" takes whatever arrives.
    req.resume()
  })
  const req = request({ host: '127.0.0.1', port, method: 'PATCH', path: '/', headers: { 'content-length': 10_000 } })
  const answered = answer(req)
  let sent = 0
  const timer = setInterval(() => {
    if (++sent > 50 || req.destroyed) return clearInterval(timer)
    req.write('x')
  }, 200)
  t.teardown(() => clearInterval(timer))
  const result = await answered
  clearInterval(timer)
  t.not(result, 'closed', 'the client gets an answer, not just a closed connection')
  if (result === 'closed') return
  t.equal(result.status, 408)
  t.match(JSON.parse(result.body), { errors: [{ code: 'UNAVAILABLE', detail: { direction: 'request' } }] })
  t.equal(slow.length, 1, 'reported once')
  t.match(slow[0], { direction: 'request', needed: 1024 })
  t.ok((slow[0]?.bytes ?? Infinity) < 1024, 'fewer bytes than one window needs')
})

t.test('a request body the server is not reading (backpressure from upstream) is never judged', async (t) => {
  const { port, slow } = await serverWith(t, (req, res) => {
    // The "upstream" is stuck for 3 s (grace + 2 windows), then takes the body and answers.
    req.pause()
    setTimeout(() => {
      req.resume()
      req.on('end', () => res.end('done'))
    }, 3000)
  })
  const req = request({ host: '127.0.0.1', port, method: 'PATCH', path: '/', headers: { 'content-length': 4 } })
  const answered = answer(req)
  req.end('abcd')
  const result = await answered
  t.same(result, { status: 200, body: 'done' }, 'the request completes')
  t.same(slow, [], 'nothing reported')
})

t.test('a response the client does not read is cut; a response the server produces slowly is not', async (t) => {
  const big = Buffer.alloc(32 * 1024 * 1024)
  const { port, slow } = await serverWith(t, (req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'content-length': big.length })
      res.end(big)
      return
    }
    // A slow "upstream": 3 bytes a second for 3 s, the client reads everything at once.
    res.writeHead(200, { 'content-length': 9 })
    let parts = 0
    const timer = setInterval(() => {
      res.write('abc')
      if (++parts === 3) {
        clearInterval(timer)
        res.end()
      }
    }, 1000)
    res.once('close', () => clearInterval(timer))
  })
  const trickled = await answer(request({ host: '127.0.0.1', port, path: '/slow-upstream' }).end())
  t.same(trickled, { status: 200, body: 'abcabcabc' }, 'a slow producer is not the client\'s fault')

  const stalled = await new Promise<{ complete: boolean }>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/big' }, (res) => {
      res.pause()
      // Read what arrived once the server has given up, then see whether the body was whole.
      const check = setInterval(() => {
        if (slow.length === 0) return
        clearInterval(check)
        res.on('end', () => resolve({ complete: res.complete }))
        res.on('close', () => resolve({ complete: res.complete }))
        res.on('error', () => resolve({ complete: false }))
        res.resume()
      }, 100)
    })
    req.on('error', () => resolve({ complete: false }))
    req.end()
  })
  t.notOk(stalled.complete, 'the unread download is cut short')
  t.match(slow, [{ direction: 'response' }], 'reported once, as a response')
})

t.test('min_rate 0 turns the watch off', async (t) => {
  t.equal(createMinRate({ ...timeouts, min_rate: 0 }), undefined)
})
