// Start-up step: retention wired to the registry (routed, gated like the web UI's deletes), the store's push/pull times, garbage collection, metrics, the admin API and the schedule (retention.*).
import { randomUUID } from 'node:crypto'
import type { Config } from './config.js'
import type { AuthSetup } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { GcRequest, GcRun } from '../housekeeping/gc.js'
import type { RunLocks } from '../housekeeping/run-lock.js'
import { RetentionBusy, type RetentionRequest } from '../housekeeping/retention-run.js'
import { parseSchedule, startSchedule } from '../housekeeping/gc-schedule.js'
import type { ImmutableTags } from '../housekeeping/immutable-tags.js'
import { housekeepingRegistry } from '../housekeeping/registry-access.js'
import { registerRetentionMetrics } from '../housekeeping/retention-metrics.js'
import { RetentionRunner, type CollectGarbage, type RetentionReport, type RetentionTimes } from '../housekeeping/retention-run.js'
import type { RoutedAnswer } from '../ui/registry-client.js'
import type { UiRetention } from '../ui/retention.js'
import type { RetentionPreview } from '../ui/types.js'
import { registerRetentionRoutes } from '../admin/retention-routes.js'
import type { AdminApi } from '../admin/api.js'
import type { Shutdown } from './shutdown.js'

export interface RetentionSetup {
  runner: RetentionRunner
  /** The last real run and the last dry run (the web UI's status panel shows the dry run). */
  last(): { apply?: RetentionReport; dryRun?: RetentionReport }
  registerRoutes(api: AdminApi): void
  /** The web UI's status panel: what retention would delete. */
  ui: UiRetention
}

export interface RetentionDeps {
  /** Internal registry calls, gated like the web UI's (maintenance, immutable tags, cache eviction). */
  answer: RoutedAnswer
  auth: Pick<AuthSetup, 'issueServiceToken'>
  times: RetentionTimes
  immutable: ImmutableTags
  /** Starts a collection holding the GC lock across instances (src/app/gc.ts); rejects when one cannot start. */
  startGc: (request: GcRequest) => Promise<{ runId: string; finished: Promise<GcRun | undefined> }>
  metrics: Metrics | undefined
  /** Several instances: a real run (scheduled or manual) holds the retention lock, and each scheduled time runs at one instance. */
  runLocks: RunLocks
}

/** Starts a collection in the background after deletes; answers with its id, or throws why it cannot start. */
function collectAfter(startGc: RetentionDeps['startGc'], log: Logger): CollectGarbage {
  return async (by) => {
    let started: Awaited<ReturnType<RetentionDeps['startGc']>>
    try {
      started = await startGc({ dryRun: false, deleteUntagged: false, trigger: 'retention', ...(by !== undefined ? { by } : {}) })
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the next collection frees this space`)
    }
    started.finished.then(
      (finished) => {
        if (finished) log.info({ gc_run: finished.id, result: finished.result, bytes_freed: finished.bytesFreed }, 'garbage collection after retention finished')
      },
      (error: unknown) => log.warn({ err: error instanceof Error ? error.message : String(error) }, 'garbage collection after retention failed'),
    )
    return { id: started.runId, result: 'started', bytesFreed: 0 }
  }
}

export function createRetention(config: Config, log: Logger, shutdown: Shutdown, deps: RetentionDeps): RetentionSetup {
  const record = deps.metrics ? registerRetentionMetrics(deps.metrics.registry) : undefined
  let lastApply: RetentionReport | undefined
  let lastDryRun: RetentionReport | undefined
  const runner = new RetentionRunner({
    config: config.retention,
    registry: housekeepingRegistry(deps.answer, deps.auth, 'portier-retention'),
    times: deps.times,
    isImmutable: (repository, tag) => deps.immutable.isImmutable(repository, tag),
    collectGarbage: collectAfter(deps.startGc, log),
    log,
    onFinished: (report) => {
      if (report.dryRun) lastDryRun = report
      else lastApply = report
      record?.(report)
    },
  })
  const schedule = parseSchedule(config.retention.schedule)
  if (schedule && config.retention.rules.length > 0) {
    const stop = startSchedule(schedule, (plannedAt) =>
      deps.runLocks.turn('retention', 'retention', plannedAt, async () => {
        try {
          await runner.run({ dryRun: false, trigger: 'schedule' })
        } catch (error) {
          log.warn({ err: error instanceof Error ? error.message : String(error) }, 'scheduled retention did not run')
        }
      }).then(() => undefined),
    { aligned: deps.runLocks.shared })
    shutdown.defer(stop)
    log.info({ schedule: config.retention.schedule, rules: config.retention.rules.length, lock: deps.runLocks.engine }, deps.runLocks.shared ? 'retention scheduled; each scheduled time runs at one instance (the lock holder)' : 'retention scheduled')
  }
  /** A run started here (admin API): a real one holds the retention lock across instances until it ends. */
  const start = async (request: RetentionRequest): Promise<{ id: string; finished: Promise<RetentionReport> }> => {
    if (runner.current !== undefined) throw new RetentionBusy(runner.current)
    const held = request.dryRun ? undefined : await deps.runLocks.hold('retention', 'a retention run')
    const id = randomUUID()
    const finished = runner.run(request, id).finally(() => held?.release().catch(() => undefined))
    // Refused at once (a scheduled run of this instance began meanwhile): rejects here with RetentionBusy.
    if (runner.current !== id) await finished
    return { id, finished }
  }
  const last = (): { apply?: RetentionReport; dryRun?: RetentionReport } => ({ ...(lastApply ? { apply: lastApply } : {}), ...(lastDryRun ? { dryRun: lastDryRun } : {}) })
  const preview = (report: RetentionReport | undefined, error?: string): RetentionPreview => ({
    configured: config.retention.rules.length > 0,
    ...(report ? { ranAt: report.finishedAt, totals: report.totals } : {}),
    deletions: (report?.deletions ?? []).map((entry) => ({ repository: entry.repository, tags: entry.tags, digest: entry.digest, reason: entry.reason })),
    ...(error !== undefined ? { error } : report?.error !== undefined ? { error: report.error } : {}),
  })
  const ui: UiRetention = {
    async preview(refresh, by) {
      if (config.retention.rules.length === 0 || (!refresh && lastDryRun)) return preview(lastDryRun)
      try {
        return preview(await runner.run({ dryRun: true, trigger: 'ui', by }))
      } catch (error) {
        // Another run is in progress: the last dry run, said so.
        return preview(lastDryRun, error instanceof Error ? error.message : String(error))
      }
    },
  }
  return {
    runner,
    last,
    ui,
    registerRoutes: (api) => registerRetentionRoutes(api, { runner, config: config.retention, last, start, log }),
  }
}
