// A cache's limits on a storage laid out as distribution's filesystem driver lays it out: max_age evicts what was not pulled within it, max_bytes the oldest-used while over; blobs go once nothing links them.
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { evict, EvictionMemory } from '../../src/cache/eviction.js'

const MINUTE = 60_000

/** A storage root with repositories linking blobs of the given sizes (a blob shared by name). */
function storage(repositories: Record<string, Array<{ name: string; bytes: number; fresh?: boolean }>>): { root: string; blob: (name: string) => string } {
  const root = mkdtempSync(join(tmpdir(), 'portier-eviction-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const base = join(root, 'docker/registry/v2')
  const hex = (name: string): string => createHash('sha256').update(name).digest('hex')
  const blob = (name: string): string => join(base, 'blobs/sha256', hex(name).slice(0, 2), hex(name), 'data')
  const old = new Date(Date.now() - 60 * MINUTE)
  for (const [repository, blobs] of Object.entries(repositories)) {
    mkdirSync(join(base, 'repositories', repository, '_manifests/tags'), { recursive: true })
    for (const { name, bytes, fresh } of blobs) {
      const link = join(base, 'repositories', repository, '_layers/sha256', hex(name))
      mkdirSync(link, { recursive: true })
      writeFileSync(join(link, 'link'), `sha256:${hex(name)}`)
      mkdirSync(join(blob(name), '..'), { recursive: true })
      writeFileSync(blob(name), Buffer.alloc(bytes))
      // Written long ago (outside the grace period that protects blobs being stored), unless fresh.
      if (!fresh) utimesSync(blob(name), old, old)
    }
  }
  return { root, blob }
}

t.test('max_age: repositories not pulled within it leave with the blobs only they linked; a shared blob stays', async (t) => {
  const { root, blob } = storage({ 'team/old': [{ name: 'a', bytes: 100 }, { name: 'shared', bytes: 50 }], 'team/new': [{ name: 'b', bytes: 100 }, { name: 'shared', bytes: 50 }] })
  const now = Date.now()
  const pulled = new Map([['team/old', now - 10 * MINUTE], ['team/new', now - MINUTE]])
  const memory = new EvictionMemory()
  const result = await evict(root, { maxBytes: 0, maxAgeMs: 5 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same(result.aged, ['team/old'])
  t.same(result.repositories, [], 'no size bound')
  t.same([result.blobs, result.bytesPending], [0, 100], 'the blob only team/old linked is pending: unlinked in this pass only')
  t.equal(existsSync(blob('a')), true, 'still on disk: the registry may be linking it right now')
  t.same([result.bytesBefore, result.bytesAfter], [250, 150])
  const next = await evict(root, { maxBytes: 0, maxAgeMs: 5 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same([next.aged, next.blobs, next.bytesAfter, next.bytesPending], [[], 1, 150, 0], 'the next pass removes it')
  t.equal(existsSync(blob('a')), false, 'the blob only team/old linked')
  t.equal(existsSync(blob('shared')), true, 'a blob team/new links too')
  t.equal(existsSync(blob('b')), true)
})

t.test('a blob unlinked in one pass and linked again before the next (a pull of another repository) stays', async (t) => {
  const { root, blob } = storage({ old: [{ name: 'x', bytes: 100 }], fresh: [{ name: 'y', bytes: 100 }] })
  const now = Date.now()
  const pulled = new Map([['old', now - 10 * MINUTE], ['fresh', now]])
  const memory = new EvictionMemory()
  const first = await evict(root, { maxBytes: 0, maxAgeMs: 5 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same([first.aged, first.blobs], [['old'], 0])
  // The registry links the blob it already holds into another repository (its time stays old).
  const hex = createHash('sha256').update('x').digest('hex')
  const link = join(root, 'docker/registry/v2/repositories/fresh/_layers/sha256', hex)
  mkdirSync(link, { recursive: true })
  writeFileSync(join(link, 'link'), `sha256:${hex}`)
  const next = await evict(root, { maxBytes: 0, maxAgeMs: 5 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same([next.blobs, next.bytesPending], [0, 0], 'nothing removed')
  t.equal(existsSync(blob('x')), true, 'the blob linked again is kept')
})

t.test('max_bytes: the repository pulled longest ago leaves first, until the blobs fit', async (t) => {
  const { root, blob } = storage({ one: [{ name: 'x', bytes: 300 }], two: [{ name: 'y', bytes: 300 }], three: [{ name: 'z', bytes: 300 }] })
  const now = Date.now()
  const pulled = new Map([['one', now - 3000], ['two', now - 1000], ['three', now - 2000]])
  const memory = new EvictionMemory()
  const result = await evict(root, { maxBytes: 400, maxAgeMs: 0 }, 1000, (name) => pulled.get(name), memory, now)
  t.same(result.repositories, ['one', 'three'], 'oldest-used first, and no more than needed')
  t.same(result.aged, [])
  t.same([result.bytesAfter, result.bytesPending], [300, 600])
  t.equal(existsSync(blob('y')), true)
  const next = await evict(root, { maxBytes: 400, maxAgeMs: 0 }, 1000, (name) => pulled.get(name), memory, now)
  t.same([next.repositories, next.blobs, next.bytesAfter, next.bytesPending], [[], 2, 300, 0], 'their blobs go on the next pass, nothing more is evicted')
  t.equal(existsSync(blob('x')), false)
  t.equal(existsSync(blob('y')), true)
})

t.test('both limits: age first, then size over what is left; within both nothing is touched', async (t) => {
  const { root } = storage({ stale: [{ name: 's', bytes: 100 }], a: [{ name: 'a', bytes: 200 }], b: [{ name: 'b', bytes: 200 }] })
  const now = Date.now()
  const pulled = new Map([['stale', now - 20 * MINUTE], ['a', now - 2 * MINUTE], ['b', now - MINUTE]])
  const memory = new EvictionMemory()
  const result = await evict(root, { maxBytes: 300, maxAgeMs: 10 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same(result.aged, ['stale'])
  t.same(result.repositories, ['a'])
  t.equal(result.bytesAfter, 200)
  const again = await evict(root, { maxBytes: 300, maxAgeMs: 10 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same([again.aged, again.repositories, again.blobs, again.bytesAfter], [[], [], 2, 200], 'their blobs go, nothing more is evicted')
  const third = await evict(root, { maxBytes: 300, maxAgeMs: 10 * MINUTE }, 1000, (name) => pulled.get(name), memory, now)
  t.same([third.aged, third.repositories, third.blobs, third.bytesAfter], [[], [], 0, 200], 'nothing more to do')
})

t.test('max_bytes: an evicted repository whose blobs are within the grace period counts them as leaving; a later pass removes them', async (t) => {
  // Under load the pass can come right after both pulls: the oldest repository's blobs were written moments ago.
  const { root, blob } = storage({ first: [{ name: 'f', bytes: 300, fresh: true }], second: [{ name: 's', bytes: 300, fresh: true }] })
  const now = Date.now()
  const pulled = new Map([['first', now - 2000], ['second', now - 1000]])
  const memory = new EvictionMemory()
  const result = await evict(root, { maxBytes: 400, maxAgeMs: 0 }, MINUTE, (name) => pulled.get(name), memory, now)
  t.same(result.repositories, ['first'], 'the newer repository stays although first\'s blob is still on disk')
  t.same([result.bytesBefore, result.bytesAfter, result.bytesPending, result.blobs], [600, 300, 300, 0])
  t.equal(existsSync(blob('f')), true, 'inside the grace period the unlinked blob stays for now')
  const later = await evict(root, { maxBytes: 400, maxAgeMs: 0 }, 0, (name) => pulled.get(name), memory, now)
  t.same([later.repositories, later.blobs, later.bytesAfter, later.bytesPending], [[], 1, 300, 0], 'the next pass removes it and evicts nothing')
  t.equal(existsSync(blob('f')), false)
  t.equal(existsSync(blob('s')), true)
})

t.test('blobs nothing links, left by an earlier pass, go on the next pass even when the cache is within its limits', async (t) => {
  const { root, blob } = storage({ kept: [{ name: 'k', bytes: 100 }] })
  // A blob written an hour ago that no repository links (its repository was evicted while it was new).
  const target = blob('o')
  mkdirSync(join(target, '..'), { recursive: true })
  writeFileSync(target, Buffer.alloc(100))
  utimesSync(target, new Date(Date.now() - 60 * MINUTE), new Date(Date.now() - 60 * MINUTE))
  const memory = new EvictionMemory()
  const result = await evict(root, { maxBytes: 10_000, maxAgeMs: 0 }, 1000, () => undefined, memory)
  t.same([result.repositories, result.aged, result.blobs, result.bytesAfter, result.bytesPending], [[], [], 0, 100, 100], 'first seen unlinked: pending')
  t.equal(existsSync(target), true)
  const next = await evict(root, { maxBytes: 10_000, maxAgeMs: 0 }, 1000, () => undefined, memory)
  t.same([next.repositories, next.aged, next.blobs, next.bytesAfter, next.bytesPending], [[], [], 1, 100, 0])
  t.equal(existsSync(target), false, 'the unlinked blob is gone')
  t.equal(existsSync(blob('k')), true)
})
