// Fair share of the upstreams: how many exchanges one user and one client address may have open at once.
import type { LimitsConfig } from './section.js'
import { RegistryError } from '../registry/errors.js'
import { RETRY_AFTER_SECONDS } from '../forward/forward.js'

export type FairShareLimit = 'max_exchanges_per_user' | 'max_exchanges_per_address'

export interface Caller {
  /** The authenticated user; undefined for anonymous callers (they are counted by address only). */
  user: string | undefined
  /** The client's address (after trusted proxies). */
  address: string
}

/** Gives back a slot; calling it again does nothing. */
export type Release = () => void

/**
 * Counts open upstream exchanges per user and per address. Without it one client with ~140 slow
 * requests fills an upstream's pool (128 connections) and every other client, health checks
 * included, waits behind it.
 */
export class ExchangeLimiter {
  private readonly users = new Map<string, number>()
  private readonly addresses = new Map<string, number>()

  constructor(
    private readonly config: LimitsConfig['per_client'],
    private readonly onRefused: (limit: FairShareLimit, caller: Caller) => void = () => undefined,
  ) {}

  /** Takes a slot for the caller, or throws 429 TOOMANYREQUESTS (with Retry-After) when its user or address has none left. */
  admit(caller: Caller): Release {
    const { max_exchanges_per_user: perUser, max_exchanges_per_address: perAddress } = this.config
    const user = caller.user
    if (user !== undefined && perUser > 0 && (this.users.get(user) ?? 0) >= perUser) throw this.refuse('max_exchanges_per_user', perUser, caller)
    if (perAddress > 0 && (this.addresses.get(caller.address) ?? 0) >= perAddress) throw this.refuse('max_exchanges_per_address', perAddress, caller)
    if (user !== undefined) add(this.users, user, 1)
    add(this.addresses, caller.address, 1)
    let released = false
    return () => {
      if (released) return
      released = true
      if (user !== undefined) add(this.users, user, -1)
      add(this.addresses, caller.address, -1)
    }
  }

  /** Open exchanges of a user or an address (for tests and the status page). */
  open(key: { user: string } | { address: string }): number {
    return 'user' in key ? this.users.get(key.user) ?? 0 : this.addresses.get(key.address) ?? 0
  }

  private refuse(limit: FairShareLimit, max: number, caller: Caller): RegistryError {
    this.onRefused(limit, caller)
    const who = limit === 'max_exchanges_per_user' ? `user ${caller.user ?? ''}` : `address ${caller.address}`
    return new RegistryError(
      'TOOMANYREQUESTS',
      { limit, max },
      { 'Retry-After': RETRY_AFTER_SECONDS },
      `${who} already has ${max} requests in progress (limits.per_client.${limit}); try again when one has finished`,
    )
  }
}

/** Keeps only positive counts, so the maps stay as small as the set of active clients. */
function add(counts: Map<string, number>, key: string, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta
  if (next > 0) counts.set(key, next)
  else counts.delete(key)
}
