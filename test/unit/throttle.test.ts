// Login throttling on a fake clock: per user+IP and per IP locks, success clearing, window expiry, IPv6 /64s, memory cap.
import t from 'tap'
import { addressKey, createThrottle, type ThrottleDeps, type ThrottleOptions } from '../../src/auth/throttle.js'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'

const minute = 60_000

function setup(options: Partial<ThrottleOptions> = {}, deps: ThrottleDeps = {}) {
  let clock = 1_700_000_000_000
  const throttle = createThrottle(
    { max_failures: 3, ip_max_failures: 10, window: 5 * minute, lockout: 2 * minute, ...options },
    { now: () => clock, ...deps },
  )
  const fail = (user: string, ip: string, times = 1) => {
    for (let i = 0; i < times; i++) throttle.failed(user, ip)
  }
  return { throttle, fail, advance: (ms: number) => { clock += ms } }
}

t.test('more than max_failures bad passwords lock that user at that address, with Retry-After in seconds', async (t) => {
  const { throttle, fail } = setup()
  fail('alice', '192.0.2.1', 3)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'max_failures failures are tolerated')
  fail('alice', '192.0.2.1')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 120, 'one more locks for lockout (2m)')
})

t.test('the same user from another address still gets in; other users at the locked address too', async (t) => {
  const { throttle, fail } = setup()
  fail('alice', '192.0.2.1', 4)
  t.ok(throttle.retryAfter('alice', '192.0.2.1') > 0)
  t.equal(throttle.retryAfter('alice', '198.51.100.2'), 0)
  t.equal(throttle.retryAfter('bob', '192.0.2.1'), 0)
})

t.test('an address trying many users is locked for every user', async (t) => {
  const { throttle, fail } = setup()
  for (let i = 0; i < 10; i++) fail(`user${i}`, '203.0.113.9')
  t.equal(throttle.retryAfter('someone', '203.0.113.9'), 0, 'ip_max_failures failures are tolerated')
  fail('user10', '203.0.113.9')
  t.equal(throttle.retryAfter('someone-else', '203.0.113.9'), 120)
  t.equal(throttle.retryAfter('user0', '203.0.113.10'), 0, 'a neighbouring address is not locked')
})

t.test('a lock lasts lockout, counting down, then the slate is clean', async (t) => {
  const { throttle, fail, advance } = setup()
  fail('alice', '192.0.2.1', 4)
  advance(30_000)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 90)
  advance(89_500)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 1, 'half a second left rounds up to 1')
  advance(500)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0)
  fail('alice', '192.0.2.1', 3)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'after a lock the count starts again')
  fail('alice', '192.0.2.1')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 120)
})

t.test('failures while locked do not extend the lock', async (t) => {
  // Without the address lock, which these 24 failures would otherwise trip on their own.
  const { throttle, fail, advance } = setup({ ip_max_failures: 0 })
  fail('alice', '192.0.2.1', 4)
  advance(60_000)
  fail('alice', '192.0.2.1', 20)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 60)
})

t.test('success clears that user+address, but not the address count nor other pairs', async (t) => {
  const { throttle, fail } = setup()
  fail('alice', '192.0.2.1', 3)
  fail('alice', '198.51.100.2', 3)
  throttle.succeeded('alice', '192.0.2.1')
  fail('alice', '192.0.2.1', 3)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'the count restarted at the success')
  fail('alice', '198.51.100.2')
  t.ok(throttle.retryAfter('alice', '198.51.100.2') > 0, 'the other address kept its count')

  const spray = setup()
  for (let i = 0; i < 10; i++) {
    spray.fail(`victim${i}`, '203.0.113.9')
    spray.throttle.succeeded('attacker', '203.0.113.9')
  }
  spray.fail('victim10', '203.0.113.9')
  t.ok(spray.throttle.retryAfter('attacker', '203.0.113.9') > 0, 'logging in with one valid account does not reset the address')
})

t.test('success also lifts a user+address lock', async (t) => {
  // The pipeline never verifies a password while locked; succeeded() is still safe to call.
  const { throttle, fail } = setup()
  fail('alice', '192.0.2.1', 4)
  throttle.succeeded('alice', '192.0.2.1')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0)
})

t.test('failures older than window are forgotten', async (t) => {
  const { throttle, fail, advance } = setup()
  fail('alice', '192.0.2.1', 3)
  advance(5 * minute)
  fail('alice', '192.0.2.1', 3)
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'three then three in separate windows')
  fail('alice', '192.0.2.1')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 120, 'four within one window')
})

