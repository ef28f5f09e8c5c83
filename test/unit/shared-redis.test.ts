// The shared state engines against a real redis-server: what one instance does, another sees; while Redis is down each falls back and says so.
import t, { type Test } from 'tap'
import pino from 'pino'
import { createLocalShared } from '../../src/shared/local.js'
import { createRedisShared } from '../../src/shared/redis.js'
import type { SharedState } from '../../src/shared/types.js'
import { redisFixture, type RedisHandle } from '../helpers/redis.js'
import { createThrottle } from '../../src/auth/throttle.js'

const silent = pino({ level: 'silent' })

function engine(t: Test, redis: RedisHandle, overrides: { staleAfterMs?: number; now?: () => number } = {}): SharedState {
  const shared = createRedisShared({
    url: redis.url,
    username: '',
    password: '',
    ca: undefined,
    keyPrefix: 'test:',
    connectTimeoutMs: 2000,
    commandTimeoutMs: 500,
    staleAfterMs: overrides.staleAfterMs ?? 60_000,
    log: silent,
    ...(overrides.now ? { now: overrides.now } : {}),
  })
  t.teardown(() => shared.close())
  return shared
}

/** Waits (bounded) for a condition another process makes true; messages arrive asynchronously. */
async function eventually(check: () => boolean, timeoutMs = 3000): Promise<boolean> {
  for (let waited = 0; waited < timeoutMs; waited += 10) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return check()
}

t.test('without Redis: revocations hold in the process, messages and values stay local, no counters or locks', async (t) => {
  const shared = createLocalShared()
  t.equal(shared.engine, 'local')
  t.equal(shared.counters, undefined)
  t.equal(shared.locks, undefined)
  await shared.revocations.revoke('ui-session', 'abc', Date.now() + 60_000)
  t.equal(shared.revocations.isRevoked('ui-session', 'abc'), true)
  t.equal(shared.revocations.isRevoked('ui-session', 'other'), false)
  t.equal(shared.revocations.isRevoked('ui-session', 'abc', Date.now() + 61_000), false, 'expired revocations end')
  t.same(shared.status(), { engine: 'local', up: true, since: shared.status().since })
  t.equal(await shared.connected(), true)
})

