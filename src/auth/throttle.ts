// Brute-force throttling: failed logins per user+IP and per IP lock further attempts for a while, in bounded memory (and across instances with shared counters).
import { createHash } from 'node:crypto'
import type { ThrottleConfig } from './section.js'
import { BoundedCache } from '../lib/bounded-cache.js'
import type { Counters } from '../shared/index.js'
import { addressKey } from '../net/addresses.js'

export { addressKey }

/** One login attempt counted before its password is checked; exactly one of the three is called once it is known. */
export interface Attempt {
  /** The password was wrong: the reservation becomes a failure. */
  failed(): void
  /** The password was right: the reservation is dropped (the caller also calls Throttle.succeeded). */
  succeeded(): void
  /** The password was never checked (the check was refused or broke): the reservation is dropped. */
  cancelled(): void
}

export interface Throttle {
  /** Whole seconds this user at this address must wait before trying again (for Retry-After), 0 when allowed. */
  retryAfter(user: string, ip: string): number
  /**
   * Reserves an attempt before its password is checked, so attempts made at the same instant cannot all
   * be checked: failures plus checks in flight never exceed max_failures + 1 (the attempt whose failure
   * locks), as when they come one by one. Undefined when locked, including when this attempt is over that
   * (it locks, as the failures in flight would).
   */
  attempt(user: string, ip: string): Attempt | undefined
  /** Counts a failed login of `user` from `ip`. */
  failed(user: string, ip: string): void
  /** A login succeeded: forgets this user+IP's failures (the IP's own count stays). */
  succeeded(user: string, ip: string): void
  /**
   * Seconds to wait like retryAfter, also asking the shared counters (another instance may hold the lock);
   * a lock found there is kept here too. Without shared counters, or while they are unreachable, the local answer.
   */
  check(user: string, ip: string): Promise<number>
  /** Resolves once the failures counted so far are in the shared counters (or could not be). */
  settled(): Promise<void>
  /** Tracked entries (user+IP pairs and IPs), never above the cap. */
  readonly size: number
}

export type ThrottleOptions = Pick<ThrottleConfig, 'max_failures' | 'window' | 'lockout'> & Partial<Pick<ThrottleConfig, 'ip_max_failures'>>

export interface ThrottleDeps {
  /** Milliseconds since the epoch; tests pass their own clock. */
  now?: () => number
  /** Most entries kept; the least recently failed are dropped first. */
  maxEntries?: number
  /** Counters every gateway instance shares (shared.redis): failures add up across instances, a lock holds at all of them. */
  shared?: Counters
}

export const DEFAULT_MAX_ENTRIES = 10_000

interface Counter {
  failures: number
  /** Attempts reserved and not yet known to have failed or succeeded. */
  pending: number
  windowStart: number
  lockedUntil: number
}

/** A bounded key for a user name: long names (a header can carry kilobytes) are hashed. */
function userKey(user: string): string {
  return user.length <= 128 ? `u:${user}` : `h:${createHash('sha256').update(user).digest('base64')}`
}