t.test('IPv4-mapped addresses count as IPv4; IPv6 addresses count by their /64', async (t) => {
  t.equal(addressKey('::ffff:192.0.2.1'), '192.0.2.1')
  t.equal(addressKey('192.0.2.1'), '192.0.2.1')
  t.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  t.equal(addressKey('2001:DB8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64')
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  t.equal(addressKey('::1'), '0:0:0:0::/64')
  t.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  t.equal(addressKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64')
  t.equal(addressKey('not an address'), 'not an address')

  const { throttle, fail } = setup()
  fail('alice', '::ffff:192.0.2.1', 4)
  t.ok(throttle.retryAfter('alice', '192.0.2.1') > 0)
  fail('alice', '2001:db8:1:2::1', 2)
  fail('alice', '2001:db8:1:2::2', 2)
  t.ok(throttle.retryAfter('alice', '2001:db8:1:2::3') > 0, 'rotating within a /64 does not help')
  t.equal(throttle.retryAfter('alice', '2001:db8:1:3::1'), 0)
})

t.test('user names are keys as they are: no collisions, long names are bounded', async (t) => {
  const { throttle, fail } = setup()
  const long = 'x'.repeat(10_000)
  fail(long, '192.0.2.1', 4)
  t.ok(throttle.retryAfter(long, '192.0.2.1') > 0)
  t.equal(throttle.retryAfter(`${long}y`, '192.0.2.1'), 0)
  fail('a\nb', '192.0.2.2', 4)
  t.equal(throttle.retryAfter('a', '192.0.2.2'), 0)
  t.ok(throttle.retryAfter('a\nb', '192.0.2.2') > 0)
})

t.test('memory is capped: the least recently failing entries are dropped first', async (t) => {
  const { throttle, fail } = setup({ ip_max_failures: 0 }, { maxEntries: 100 })
  fail('alice', '192.0.2.1', 4)
  for (let i = 0; i < 99; i++) fail(`user${i}`, `198.51.100.${i}`)
  t.equal(throttle.size, 100)
  t.ok(throttle.retryAfter('alice', '192.0.2.1') > 0, 'still remembered at the cap')
  for (let i = 0; i < 1000; i++) fail(`spray${i}`, '203.0.113.1')
  t.equal(throttle.size, 100, 'never above the cap')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'the oldest entry went first')

  const busy = setup({}, { maxEntries: 10 })
  for (let i = 0; i < 500; i++) busy.fail(`user${i}`, '203.0.113.1')
  t.ok(busy.throttle.retryAfter('anyone', '203.0.113.1') > 0, 'a busy address stays remembered: each failure refreshes it')
  t.equal(busy.throttle.size, 10)
})

t.test('expired entries are dropped when looked at', async (t) => {
  const { throttle, fail, advance } = setup()
  fail('alice', '192.0.2.1')
  t.equal(throttle.size, 2, 'one pair and one address')
  advance(5 * minute)
  throttle.retryAfter('alice', '192.0.2.1')
  t.equal(throttle.size, 0)
})

t.test('max_failures 0 turns throttling off; ip_max_failures 0 only the address lock', async (t) => {
  const off = setup({ max_failures: 0 })
  off.fail('alice', '192.0.2.1', 100)
  t.equal(off.throttle.retryAfter('alice', '192.0.2.1'), 0)
  t.equal(off.throttle.size, 0, 'nothing is tracked')
  const noIp = setup({ ip_max_failures: 0 })
  for (let i = 0; i < 100; i++) noIp.fail(`user${i}`, '203.0.113.9')
  t.equal(noIp.throttle.retryAfter('someone', '203.0.113.9'), 0)
  noIp.fail('alice', '203.0.113.9', 4)
  t.ok(noIp.throttle.retryAfter('alice', '203.0.113.9') > 0)
  const { throttle } = setup({ ip_max_failures: undefined })
  for (let i = 0; i < 100; i++) throttle.failed(`user${i}`, '203.0.113.9')
  t.equal(throttle.retryAfter('someone', '203.0.113.9'), 0, 'ip_max_failures may be left out of the options')
})

t.test('config: auth.throttle defaults, overrides and checks', async (t) => {
  t.same(loadConfig({ env: {} }).config.auth.throttle, { max_failures: 10, ip_max_failures: 50, window: 300_000, lockout: 300_000 })
  const env = { PORTIER_AUTH_THROTTLE_MAX_FAILURES: '5', PORTIER_AUTH_THROTTLE_LOCKOUT: '15m' }
  t.same(loadConfig({ env }).config.auth.throttle, { max_failures: 5, ip_max_failures: 50, window: 300_000, lockout: 900_000 })
  t.same(loadConfig({ env: { PORTIER_AUTH_THROTTLE_MAX_FAILURES: '0', PORTIER_AUTH_THROTTLE_WINDOW: '0' } }).config.auth.throttle.window, 0, 'off: window 0 is fine')
  const problems = (variables: Record<string, string>): ConfigProblem[] => {
    try {
      loadConfig({ env: variables })
    } catch (error) {
      if (error instanceof ConfigError) return error.problems
      throw error
    }
    return []
  }
  t.same(problems({ PORTIER_AUTH_THROTTLE_WINDOW: '0', PORTIER_AUTH_THROTTLE_LOCKOUT: '0' }).map((p) => p.key), ['auth.throttle.window', 'auth.throttle.lockout'])
  t.same(problems({ PORTIER_AUTH_THROTTLE_MAX_FAILURES: '-1' }).map((p) => p.key), ['auth.throttle.max_failures'])
  t.same(problems({ PORTIER_AUTH_THROTTLE_WINDOW: '0' })[0]?.source, 'environment PORTIER_AUTH_THROTTLE_WINDOW')
})

t.test('attempts are counted before they are checked: at the same instant no more pass than one by one (issue 12)', async (t) => {
  const { throttle } = setup()
  // 100 guesses at the same instant: each reserves before its password is checked.
  const attempts = Array.from({ length: 100 }, () => throttle.attempt('alice', '192.0.2.1'))
  const admitted = attempts.filter((attempt) => attempt !== undefined)
  t.equal(admitted.length, 4, 'max_failures (3) + 1 checked, as one after another: the fourth failure is the one that locks')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 120, 'the attempt over the limit locked at once')
  for (const attempt of admitted) attempt?.failed()
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 120, 'the failures that come in later do not extend it')
  t.equal(throttle.retryAfter('alice', '198.51.100.2'), 0, 'the same user elsewhere is not locked')

  const sequential = setup()
  const checked: boolean[] = []
  for (let i = 0; i < 6; i++) {
    const attempt = sequential.throttle.attempt('alice', '192.0.2.1')
    checked.push(attempt !== undefined)
    attempt?.failed()
  }
  t.same(checked, [true, true, true, true, false, false], 'one by one: the same four checks')

  const spray = setup()
  const sprayed = Array.from({ length: 50 }, (_, i) => spray.throttle.attempt(`user${i}`, '203.0.113.9')).filter((attempt) => attempt !== undefined)
  t.equal(sprayed.length, 11, 'ip_max_failures (10) + 1 across users at the same instant')
  t.ok(spray.throttle.retryAfter('someone', '203.0.113.9') > 0, 'and the address is locked')
})

