// The relay's reading of a remote's Retry-After (seconds or an HTTP date), which Portier passes on to clients while the remote rate-limits a cache.
import t from 'tap'
import { retryAfterSeconds } from '../../src/cache/relay.js'

t.test('Retry-After as seconds, as an HTTP date, or missing', async (t) => {
  t.equal(retryAfterSeconds('120'), 120)
  t.equal(retryAfterSeconds(' 7 '), 7)
  t.equal(retryAfterSeconds(['30', '60']), 30, 'the first of repeated headers')
  const inAMinute = new Date(Date.now() + 60_000).toUTCString()
  const seconds = retryAfterSeconds(inAMinute)
  t.ok(seconds >= 58 && seconds <= 61, `an HTTP date a minute ahead: ${seconds}`)
  t.equal(retryAfterSeconds(new Date(Date.now() - 60_000).toUTCString()), 0, 'a date in the past: now')
  t.equal(retryAfterSeconds(undefined), 60, 'none: a minute')
  t.equal(retryAfterSeconds('soon'), 60, 'unreadable: a minute')
})
