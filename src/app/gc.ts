// Start-up step: garbage collection and repository deletes wired to maintenance mode, the router, metrics, the admin API and the schedule (gc.*).
import type { Config } from './config.js'
import type { AuthSetup } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import { findRegistryBinary } from '../embedded/registry.js'
import { GarbageCollector, type GcRun, type MaintenanceSwitch } from '../housekeeping/gc.js'
import { registerGcMetrics } from '../housekeeping/gc-metrics.js'
import { parseSchedule, startSchedule } from '../housekeeping/gc-schedule.js'
import { embeddedTarget, GcUnavailable, upstreamTarget, type GcTarget } from '../housekeeping/gc-target.js'
import { RegistryStorage } from '../housekeeping/registry-storage.js'
import { deleteRepository, type RepositoryDeleted } from '../housekeeping/repository-delete.js'
import { housekeepingRegistry } from '../housekeeping/registry-access.js'
import type { RoutedAnswer } from '../ui/registry-client.js'
import { GcProgressLog, registerGcRoutes, startGc } from '../admin/gc-routes.js'
import type { AdminApi } from '../admin/api.js'
import type { Shutdown } from './shutdown.js'
import type { UiRepositories } from '../ui/api.js'
import type { StatusGc } from '../ui/types.js'
import type { GcHistory } from '../housekeeping/gc-history.js'
import type { RunLocks } from '../housekeeping/run-lock.js'
import type { GcRequest } from '../housekeeping/gc.js'

export interface GcSetup {
  gc: GarbageCollector
  /** Deletes every manifest of a repository (refused in maintenance like any write). */
  deleteRepository(repository: string, by: string): Promise<RepositoryDeleted>
  /** Starts a run in the background (the web UI's "delete and collect"); rejects with AdminError when it cannot start. */
  startRun(dryRun: boolean, deleteUntagged: boolean, by: string, trigger: 'ui' | 'api'): Promise<string>
  /** Starts a run holding the GC lock across instances (retention's collection); rejects with AdminError when it cannot start. */
  startLocked: (request: GcRequest) => Promise<{ runId: string; finished: Promise<GcRun | undefined> }>
  /** The last runs for the status panel, newest first. */
  history(): GcRun[]
  /** Adds POST/GET /admin/api/gc and POST /admin/api/repositories/delete to the admin API. */
  registerRoutes(api: AdminApi): void
  /** The web UI's whole-repository delete and "collect now". */
  ui: UiRepositories
  /** The status panel's GC section. */
  status(): StatusGc
}

export interface GcDeps {
  maintenance: MaintenanceSwitch
  /** Internal registry calls, gated and counted like the web UI's (maintenance, immutable tags, cache eviction). */
  answer: RoutedAnswer
  auth: Pick<AuthSetup, 'issueServiceToken'>
  metrics: Metrics | undefined
  /** Told of every finished run after the metrics (the events module's `gc` action). */
  onFinished?: (run: GcRun) => void
  /** The store's push/pull times: a deleted repository's manifests are forgotten there (these deletes pass no request recorder). */
  times?: { deleted(repository: string, reference: string): void }
  /** Where finished runs are kept across restarts (the store's gc_history). */
  history?: GcHistory
  /** Resolves once a maintenance switch here is stored and announced to the other instances (shared.redis). */
  maintenanceAnnounced?: () => Promise<void>
  /** Several instances: a run (scheduled or manual) holds the GC lock, and each scheduled time runs at one instance. */
  runLocks: RunLocks
}

/** Where GC works, decided at each run (the binary or config file may appear after start). */
function targetFor(config: Config): () => GcTarget {
  const binary = (): string => {
    try {
      return findRegistryBinary(config.gc.binary || config.embedded_registry.binary)
    } catch (error) {
      throw new GcUnavailable(`garbage collection needs the registry binary: ${error instanceof Error ? error.message.split('\n')[0] : String(error)} (set gc.binary)`)
    }
  }
  if (config.upstreams.length === 0) return () => embeddedTarget({ binary: binary(), dataDir: config.embedded_registry.data_dir })
  return () => upstreamTarget(config.gc, binary(), process.cwd())
}