t.test('a reservation that succeeds or is cancelled is not a failure and leaves nothing behind', async (t) => {
  const { throttle } = setup()
  for (let i = 0; i < 3; i++) throttle.attempt('alice', '192.0.2.1')?.failed()
  const right = throttle.attempt('alice', '192.0.2.1')
  t.ok(right, 'the fourth attempt is checked')
  right?.succeeded()
  throttle.succeeded('alice', '192.0.2.1')
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0)
  for (let i = 0; i < 3; i++) throttle.attempt('alice', '192.0.2.1')?.failed()
  t.equal(throttle.retryAfter('alice', '192.0.2.1'), 0, 'the success reset the pair count')

  const quiet = setup()
  const held = Array.from({ length: 4 }, () => quiet.throttle.attempt('bob', '192.0.2.7'))
  t.ok(held.every((attempt) => attempt !== undefined), 'four in flight')
  for (const attempt of held) attempt?.cancelled()
  t.equal(quiet.throttle.size, 0, 'cancelled reservations leave no entries')
  held[0]?.failed()
  t.equal(quiet.throttle.size, 0, 'a settled reservation ignores a second outcome')

  const off = setup({ max_failures: 0 })
  t.ok(Array.from({ length: 100 }, () => off.throttle.attempt('alice', '192.0.2.1')).every((attempt) => attempt !== undefined), 'throttling off: every attempt passes')
  t.equal(off.throttle.size, 0)
})
