// Requests Node's parser cannot read: the registry's JSON error, and nothing left behind once the connection closes.
import t from 'tap'
import { Duplex } from 'node:stream'
import { answerClientError } from '../../src/app/client-error.js'
import type { Logger } from '../../src/observe/log.js'

const log = { info: () => undefined, debug: () => undefined } as unknown as Logger

/** A connection that records what is written to it. */
function recordingSocket(): { socket: Duplex; written: () => string } {
  let written = ''
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, done) {
      written += chunk.toString()
      done()
    },
  })
  return { socket, written: () => written }
}

t.test('an unreadable request gets a JSON 431, and its close timer goes when the connection closes', async (t) => {
  const { socket, written } = recordingSocket()
  // Timers made and cleared while the error is answered and the socket closes.
  const made = new Set<unknown>()
  const realSet = globalThis.setTimeout
  const realClear = globalThis.clearTimeout
  t.teardown(() => {
    globalThis.setTimeout = realSet
    globalThis.clearTimeout = realClear
  })
  globalThis.setTimeout = ((...args: Parameters<typeof realSet>) => {
    const timer = realSet(...args)
    made.add(timer)
    return timer
  }) as typeof realSet
  globalThis.clearTimeout = ((timer: Parameters<typeof realClear>[0]) => {
    made.delete(timer)
    realClear(timer)
  }) as typeof realClear
  answerClientError(Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW' }), socket, log)
  t.match(written(), /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/)
  t.match(written(), /Docker-Distribution-Api-Version: registry\/2\.0/)
  t.match(JSON.parse(written().slice(written().indexOf('\r\n\r\n') + 4)), { errors: [{ detail: { reason: 'HPE_HEADER_OVERFLOW' } }] })
  t.equal(made.size, 1, 'a timer closes a connection whose client never reads the answer')
  socket.destroy()
  await new Promise((resolve) => socket.once('close', resolve))
  t.equal(made.size, 0, 'the connection closed: its timer is cleared, not left to fire on a closed socket')
})

t.test('a TLS handshake that failed or timed out gets no HTTP answer: its socket is closed at once', async (t) => {
  for (const code of ['ERR_TLS_HANDSHAKE_TIMEOUT', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN', 'ECONNRESET']) {
    const { socket, written } = recordingSocket()
    answerClientError(Object.assign(new Error(code), { code }), socket, log)
    t.equal(written(), '', `${code}: nothing written`)
    t.ok(socket.destroyed, `${code}: closed now, not after the 5 s an unread answer gets`)
  }
})
