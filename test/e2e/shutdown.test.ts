// SIGTERM drains: an upload in flight completes, new connections are refused, the process exits 0.
import t from 'tap'
import { connect } from 'node:net'
import { request as httpsRequest } from 'node:https'
import { readFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'

const MiB = 1024 * 1024

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('error', () => resolve(true))
  })
}

t.test('SIGTERM lets an in-flight upload finish, refuses new connections and exits 0', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], server: { drain_timeout: '20s' } } })
  const ca = readFileSync(gateway.caFile)

  const start = await fetch(`${registry.url}/v2/drain/test/blobs/uploads/`, { method: 'POST' })
  await start.arrayBuffer()
  t.equal(start.status, 202, "upload session opened")
  // The session URL, as the gateway would have given it: same path and query, gateway origin.
  const session = new URL(start.headers.get('location') as string, registry.url)
  const chunks = Array.from({ length: 12 }, () => randomBytes(MiB / 2))
  const digest = `sha256:${createHash('sha256').update(Buffer.concat(chunks)).digest('hex')}`

  const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: gateway.port,
        method: 'PUT',
        path: `${session.pathname}${session.search}&digest=${digest}`,
        ca,
        headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
      },
      (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      },
    )
    req.on('error', reject)
    // Trickle the body over ~1.2 s so that SIGTERM arrives mid-upload.
    let index = 0
    const timer = setInterval(() => {
      const chunk = chunks[index++]
      if (chunk) req.write(chunk)
      else {
        clearInterval(timer)
        req.end()
      }
    }, 100)
  })

  await new Promise((r) => setTimeout(r, 300))
  const exited = gateway.stop()
  await gateway.waitForLog((line) => line.msg.startsWith('shutting down'))
  await new Promise((r) => setTimeout(r, 100))
  t.ok(await refused(gateway.port), 'new connections are refused while draining')

  const result = await answered
  t.equal(result.status, 201, `the in-flight upload completed (${result.body})`)
  const { code } = await exited
  t.equal(code, 0, 'the gateway exits 0 after draining')

  const head = await fetch(`${registry.url}/v2/drain/test/blobs/${digest}`, { method: 'HEAD' })
  t.equal(head.status, 200, 'the blob is in the registry')
  t.equal(head.headers.get("content-length"), String(6 * MiB), "with all 6 MiB")
})

t.test('SIGTERM: a connection that never says a word (no TLS handshake) is closed at the drain timeout, not waited for', async (t) => {
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: 'http://127.0.0.1:9' }], server: { drain_timeout: '1s' } } })
  const silent = connect(gateway.port, '127.0.0.1')
  silent.on('error', () => undefined)
  t.teardown(() => silent.destroy())
  await new Promise((resolve) => silent.once('connect', resolve))
  const started = Date.now()
  // stop() sends SIGTERM and falls back to SIGKILL after 10 s.
  const result = await gateway.stop()
  t.same(result, { code: 0, signal: null }, 'the gateway exits by itself')
  t.ok(Date.now() - started < 5000, `within the drain timeout and a little (${Date.now() - started} ms)`)
})
