// Connections that never finish a TLS handshake do not keep a place under server.max_connections for long, nor get an HTTP answer.
import t from 'tap'
import { connect } from 'node:net'
import { gatewayFixture } from '../helpers/gateway.js'

t.test('a stalled TLS handshake is closed after 10 s (Node would wait 120 s)', { timeout: 40_000 }, async (t) => {
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: 'http://127.0.0.1:9' }] } })
  const stalled = connect(gateway.port, '127.0.0.1')
  stalled.on('error', () => undefined)
  t.teardown(() => stalled.destroy())
  await new Promise((resolve) => stalled.once('connect', resolve))
  const started = Date.now()
  // The first bytes of a TLS handshake record, and then nothing.
  stalled.write(Buffer.from([0x16, 0x03, 0x01]))
  stalled.resume()
  await new Promise((resolve) => stalled.once('close', resolve))
  const waited = Date.now() - started
  // 10 s, not 10 + the 5 s an unread HTTP answer gets: a failed handshake is not answered in HTTP.
  t.ok(waited >= 9_000 && waited < 13_000, `closed by the gateway after ${waited} ms`)
  await gateway.logsSettled()
  t.notOk(gateway.logs.some((line) => line.msg === 'unreadable request'), 'and not logged as an unreadable request')
})
