// Shared hot state between gateway instances (shared.redis): the engine chosen from config, its metric, and the interfaces the features use.
import { readFileSync } from 'node:fs'
import { Gauge, type Registry } from 'prom-client'
import type { Logger } from '../observe/log.js'
import { createLocalShared } from './local.js'
import type { SharedConfig } from './section.js'
import type { Revocations, SharedState } from './types.js'

export type { Bus, CounterRule, Counters, RateRule, HeldSharedLock, Locks, Revocations, SharedState, SharedStatus, SharedValues } from './types.js'
export { sharedSection, sharedProblems, type SharedConfig } from './section.js'
export { createLocalCounters, takeFromBucket } from './local.js'

/** Revocations in this process only (what a feature uses when it is given no shared state). */
export function localRevocations(): Revocations {
  return createLocalShared().revocations
}

/**
 * The engine shared.redis names, or this process alone without one. Connects in the background.
 * The Redis client (~8 MiB of memory) is loaded only when shared.redis.url is set.
 */
export async function openShared(config: SharedConfig, log: Logger): Promise<SharedState> {
  const redis = config.redis
  if (redis.url === '') return createLocalShared()
  const password = redis.password_file === '' ? '' : readFileSync(redis.password_file, 'utf8').trim()
  const ca = redis.ca_file === '' ? undefined : readFileSync(redis.ca_file, 'utf8')
  const { createRedisShared, redacted } = await import('./redis.js')
  log.info({ url: redacted(redis.url), key_prefix: redis.key_prefix }, 'shared state in Redis (shared.redis.url)')
  return createRedisShared({
    url: redis.url,
    username: redis.username,
    password,
    ca,
    keyPrefix: redis.key_prefix,
    connectTimeoutMs: redis.connect_timeout,
    commandTimeoutMs: redis.command_timeout,
    staleAfterMs: redis.stale_after,
    log,
  })
}

/** portier_shared_up: 1 while the shared engine is reachable (always 1 without one). */
export function registerSharedMetrics(registry: Registry, shared: SharedState): void {
  new Gauge({
    name: 'portier_shared_up',
    help: 'Whether the shared state engine (shared.redis) is reachable: 1 yes, 0 no (instances fall back to local state). Always 1 without one.',
    labelNames: ['engine'],
    registers: [registry],
    collect() {
      const status = shared.status()
      this.set({ engine: status.engine }, status.up ? 1 : 0)
    },
  })
}