t.test('two instances on one Redis', async (t) => {
  const redis = await redisFixture(t)
  const a = engine(t, redis)
  const b = engine(t, redis)
  t.equal(await a.connected(), true)
  t.equal(await b.connected(), true)
  t.equal(a.status().up, true)

  t.test('a revocation at A holds at B, and for an instance that connects later', async (t) => {
    await a.revocations.revoke('ui-session', 's1', Date.now() + 60_000)
    t.ok(await eventually(() => b.revocations.isRevoked('ui-session', 's1')))
    t.equal(b.revocations.isRevoked('access-token', 's1'), false, 'kinds are apart')
    const c = engine(t, redis)
    await c.connected()
    t.ok(await eventually(() => c.revocations.isRevoked('ui-session', 's1')), 'read from the sorted set at connect')
  })

  t.test('a message reaches the other instance, not the sender', async (t) => {
    const atA: string[] = []
    const atB: string[] = []
    a.bus.subscribe('tags', (message) => atA.push(message))
    b.bus.subscribe('tags', (message) => atB.push(message))
    a.bus.publish('tags', 'library/alpine:3')
    t.ok(await eventually(() => atB.length === 1))
    t.same(atB, ['library/alpine:3'])
    t.same(atA, [])
  })

  t.test('a value set at A is told to B, and read by a late watcher', async (t) => {
    const seen: string[] = []
    b.values.watch('maintenance', (value) => seen.push(value))
    await a.values.set('maintenance', '{"on":true}')
    t.ok(await eventually(() => seen.length === 1))
    t.same(seen, ['{"on":true}'])
    const c = engine(t, redis)
    const late: string[] = []
    c.values.watch('maintenance', (value) => late.push(value))
    await c.connected()
    t.ok(await eventually(() => late.length === 1))
    t.same(late, ['{"on":true}'])
  })

  t.test('counters: hits at both instances add up to one lock, seen by both', async (t) => {
    const counters = a.counters
    const other = b.counters
    if (!counters || !other) throw new Error('counters missing')
    const rule = { limit: 3, windowMs: 60_000, lockMs: 30_000 }
    t.equal(await counters.hit('alice@10.0.0.1', rule), 0)
    t.equal(await other.hit('alice@10.0.0.1', rule), 0)
    t.equal(await counters.hit('alice@10.0.0.1', rule), 0)
    t.equal(await other.lockedFor(['alice@10.0.0.1']), 0)
    const locked = await other.hit('alice@10.0.0.1', rule)
    t.equal(locked, 30_000, 'the fourth hit locks')
    const remaining = await counters.lockedFor(['bob@10.0.0.1', 'alice@10.0.0.1'])
    t.ok(remaining > 29_000 && remaining <= 30_000, `locked for ${remaining} ms`)
    await counters.reset('carol@10.0.0.1')
    t.equal(await counters.hit('carol@10.0.0.1', rule), 0)
    await counters.reset('carol@10.0.0.1')
    t.equal(await counters.lockedFor(['carol@10.0.0.1']), 0)
  })

  t.test('the login throttle: failures at two instances add up, the lock holds at a third that saw none', async (t) => {
    const options = { max_failures: 3, ip_max_failures: 0, window: 60_000, lockout: 120_000 }
    const c = engine(t, redis)
    await c.connected()
    const [atA, atB, atC] = [a, b, c].map((shared) => createThrottle(options, shared.counters ? { shared: shared.counters } : {}))
    if (!atA || !atB || !atC) throw new Error('throttles missing')
    for (const throttle of [atA, atA, atB, atB]) {
      t.equal(await throttle.check('dave', '192.0.2.7'), 0, 'not locked yet')
      throttle.failed('dave', '192.0.2.7')
      await throttle.settled()
    }
    t.equal(atB.retryAfter('dave', '192.0.2.7'), 0, 'B saw two failures only')
    t.equal(await atC.check('dave', '192.0.2.7'), 120, 'C refuses for the whole lockout')
    t.equal(atC.retryAfter('dave', '192.0.2.7'), 120, 'and keeps the lock it found')
    t.equal(await atC.check('dave', '192.0.2.8'), 0, 'the same user from another address is not locked')
    atA.succeeded('erin', '192.0.2.7')
    await atA.settled()
  })

  t.test('a lock is held by one instance until released', async (t) => {
    const held = await a.locks?.tryAcquire('acme-order', 10_000)
    t.ok(held)
    t.equal(await b.locks?.tryAcquire('acme-order', 10_000), undefined)
    await held?.release()
    const next = await b.locks?.tryAcquire('acme-order', 10_000)
    t.ok(next, 'free once released')
    await next?.release()
  })
  t.end()
})

t.test('Redis down: said so, commands fail fast, revocations fail safe after stale_after; back: up and resynced', async (t) => {
  const redis = await redisFixture(t)
  let clock = Date.now()
  const a = engine(t, redis, { staleAfterMs: 5000, now: () => clock })
  const b = engine(t, redis, { staleAfterMs: 5000, now: () => clock })
  await a.connected()
  await b.connected()
  const statuses: boolean[] = []
  a.onStatus((status) => statuses.push(status.up))
  let resyncs = 0
  b.bus.onResync(() => resyncs++)

  await redis.kill()
  t.ok(await eventually(() => !a.status().up && !b.status().up), 'both see Redis down')
  t.same(statuses, [false], 'told once')
  t.ok(a.status().fallback, 'the status names the fallback')
  const started = performance.now()
  const counters = a.counters
  if (!counters) throw new Error('counters missing')
  await t.rejects(counters.hit('x', { limit: 1, windowMs: 1000, lockMs: 1000 }))
  t.ok(performance.now() - started < 1000, 'refused at once, not queued')
  await a.revocations.revoke('ui-session', 'during', clock + 60_000)
  t.equal(a.revocations.isRevoked('ui-session', 'during'), true, 'revoked here at once')
  t.equal(b.revocations.isRevoked('ui-session', 'unrelated'), false, 'within stale_after: the local copy answers')
  clock += 6000
  t.equal(b.revocations.isRevoked('ui-session', 'unrelated'), true, 'past stale_after: refused (fail safe)')

  const resyncsBefore = resyncs
  await redis.restart()
  t.ok(await eventually(() => a.status().up && b.status().up, 8000), 'both back up')
  t.same(statuses, [false, true])
  t.ok(await eventually(() => resyncs > resyncsBefore), 'caches told that messages may have been missed')
  t.equal(b.revocations.isRevoked('ui-session', 'unrelated'), false)
})