export function createThrottle(options: ThrottleOptions, deps: ThrottleDeps = {}): Throttle {
  const now = deps.now ?? Date.now
  const maxEntries = Math.max(1, deps.maxEntries ?? DEFAULT_MAX_ENTRIES)
  const { max_failures: pairLimit, window, lockout } = options
  const ipLimit = options.ip_max_failures ?? 0
  const enabled = pairLimit > 0 && window > 0 && lockout > 0
  // Order is recency of the last failure (reads peek): the oldest failure is the one dropped when full.
  const counters = new BoundedCache<string, Counter>({ max: maxEntries })

  // The address part comes first and never contains a newline, so the two keys cannot collide.
  const pairKey = (user: string, ip: string): string => `p:${addressKey(ip)}\n${userKey(user)}`
  const ipKey = (ip: string): string => `i:${addressKey(ip)}`

  /** The counter for `key` now: a new window once the old one ended (reservations in flight carry over). */
  const current = (key: string, at: number): Counter => {
    const counter = counters.peek(key)
    if (counter && (counter.lockedUntil > at || at - counter.windowStart < window)) return counter
    return { failures: 0, pending: counter?.pending ?? 0, windowStart: at, lockedUntil: 0 }
  }

  const store = (key: string, counter: Counter): void => {
    counters.set(key, counter)
  }

  const lock = (counter: Counter, at: number): void => {
    counter.lockedUntil = at + lockout
    counter.failures = 0
    counter.windowStart = at
  }

  const bump = (key: string, limit: number, at: number): void => {
    const counter = current(key, at)
    if (counter.lockedUntil <= at) {
      counter.failures++
      if (counter.failures > limit) lock(counter, at)
    }
    store(key, counter)
  }

  /** Takes back a reservation; a counter left with nothing to remember is dropped. */
  const release = (key: string): void => {
    const counter = counters.peek(key)
    if (!counter) return
    counter.pending = Math.max(0, counter.pending - 1)
    if (counter.pending === 0 && counter.failures === 0 && counter.lockedUntil === 0) counters.delete(key)
  }

  const waitMs = (key: string, at: number): number => {
    const counter = counters.peek(key)
    if (!counter) return 0
    if (counter.lockedUntil > at) return counter.lockedUntil - at
    if (at - counter.windowStart >= window && counter.pending === 0) counters.delete(key)
    return 0
  }

  // Shared counters are keyed by a hash: user names and addresses never reach Redis as they are.
  const sharedKey = (key: string): string => `throttle:${createHash('sha256').update(key).digest('base64url')}`
  const shared = deps.shared
  const writes = new Set<Promise<void>>()
  const share = (work: () => Promise<unknown>): void => {
    // The local counters already hold; an unreachable engine only loses the sharing.
    const write: Promise<void> = work().then(
      () => void writes.delete(write),
      () => void writes.delete(write),
    )
    writes.add(write)
  }

  /** A lock another instance set, kept here until it ends so the next attempts need not ask. */
  const adopt = (key: string, lockMs: number, at: number): void => {
    const counter = current(key, at)
    counter.lockedUntil = Math.max(counter.lockedUntil, at + lockMs)
    store(key, counter)
  }

  const countFailure = (user: string, ip: string): void => {
    if (!enabled) return
    const at = now()
    bump(pairKey(user, ip), pairLimit, at)
    if (ipLimit > 0) bump(ipKey(ip), ipLimit, at)
    if (shared) {
      share(() => shared.hit(sharedKey(pairKey(user, ip)), { limit: pairLimit, windowMs: window, lockMs: lockout }))
      if (ipLimit > 0) share(() => shared.hit(sharedKey(ipKey(ip)), { limit: ipLimit, windowMs: window, lockMs: lockout }))
    }
  }

  const localWait = (user: string, ip: string, at: number): number =>
    Math.max(waitMs(pairKey(user, ip), at), ipLimit > 0 ? waitMs(ipKey(ip), at) : 0)

  const unlimited: Attempt = { failed: () => undefined, succeeded: () => undefined, cancelled: () => undefined }

  return {
    retryAfter(user, ip) {
      if (!enabled) return 0
      const wait = localWait(user, ip, now())
      return wait > 0 ? Math.ceil(wait / 1000) : 0
    },
    async check(user, ip) {
      if (!enabled) return 0
      const at = now()
      const local = localWait(user, ip, at)
      if (local > 0 || !shared) return local > 0 ? Math.ceil(local / 1000) : 0
      const keys: string[] = [pairKey(user, ip)]
      if (ipLimit > 0) keys.push(ipKey(ip))
      let remaining: number[]
      try {
        remaining = await Promise.all(keys.map((key) => shared.lockedFor([sharedKey(key)])))
      } catch {
        return 0
      }
      let wait = 0
      keys.forEach((key, index) => {
        const lockMs = remaining[index] ?? 0
        if (lockMs > 0) adopt(key, lockMs, at)
        wait = Math.max(wait, lockMs)
      })
      return wait > 0 ? Math.ceil(wait / 1000) : 0
    },
    async settled() {
      await Promise.all([...writes])
    },
    attempt(user, ip) {
      if (!enabled) return unlimited
      const at = now()
      const keys: Array<[string, number]> = [[pairKey(user, ip), pairLimit]]
      if (ipLimit > 0) keys.push([ipKey(ip), ipLimit])
      const entries = keys.map(([key, limit]) => ({ key, limit, counter: current(key, at) }))
      if (entries.some(({ counter }) => counter.lockedUntil > at)) return undefined
      // Counted before it is checked, as if it will fail: the attempt that could be failure limit+1 is the last
      // one checked, whether attempts come one after another or all at the same instant.
      const over = entries.filter(({ counter, limit }) => counter.failures + counter.pending > limit)
      if (over.length > 0) {
        for (const { key, counter } of over) {
          lock(counter, at)
          store(key, counter)
        }
        return undefined
      }
      for (const { key, counter } of entries) {
        counter.pending++
        store(key, counter)
      }
      let settled = false
      const settle = (failed: boolean): void => {
        if (settled) return
        settled = true
        for (const [key] of keys) release(key)
        if (failed) countFailure(user, ip)
      }
      return { failed: () => settle(true), succeeded: () => settle(false), cancelled: () => settle(false) }
    },
    failed: countFailure,
    succeeded(user, ip) {
      // The IP's count stays: one valid account must not let an address reset its spraying of others.
      counters.delete(pairKey(user, ip))
      if (shared && enabled) share(() => shared.reset(sharedKey(pairKey(user, ip))))
    },
    get size() {
      return counters.size
    },
  }
}
