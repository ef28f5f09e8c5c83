// A cache holding at most a fixed number of entries (the least recently used goes first), with an optional time to live: every memo fed by client input uses it, so none grows without bound.
import { LRUCache } from 'lru-cache'

export interface BoundedCacheOptions {
  /** Entries kept at most. */
  max: number
  /** Milliseconds an entry lives after it was set (0 or absent: until evicted). */
  ttlMs?: number
  /** The clock in milliseconds, for tests; a monotonic clock by default. */
  now?: () => number
}

// Keys and values are never null or undefined: `undefined` is how a miss is told.
export class BoundedCache<K extends NonNullable<unknown>, V extends NonNullable<unknown>> {
  private readonly entries: LRUCache<K, V>

  constructor(options: BoundedCacheOptions) {
    const max = Math.max(1, Math.floor(options.max))
    const ttl = options.ttlMs !== undefined && options.ttlMs > 0 ? options.ttlMs : undefined
    this.entries = new LRUCache<K, V>({
      max,
      ...(ttl !== undefined ? { ttl } : {}),
      // An injected clock is read on every check: lru-cache's default memo of now() (1 ms) would hide its steps.
      ...(options.now ? { perf: { now: options.now }, ttlResolution: 0 } : {}),
    })
  }

  /** Entries held (expired ones count until they are looked at or pushed out). */
  get size(): number {
    return this.entries.size
  }

  /** The value, marking the entry as recently used; undefined when absent or expired. */
  get(key: K): V | undefined {
    return this.entries.get(key)
  }

  /** The value without marking the entry as used, for caches whose order is that of writes. */
  peek(key: K): V | undefined {
    return this.entries.peek(key)
  }

  has(key: K): boolean {
    return this.entries.has(key)
  }

  /** Stores `value` as the most recently used entry, pushing out the least recently used one when full. */
  set(key: K, value: V, ttlMs?: number): void {
    this.entries.set(key, value, ttlMs !== undefined ? { ttl: ttlMs } : undefined)
  }

  delete(key: K): boolean {
    return this.entries.delete(key)
  }

  /** Live entries, most recently used first, without marking them used (for sweeps that pick what to delete; delete after iterating). */
  *items(): Generator<[K, V]> {
    for (const [key, value] of this.entries.entries()) yield [key, value]
  }

  clear(): void {
    this.entries.clear()
  }
}
