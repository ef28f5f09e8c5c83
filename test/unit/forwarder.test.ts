// The forwarder between a real HTTP client and MockAgent upstreams: reads fail over (connect error, 404 on a mirror) and say who served; an upload chunk past the limit is refused before a byte goes upstream, and its session cancelled.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { MockAgent, type MockPool } from 'undici'
import { classify } from '../../src/registry/classify.js'
import { RegistryError, sendRegistryError } from '../../src/registry/errors.js'
import { Forwarder, type Exchange, type ExchangeResult, type FailoverReason } from '../../src/forward/forward.js'
import type { SizeLimit } from '../../src/pipeline/limits.js'
import type { Upstream } from '../../src/upstreams/upstreams.js'

const client = { peer: '127.0.0.1', clientIp: '127.0.0.1', forwardedFor: '127.0.0.1', proto: 'http' as const, host: '127.0.0.1', publicOrigin: 'http://127.0.0.1' }

function upstreams(agent: MockAgent, names: string[]): Upstream[] {
  return names.map((name) => {
    const origin = `http://${name}.invalid`
    return { name, weight: 1, origin, forwardAuthorization: false, pool: agent.get<MockPool>(origin), healthPool: agent.get<MockPool>(origin) }
  })
}

/** A loopback server whose every request is one exchange through the forwarder; `result` resolves with what forward() returned (or threw). */
async function front(t: Test, exchangeFor: (req: IncomingMessage, res: ServerResponse) => Exchange): Promise<{ url: string; results: Array<ExchangeResult | RegistryError> }> {
  const forwarder = new Forwarder(() => undefined)
  const results: Array<ExchangeResult | RegistryError> = []
  const server = createServer((req, res) => {
    forwarder.forward(exchangeFor(req, res)).then(
      (result) => results.push(result),
      (error: unknown) => {
        const failure = error instanceof RegistryError ? error : new RegistryError('INTERNAL', { reason: String(error) })
        results.push(failure)
        req.resume()
        if (!res.headersSent) sendRegistryError(res, failure)
      },
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, results }
}

t.test('a read fails over on a refused connection and on a 404 from a mirror, and says who served', async (t) => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(() => agent.close())
  const [a, b, c] = upstreams(agent, ['a', 'b', 'c']) as [Upstream, Upstream, Upstream]
  const path = '/v2/team/app/manifests/v1'
  agent.get<MockPool>(a.origin).intercept({ path, method: 'GET' }).replyWithError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
  agent.get<MockPool>(b.origin).intercept({ path, method: 'GET' }).reply(404, { errors: [{ code: 'MANIFEST_UNKNOWN' }] })
  agent.get<MockPool>(c.origin).intercept({ path, method: 'GET' }).reply(200, 'the manifest', { headers: { 'docker-content-digest': 'sha256:abc' } })
  const failovers: Array<[string, string, FailoverReason]> = []
  const exchanges: Exchange[] = []
  const { url, results } = await front(t, (req, res) => {
    const exchange: Exchange = {
      request: classify('GET', path), req, res, client, upstream: a, limit: undefined, bytes: { received: 0, sent: 0 },
      fallbacks: [b, c], nextOnNotFound: true,
      onFailover: (from, to, reason) => failovers.push([from.name, to.name, reason]),
    }
    exchanges.push(exchange)
    return exchange
  })
  const answer = await fetch(`${url}${path}`)
  t.equal(answer.status, 200)
  t.equal(await answer.text(), 'the manifest', 'the body of the upstream that had it')
  t.equal(answer.headers.get('docker-content-digest'), 'sha256:abc')
  t.same(failovers, [['a', 'b', 'connect'], ['b', 'c', 'not_found']])
  t.match(results, [{ status: 200, served: 'c' }], 'the result names the upstream that served')
  t.equal(exchanges[0]?.upstream, a, 'the routed exchange itself is left as it was')
})

t.test('an upload chunk past the size limit: 413 before any byte is sent, and the session is cancelled', async (t) => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(() => agent.close())
  const [a] = upstreams(agent, ['a']) as [Upstream]
  const uuid = '3f1f2a43-6c35-4d0e-9a5b-3d1f0f0e8b11'
  // distribution's _state: a 32-byte HMAC, then the JSON with the offset the session holds (10 bytes).
  const state = Buffer.concat([Buffer.alloc(32, 1), Buffer.from(JSON.stringify({ Name: 'team/app', UUID: uuid, Offset: 10, StartedAt: '2026-01-01T00:00:00Z' }))]).toString('base64url')
  const sessionPath = `/v2/team/app/blobs/uploads/${uuid}?_state=${state}`
  const cancelled: string[] = []
  agent.get<MockPool>(a.origin).intercept({ path: (path) => path.startsWith(`/v2/team/app/blobs/uploads/${uuid}`), method: 'DELETE' }).reply((options) => {
    cancelled.push(options.path)
    return { statusCode: 204, data: '' }
  })
  const limit: SizeLimit = { name: 'blob_max_bytes', maxBytes: 16 }
  const { url, results } = await front(t, (req, res) => ({ request: classify('PATCH', sessionPath), req, res, client, upstream: a, limit, bytes: { received: 0, sent: 0 } }))
  const answer = await fetch(`${url}${sessionPath}`, { method: 'PATCH', body: Buffer.alloc(10, 0x61), headers: { 'content-type': 'application/octet-stream' } })
  t.equal(answer.status, 413)
  t.match(await answer.json(), { errors: [{ code: 'SIZE_INVALID', detail: { limit: 'blob_max_bytes', max_bytes: 16, bytes: 20 } }] }, '10 stored + 10 declared > 16')
  t.same(cancelled, [sessionPath], 'the session was cancelled with the state the client sent')
  t.match(results, [{ code: 'TOO_LARGE' }])

  const outOfOrder = await fetch(`${url}${sessionPath}`, { method: 'PATCH', body: Buffer.alloc(4, 0x61), headers: { 'content-range': '0-3' } })
  t.equal(outOfOrder.status, 416, 'a chunk that does not start at the stored offset')
  t.equal(outOfOrder.headers.get('range'), '0-9')
  t.match(results[1], { code: 'RANGE_INVALID' })
})
