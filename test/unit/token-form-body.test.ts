// The token endpoint's form limit with a body streamed past it: the client reads the 413 (the request is drained, not destroyed under the answer).
import t from 'tap'
import { createServer, request, type Server } from 'node:http'
import { createIssuer, createTokenEndpoint, generateTokenKey, loadTokenKey, type TokenKey } from '../../src/auth/token/index.js'

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return address.port
}

/** POSTs `total` bytes of form in 64 KiB chunks, paced by backpressure; the status and body the server answered, or the transport error. */
function postLarge(port: number, total: number): Promise<{ status?: number; body?: string; error?: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/auth/token', headers: { 'content-type': 'application/x-www-form-urlencoded' } })
    let answered = false
    req.on('response', (res) => {
      answered = true
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }))
      res.on('error', (error) => resolve({ status: res.statusCode, error: error.message }))
    })
    // Writes after the server closed its side fail; only an error before any answer is the result.
    req.on('error', (error) => {
      if (!answered) resolve({ error: error.message })
    })
    const chunk = Buffer.alloc(64 * 1024, 'a')
    let sent = 0
    const pump = (): void => {
      while (sent < total && !req.destroyed) {
        sent += chunk.length
        if (!req.write(chunk)) {
          req.once('drain', pump)
          return
        }
      }
      if (!req.destroyed) req.end()
    }
    pump()
  })
}

t.test('a 4 MiB form against the 16 KiB limit gets 413 with the token error body', async (t) => {
  const dir = t.testdir()
  generateTokenKey(dir, { bits: 2048 })
  const key: TokenKey = loadTokenKey(`${dir}/token.key`, `${dir}/token.crt`)
  const issuer = createIssuer({ key, issuer: 'portier-test', service: 'registry.test' })
  const endpoint = createTokenEndpoint({
    issuer,
    allowAnonymous: true,
    authenticate: async () => false,
    grant: () => [],
  })
  const server = createServer((req, res) => void endpoint(req, res, '127.0.0.1'))
  const port = await listen(server)
  t.teardown(() => server.close())
  const result = await postLarge(port, 4 * 1024 * 1024)
  t.equal(result.error, undefined, 'no connection reset before the answer')
  t.equal(result.status, 413)
  t.match(result.body ?? '', /too large/)
})
