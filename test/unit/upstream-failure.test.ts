// Failures to reach an upstream become registry errors that keep the underlying error as `cause` (the access log prints the chain).
import t from 'tap'
import { upstreamFailure } from '../../src/forward/failure.js'
import type { Upstream } from '../../src/upstreams/upstreams.js'

const upstream = { name: 'r1', origin: 'http://127.0.0.1:1' } as unknown as Upstream

t.test('refused, timed out and other failures: status, code and cause', async (t) => {
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' })
  const a = upstreamFailure(refused, upstream)
  t.equal(a.status, 503)
  t.equal(a.code, 'UNAVAILABLE')
  t.equal(a.cause, refused, 'the refused connection is the cause')

  const timeout = Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' })
  const b = upstreamFailure(timeout, upstream)
  t.equal(b.status, 504)
  t.equal(b.cause, timeout)

  const other = new Error('something else')
  const c = upstreamFailure(other, upstream)
  t.equal(c.status, 502)
  t.equal(c.cause, other)
})