export function createGc(config: Config, log: Logger, shutdown: Shutdown, deps: GcDeps): GcSetup {
  const target = targetFor(config)
  const gcMetrics = deps.metrics ? registerGcMetrics(deps.metrics.registry) : undefined
  const gc = new GarbageCollector({
    target: () => {
      const found = target()
      gcMetrics?.running(true)
      return found
    },
    maintenance: deps.maintenance,
    drainTimeoutMs: config.gc.drain_timeout,
    log,
    ...(deps.maintenanceAnnounced ? { announced: deps.maintenanceAnnounced } : {}),
    ...(deps.history ? { store: deps.history } : {}),
    onFinished: (run) => {
      gcMetrics?.running(false)
      gcMetrics?.finished(run)
      deps.onFinished?.(run)
    },
  })
  // Said once at start: an upstream registry's blob cache would lie about deleted layers after a run.
  if (config.upstreams.length > 0 && config.gc.registry_config !== '') {
    try {
      const warning = target().staleCacheWarning
      if (warning) log.warn({ registry_config: config.gc.registry_config }, warning)
    } catch (error) {
      log.warn({ err: error instanceof Error ? error.message : String(error) }, 'garbage collection is not available')
    }
  }

  // Stopping the gateway mid-run kills the collector; its temporary tags go and maintenance is left.
  shutdown.defer(() => gc.close())
  const progress = new GcProgressLog()
  const registry = housekeepingRegistry(deps.answer, deps.auth, 'portier-admin')
  const removeRepository = async (repository: string, by: string): Promise<RepositoryDeleted> => {
    let storage: RegistryStorage | undefined
    try {
      storage = new RegistryStorage(target().storageRoot)
    } catch {
      // Without the storage only tagged manifests can be found (the registry API lists no others).
    }
    const deleted = await deleteRepository(registry, repository, storage)
    for (const digest of [...deleted.manifests, ...deleted.alreadyGone]) deps.times?.deleted(repository, digest)
    log.info({ repository, by, manifests: deleted.manifests.length, tags: deleted.tags, already_gone: deleted.alreadyGone.length }, 'repository deleted')
    return deleted
  }

  const hold = (): Promise<{ release(): Promise<void> }> => deps.runLocks.hold('gc', 'a garbage collection')
  const schedule = parseSchedule(config.gc.schedule)
  if (schedule) {
    const stop = startSchedule(schedule, (plannedAt) =>
      deps.runLocks.turn('gc', 'garbage collection', plannedAt, async () => {
        try {
          await gc.run({ dryRun: false, deleteUntagged: config.gc.delete_untagged, trigger: 'schedule' }, (line) => progress.record(line))
        } catch (error) {
          log.warn({ err: error instanceof Error ? error.message : String(error) }, 'scheduled garbage collection did not run')
        }
      }).then(() => undefined),
    { aligned: deps.runLocks.shared })
    shutdown.defer(stop)
    log.info({ schedule: config.gc.schedule, delete_untagged: config.gc.delete_untagged, lock: deps.runLocks.engine }, deps.runLocks.shared ? 'garbage collection scheduled; each scheduled time runs at one instance (the lock holder)' : 'garbage collection scheduled')
  }
  const startLocked = (request: GcRequest) => startGc({ gc, progress, log, hold }, request)

  return {
    gc,
    deleteRepository: removeRepository,
    async startRun(dryRun, deleteUntagged, by, trigger) {
      return (await startLocked({ dryRun, deleteUntagged, trigger, by })).runId
    },
    startLocked,
    history: () => gc.history(),
    ui: {
      delete: (repository, by) => removeRepository(repository, by),
      collect: async (by) => (await startLocked({ dryRun: false, deleteUntagged: false, trigger: 'ui', by })).runId,
    },
    status() {
      const running = gc.current()
      return {
        ...(running ? { running: { phase: running.phase, message: running.message } } : {}),
        history: gc.history().slice(0, 10).map((run) => ({
          id: run.id,
          finishedAt: run.finishedAt,
          durationSeconds: run.durationSeconds,
          result: run.result,
          ...(run.error ? { error: run.error } : {}),
          dryRun: run.dryRun,
          deleteUntagged: run.deleteUntagged,
          trigger: run.trigger,
          ...(run.by ? { by: run.by } : {}),
          bytesFreed: run.bytesFreed,
          bytesAfter: run.bytesAfter,
          blobsDeleted: run.blobsDeleted,
          manifestsDeleted: run.manifestsDeleted,
          blobsEligible: run.blobsEligible,
        })),
        schedule: config.gc.schedule,
      }
    },
    registerRoutes: (api) => registerGcRoutes(api, { gc, progress, deleteRepository: removeRepository, schedule: config.gc.schedule, log, hold }),
  }
}
