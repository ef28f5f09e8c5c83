// The shared state of a single instance: in this process only, exactly as before there was a shared engine.
import { BoundedCache } from '../lib/bounded-cache.js'
import type { Bus, CounterRule, Counters, RateRule, Revocations, SharedState, SharedStatus, SharedValues } from './types.js'

/** Revocations held at most per process; the ones ending first go first when full. */
const MAX_REVOCATIONS = 100_000

/** Revoked identifiers until they end, in this process: the local engine's set and the Redis engine's copy. */
export class RevocationCopy {
  private readonly entries = new Map<string, number>()
  private nextPrune = 0

  add(kind: string, id: string, untilMs: number, now = Date.now()): void {
    this.prune(now)
    const key = keyOf(kind, id)
    if (!this.entries.has(key) && this.entries.size >= MAX_REVOCATIONS) this.dropEarliest()
    this.entries.set(key, Math.max(untilMs, this.entries.get(key) ?? 0))
  }

  has(kind: string, id: string, now = Date.now()): boolean {
    const until = this.entries.get(keyOf(kind, id))
    return until !== undefined && until > now
  }

  get size(): number {
    return this.entries.size
  }

  /** Expired entries go at most once a second, so a revocation costs O(1) on average. */
  private prune(now: number): void {
    if (now < this.nextPrune) return
    this.nextPrune = now + 1000
    for (const [key, until] of this.entries) if (until <= now) this.entries.delete(key)
  }

  private dropEarliest(): void {
    let earliest: string | undefined
    let earliestUntil = Infinity
    for (const [key, until] of this.entries) {
      if (until < earliestUntil) {
        earliest = key
        earliestUntil = until
      }
    }
    if (earliest !== undefined) this.entries.delete(earliest)
  }
}

function keyOf(kind: string, id: string): string {
  return `${kind}\n${id}`
}

/** The outcome of offering one request to a token bucket. */
export interface BucketTake {
  /** 0: the request goes through; otherwise the milliseconds until one would. */
  waitMs: number
  /** The bucket's theoretical arrival time after this request (unchanged when refused). */
  tat: number
}

/**
 * GCRA, the token bucket as one number: `tat` is when the bucket would be full again. A request is
 * let through while `tat` is at most (burst - 1) intervals ahead of now, and moves it one interval on.
 * The Redis engine runs the same arithmetic in Lua (redis.ts, TAKE_SCRIPT), in microseconds.
 */
export function takeFromBucket(tat: number | undefined, now: number, rule: RateRule): BucketTake {
  const start = Math.max(tat ?? now, now)
  const tolerance = (Math.max(1, rule.burst) - 1) * rule.intervalMs
  const ahead = start - now - tolerance
  if (ahead > 0) return { waitMs: ahead, tat: start }
  return { waitMs: 0, tat: start + rule.intervalMs }
}

/** Buckets and counters held at most per process; the least recently used go first when full. */
const MAX_COUNTER_KEYS = 100_000

interface LockCount {
  count: number
  windowEnd: number
  lockedUntil: number
}

/**
 * Counters in this process: the rate limits' buckets without a shared engine, and while it is unreachable
 * (each instance then counts alone). `now` is for tests.
 */
export function createLocalCounters(now: () => number = Date.now, maxKeys = MAX_COUNTER_KEYS): Counters {
  const buckets = new BoundedCache<string, number>({ max: maxKeys })
  const counts = new BoundedCache<string, LockCount>({ max: maxKeys })
  return {
    hit(key, rule: CounterRule) {
      const at = now()
      const entry = counts.get(key)
      if (entry && entry.lockedUntil > at) return Promise.resolve(entry.lockedUntil - at)
      const current = entry && entry.windowEnd > at ? entry : { count: 0, windowEnd: at + rule.windowMs, lockedUntil: 0 }
      current.count++
      if (current.count > rule.limit) {
        counts.set(key, { count: 0, windowEnd: at, lockedUntil: at + rule.lockMs })
        return Promise.resolve(rule.lockMs)
      }
      counts.set(key, current)
      return Promise.resolve(0)
    },
    lockedFor(keys) {
      const at = now()
      return Promise.resolve(Math.max(0, ...keys.map((key) => (counts.peek(key)?.lockedUntil ?? 0) - at)))
    },
    reset(key) {
      const entry = counts.peek(key)
      if (entry) entry.count = 0
      return Promise.resolve()
    },
    take(key, rule) {
      const at = now()
      const taken = takeFromBucket(buckets.get(key), at, rule)
      if (taken.waitMs === 0) buckets.set(key, taken.tat)
      return Promise.resolve(taken.waitMs)
    },
  }
}

/** No shared engine: revocations hold in this process, messages have nobody to go to, values stay here. */
export function createLocalShared(): SharedState {
  const copy = new RevocationCopy()
  const revocations: Revocations = {
    revoke: (kind, id, untilMs) => {
      copy.add(kind, id, untilMs)
      return Promise.resolve()
    },
    isRevoked: (kind, id, now) => copy.has(kind, id, now),
  }
  const bus: Bus = {
    publish: () => undefined,
    subscribe: () => () => undefined,
    onResync: () => () => undefined,
  }
  const values: SharedValues = {
    set: () => Promise.resolve(),
    watch: () => () => undefined,
  }
  const status: SharedStatus = { engine: 'local', up: true, since: new Date().toISOString() }
  return {
    engine: 'local',
    counters: undefined,
    revocations,
    bus,
    values,
    locks: undefined,
    status: () => ({ ...status }),
    connected: () => Promise.resolve(true),
    onStatus: () => () => undefined,
    close: () => Promise.resolve(),
  }
}
