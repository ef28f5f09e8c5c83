// The one bounded cache (src/lib/bounded-cache.ts): at most max entries, least recently used out first, peek leaves the order, TTL on an injected clock.
import t from 'tap'
import { BoundedCache } from '../../src/lib/bounded-cache.js'

t.test('holds at most max entries; the least recently used goes first', async (t) => {
  const cache = new BoundedCache<string, number>({ max: 3 })
  cache.set('a', 1)
  cache.set('b', 2)
  cache.set('c', 3)
  t.equal(cache.get('a'), 1, 'a is used: b is now the oldest')
  cache.set('d', 4)
  t.equal(cache.size, 3)
  t.equal(cache.peek('b'), undefined, 'b was pushed out')
  t.same([cache.peek('a'), cache.peek('c'), cache.peek('d')], [1, 3, 4])
})

t.test('peek does not count as a use', async (t) => {
  const cache = new BoundedCache<string, number>({ max: 2 })
  cache.set('a', 1)
  cache.set('b', 2)
  t.equal(cache.peek('a'), 1)
  cache.set('c', 3)
  t.notOk(cache.has('a'), 'a stayed the oldest and went')
  t.ok(cache.has('b'))
})

t.test('setting a key again makes it the newest', async (t) => {
  const cache = new BoundedCache<string, number>({ max: 2 })
  cache.set('a', 1)
  cache.set('b', 2)
  cache.set('a', 10)
  cache.set('c', 3)
  t.equal(cache.peek('a'), 10)
  t.notOk(cache.has('b'))
})

t.test('delete and clear', async (t) => {
  const cache = new BoundedCache<string, boolean>({ max: 5 })
  cache.set('a', true)
  cache.set('b', false)
  t.equal(cache.get('b'), false, 'false is a value, not a miss')
  t.ok(cache.delete('a'))
  t.notOk(cache.delete('a'))
  cache.clear()
  t.equal(cache.size, 0)
})

t.test('entries expire after ttlMs on the given clock', async (t) => {
  let clock = 1_000
  const cache = new BoundedCache<string, string>({ max: 10, ttlMs: 500, now: () => clock })
  cache.set('a', 'x')
  clock += 499
  t.equal(cache.get('a'), 'x')
  clock += 2
  t.equal(cache.get('a'), undefined, 'gone after 500 ms')
  t.equal(cache.peek('a'), undefined)
  cache.set('b', 'y', 2_000)
  clock += 1_000
  t.equal(cache.get('b'), 'y', 'a per-entry TTL overrides the default')
})

t.test('a max below one still keeps one entry', async (t) => {
  const cache = new BoundedCache<string, number>({ max: 0 })
  cache.set('a', 1)
  t.equal(cache.get('a'), 1)
})
