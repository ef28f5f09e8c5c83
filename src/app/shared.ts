// Start-up step: the shared state (shared.redis) and what the features share through it: the maintenance switch and cache invalidations.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { Shutdown } from './shutdown.js'
import { openShared, registerSharedMetrics, type Bus, type SharedState, type SharedValues } from '../shared/index.js'
import type { Maintenance, MaintenanceStatus } from '../housekeeping/maintenance.js'
import type { TagCache } from '../forward/tag-cache.js'
import type { ManifestCache } from '../forward/manifest-cache.js'

/**
 * Opens the engine and waits for it at most shared.redis.connect_timeout: start-up never hangs on Redis.
 * `held`: a worker's state in the primary process (server.workers), used unless shared.redis names an engine.
 */
export async function startShared(config: Config, log: Logger, shutdown: Shutdown, metrics: Metrics | undefined, held?: SharedState): Promise<SharedState> {
  const shared = held && config.shared.redis.url === '' ? held : await openShared(config.shared, log)
  shutdown.defer(() => shared.close())
  if (metrics) registerSharedMetrics(metrics.registry, shared)
  // The primary's state (maintenance on, revocations) is here before the first request.
  if (shared.engine === 'cluster') await shared.connected()
  if (shared.engine === 'redis' && !(await shared.connected())) {
    log.warn({ timeout_ms: config.shared.redis.connect_timeout }, 'shared state: Redis not reached at start; serving with local state, connecting in the background')
  }
  return shared
}

const MAINTENANCE_VALUE = 'maintenance'

interface SharedMaintenance {
  on: boolean
  message: string
  by?: string
  /** Expected end, ms since the epoch. */
  until?: number
  /** How long uploads and pushes begun before may go on, from when the switch is heard (ms); 0: no longer (a collection is about to run). */
  drainMs?: number
}

/**
 * The maintenance switch, followed by every instance: a switch here (admin API, CLI, UI) is stored and
 * announced (through shared.redis, the cluster primary, or the PostgreSQL store's shared_values); one made elsewhere is applied here. While the engine is down each keeps the last known state.
 */
export function shareMaintenance(maintenance: Maintenance, values: SharedValues, log: Logger, settleMs = 0): { announced: () => Promise<void> } {
  let applying = false
  let lastSet: Promise<void> = Promise.resolve()
  const store = (status: MaintenanceStatus, by: string | undefined): void => {
    const value: SharedMaintenance = { on: status.on, message: status.message }
    if (by !== undefined) value.by = by
    if (status.until !== undefined) value.until = Date.parse(status.until)
    // Relative, not a time: the instances' clocks need not agree.
    if (status.on && status.drainUntil !== undefined) value.drainMs = Math.max(0, Date.parse(status.drainUntil) - Date.now())
    // Never rejects: while the engine is down the switch holds here and is stored when it is back.
    // settleMs: values followed by polling (the store) reach the others within it once stored.
    lastSet = values.set(MAINTENANCE_VALUE, JSON.stringify(value)).catch(() => undefined)
      .then(() => (settleMs > 0 ? new Promise<void>((resolve) => setTimeout(resolve, settleMs).unref()) : undefined))
  }
  maintenance.onChange(({ status, by }) => {
    if (!applying) store(status, by)
  })
  values.watch(MAINTENANCE_VALUE, (text) => {
    let value: SharedMaintenance
    try {
      value = JSON.parse(text) as SharedMaintenance
    } catch {
      return
    }
    if (!value.on && !maintenance.isOn) return
    applying = true
    try {
      if (value.on) {
        maintenance.enter({ message: value.message, ...(value.by !== undefined ? { by: value.by } : {}), retryAfterMs: value.until !== undefined ? Math.max(1, value.until - Date.now()) : 0, ...(value.drainMs !== undefined ? { drainTimeoutMs: value.drainMs } : {}) })
        // The collecting instance has waited for the writes in flight everywhere: what was begun before is refused here too.
        if (value.drainMs === 0) maintenance.closeDrain()
      } else maintenance.leave(value.by)
    } finally {
      applying = false
    }
    log.warn({ on: value.on, by: value.by }, value.on ? 'maintenance switched on by another instance: writes refused' : 'maintenance switched off by another instance: writes accepted')
  })
  // On already (maintenance.enabled): stored like a switch made now, so a stored "off" read at start does not cancel it.
  if (maintenance.isOn) {
    const status = maintenance.status()
    store(status, status.by ?? 'config')
  }
  // A collection waits for this before draining: the other instances refuse writes from then on.
  return { announced: () => lastSet }
}

const TAGS_TOPIC = 'tags.moved'
const MANIFESTS_TOPIC = 'manifests.deleted'

/** Tag and manifest caches: the TagCache and ManifestCache events that announce what they forget. */
export interface CacheInvalidation {
  tagMoved(repository: string, reference: string): void
  manifestEvicted(repository: string, digest: string): void
  /** Bind the caches once built; messages before that find nothing to forget. */
  attachTags(cache: TagCache): void
  attachManifests(cache: ManifestCache): void
}

/** A manifest write or delete through one instance makes every instance forget what it may have changed. */
export function shareCacheInvalidation(bus: Bus): CacheInvalidation {
  let tags: TagCache | undefined
  let manifests: ManifestCache | undefined
  const pair = (message: string): [string, string] | undefined => {
    try {
      const parsed = JSON.parse(message) as unknown
      return Array.isArray(parsed) && typeof parsed[0] === 'string' && typeof parsed[1] === 'string' ? [parsed[0], parsed[1]] : undefined
    } catch {
      return undefined
    }
  }
  bus.subscribe(TAGS_TOPIC, (message) => {
    const moved = pair(message)
    if (moved) tags?.forgetReference(moved[0], moved[1])
  })
  bus.subscribe(MANIFESTS_TOPIC, (message) => {
    const deleted = pair(message)
    if (deleted) manifests?.evictDigest(deleted[0], deleted[1])
  })
  // Messages may have been missed while the engine was unreachable: cached answers may be stale.
  bus.onResync(() => {
    tags?.clear()
    manifests?.clear()
  })
  return {
    tagMoved: (repository, reference) => bus.publish(TAGS_TOPIC, JSON.stringify([repository, reference])),
    manifestEvicted: (repository, digest) => bus.publish(MANIFESTS_TOPIC, JSON.stringify([repository, digest])),
    attachTags(cache) {
      tags = cache
    },
    attachManifests(cache) {
      manifests = cache
    },
  }
}
