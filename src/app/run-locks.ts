// Start-up step: the lock scheduled housekeeping takes across instances — in Redis (shared.redis), else PostgreSQL advisory locks (store.url), else none (one instance, as before) — and its metric.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { Shutdown } from './shutdown.js'
import type { SharedState } from '../shared/index.js'
import type { StoreEngine } from '../store/engine.js'
import { storePassword } from '../store/open.js'
import { claimTurn, TURN_MIGRATIONS } from '../store/turns.js'
import { RunLocks } from '../housekeeping/run-lock.js'
import { registerRunLockMetrics } from '../housekeeping/run-lock-metrics.js'

/** The jobs that run on a schedule and write what every instance shares (the metric's job label). */
const JOBS = ['gc', 'retention', 'usage'] as const

export async function startRunLocks(config: Config, log: Logger, shutdown: Shutdown, deps: { store: StoreEngine; shared: SharedState; metrics: Metrics | undefined }): Promise<RunLocks> {
  const onTurn = deps.metrics ? registerRunLockMetrics(deps.metrics.registry, JOBS) : undefined
  const options = { ttlMs: config.shared.redis.lock_ttl, log, ...(onTurn ? { onTurn } : {}) }
  if (deps.shared.locks) return new RunLocks({ engine: deps.shared.engine === 'cluster' ? 'cluster' : 'redis', locks: deps.shared.locks, ...options })
  if (deps.store.kind !== 'postgres') return new RunLocks({ engine: 'local', locks: undefined, ...options })
  const store = deps.store
  await store.migrateModule('schedule', TURN_MIGRATIONS)
  const password = storePassword(config.store)
  // Loaded only with a PostgreSQL store (its client stays out of a SQLite gateway's memory).
  const { AdvisoryLocks } = await import('../store/advisory-locks.js')
  const locks = new AdvisoryLocks({
    url: config.store.url,
    ...(password !== undefined ? { password } : {}),
    connectTimeoutMs: config.store.connect_timeout,
    claimTurn: (name, turn) => claimTurn(store, name, turn),
    onLost: (names, reason) => log.error({ locks: names, reason }, 'housekeeping: the PostgreSQL connection holding locks ended, so the server freed them; another instance may start the same run'),
  })
  shutdown.defer(() => locks.close())
  return new RunLocks({ engine: 'postgres', locks, ...options })
}
