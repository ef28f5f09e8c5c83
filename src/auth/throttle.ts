// Brute-force throttling: failed logins per user+IP and per IP lock further attempts for a while, in bounded memory.
import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import type { ThrottleConfig } from '../config/schema.js'

export interface Throttle {
  /** Whole seconds this user at this address must wait before trying again (for Retry-After), 0 when allowed. */
  retryAfter(user: string, ip: string): number
  /** Counts a failed login of `user` from `ip`. */
  failed(user: string, ip: string): void
  /** A login succeeded: forgets this user+IP's failures (the IP's own count stays). */
  succeeded(user: string, ip: string): void
  /** Tracked entries (user+IP pairs and IPs), never above the cap. */
  readonly size: number
}

export type ThrottleOptions = Pick<ThrottleConfig, 'max_failures' | 'window' | 'lockout'> & Partial<Pick<ThrottleConfig, 'ip_max_failures'>>

export interface ThrottleDeps {
  /** Milliseconds since the epoch; tests pass their own clock. */
  now?: () => number
  /** Most entries kept; the least recently failed are dropped first. */
  maxEntries?: number
}

export const DEFAULT_MAX_ENTRIES = 10_000

interface Counter {
  failures: number
  windowStart: number
  lockedUntil: number
}

/**
 * The address an attacker cannot cheaply change: IPv4 as is (IPv4-mapped IPv6 unwrapped), IPv6 by
 * its /64, because one host usually holds a whole /64 and could rotate through it.
 */
export function addressKey(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)
  if (mapped) return mapped[1] as string
  const address = ip.replace(/%.*$/, '')
  const version = isIP(address)
  if (version === 4) return address
  if (version !== 6) return ip
  let text = address.toLowerCase()
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const headParts = head === '' ? [] : head.split(':')
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':')
  const zeros = Array<string>(8 - headParts.length - tailParts.length).fill('0')
  const groups = tail === undefined ? headParts : [...headParts, ...zeros, ...tailParts]
  return `${groups.slice(0, 4).map((group) => parseInt(group, 16).toString(16)).join(':')}::/64`
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
  // Map order is recency of the last failure: the first key is the one to drop when full.
  const counters = new Map<string, Counter>()

  // The address part comes first and never contains a newline, so the two keys cannot collide.
  const pairKey = (user: string, ip: string): string => `p:${addressKey(ip)}\n${userKey(user)}`
  const ipKey = (ip: string): string => `i:${addressKey(ip)}`

  const bump = (key: string, limit: number, at: number): void => {
    let counter = counters.get(key)
    if (!counter || (counter.lockedUntil <= at && at - counter.windowStart >= window)) {
      counter = { failures: 0, windowStart: at, lockedUntil: 0 }
    }
    if (counter.lockedUntil <= at) {
      counter.failures++
      if (counter.failures > limit) {
        counter.lockedUntil = at + lockout
        counter.failures = 0
        counter.windowStart = at
      }
    }
    counters.delete(key)
    counters.set(key, counter)
    while (counters.size > maxEntries) counters.delete(counters.keys().next().value as string)
  }

  const waitMs = (key: string, at: number): number => {
    const counter = counters.get(key)
    if (!counter) return 0
    if (counter.lockedUntil > at) return counter.lockedUntil - at
    if (at - counter.windowStart >= window) counters.delete(key)
    return 0
  }

  return {
    retryAfter(user, ip) {
      if (!enabled) return 0
      const at = now()
      const wait = Math.max(waitMs(pairKey(user, ip), at), ipLimit > 0 ? waitMs(ipKey(ip), at) : 0)
      return wait > 0 ? Math.ceil(wait / 1000) : 0
    },
    failed(user, ip) {
      if (!enabled) return
      const at = now()
      bump(pairKey(user, ip), pairLimit, at)
      if (ipLimit > 0) bump(ipKey(ip), ipLimit, at)
    },
    succeeded(user, ip) {
      // The IP's count stays: one valid account must not let an address reset its spraying of others.
      counters.delete(pairKey(user, ip))
    },
    get size() {
      return counters.size
    },
  }
}
