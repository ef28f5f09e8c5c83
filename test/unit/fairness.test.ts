// The fair-share limiter: exchanges per user and per address, 429 in the registry's words, each slot given back exactly once.
import t from 'tap'
import { ExchangeLimiter, type FairShareLimit } from '../../src/pipeline/fairness.js'
import { RegistryError } from '../../src/registry/errors.js'

function refusal(run: () => unknown): RegistryError | undefined {
  try {
    run()
    return undefined
  } catch (error) {
    return error instanceof RegistryError ? error : undefined
  }
}

t.test('a user gets max_exchanges_per_user slots, then 429 TOOMANYREQUESTS with Retry-After; other users are not affected', async (t) => {
  const refused: FairShareLimit[] = []
  const limiter = new ExchangeLimiter({ max_exchanges_per_user: 3, max_exchanges_per_address: 0 }, (limit) => refused.push(limit))
  const alice = { user: 'alice', address: '192.0.2.1' }
  const releases = [limiter.admit(alice), limiter.admit(alice), limiter.admit(alice)]
  const error = refusal(() => limiter.admit({ user: 'alice', address: '192.0.2.99' }))
  t.ok(error, 'the fourth is refused, from any address')
  t.equal(error?.status, 429)
  t.equal(error?.wireCode, 'TOOMANYREQUESTS')
  t.match(error?.headers, { 'Retry-After': /^\d+$/ })
  t.match(JSON.parse(error?.body() ?? '{}'), { errors: [{ code: 'TOOMANYREQUESTS', detail: { limit: 'max_exchanges_per_user', max: 3 } }] })
  t.same(refused, ['max_exchanges_per_user'], 'the refusal is reported once')
  t.ok(limiter.admit({ user: 'bob', address: '192.0.2.1' }), 'another user from the same address still gets in (address limit off)')
  t.equal(limiter.open({ user: 'alice' }), 3)

  releases[0]?.()
  t.equal(limiter.open({ user: 'alice' }), 2, 'a release gives one slot back')
  releases[0]?.()
  releases[0]?.()
  t.equal(limiter.open({ user: 'alice' }), 2, 'calling the same release again gives nothing more back')
  t.ok(limiter.admit(alice), 'the freed slot can be taken again')
  t.ok(refusal(() => limiter.admit(alice)), 'and then the user is full again')
})

t.test('an address gets max_exchanges_per_address slots whoever calls; anonymous callers are counted by address only', async (t) => {
  const limiter = new ExchangeLimiter({ max_exchanges_per_user: 2, max_exchanges_per_address: 3 })
  const anonymous = { user: undefined, address: '198.51.100.7' }
  const first = limiter.admit(anonymous)
  limiter.admit(anonymous)
  limiter.admit({ user: 'carol', address: '198.51.100.7' })
  const error = refusal(() => limiter.admit({ user: 'dave', address: '198.51.100.7' }))
  t.match(error, { code: 'TOOMANYREQUESTS', detail: { limit: 'max_exchanges_per_address', max: 3 } }, 'a fourth caller from that address is refused')
  t.equal(limiter.open({ user: 'dave' }), 0, 'a refused caller holds nothing')
  t.ok(limiter.admit({ user: undefined, address: '198.51.100.8' }), 'another address is not affected')
  first()
  t.ok(limiter.admit({ user: 'dave', address: '198.51.100.7' }), 'a slot given back at the address lets the next one in')
  t.equal(limiter.open({ address: '198.51.100.7' }), 3)
})

t.test('a refusal by address leaves the user count as it was, and the maps forget idle clients', async (t) => {
  const limiter = new ExchangeLimiter({ max_exchanges_per_user: 5, max_exchanges_per_address: 1 })
  const held = limiter.admit({ user: 'erin', address: '203.0.113.1' })
  t.ok(refusal(() => limiter.admit({ user: 'erin', address: '203.0.113.1' })))
  t.equal(limiter.open({ user: 'erin' }), 1, 'the refused request took no user slot')
  held()
  t.equal(limiter.open({ user: 'erin' }), 0)
  t.equal(limiter.open({ address: '203.0.113.1' }), 0)
  t.same([...(limiter as unknown as { users: Map<string, number> }).users.keys()], [], 'no entry stays behind for an idle user')
})

t.test('0 turns a limit off', async (t) => {
  const limiter = new ExchangeLimiter({ max_exchanges_per_user: 0, max_exchanges_per_address: 0 })
  for (let index = 0; index < 1000; index++) limiter.admit({ user: 'frank', address: '192.0.2.3' })
  t.equal(limiter.open({ user: 'frank' }), 1000)
})
