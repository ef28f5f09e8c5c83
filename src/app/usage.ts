// Start-up step: storage over time and pulls per day — samples of the registry storage into the store (at start, every gc.usage_interval, after each GC), their admin API routes and what the web UI's charts read.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { Shutdown } from './shutdown.js'
import type { AdminApi } from '../admin/api.js'
import { AdminError } from '../observe/admin.js'
import { embeddedTarget, upstreamTarget } from '../housekeeping/gc-target.js'
import { RegistryStorage } from '../housekeeping/registry-storage.js'
import { measureStorage } from '../housekeeping/repository-sizes.js'
import { isValidRepository } from '../registry/names.js'
import type { StoreEngine } from '../store/engine.js'
import { StorageUsage, type SampleReason } from '../store/usage.js'
import { utcDay, type PushPullTimes } from '../store/times.js'
import type { PullsPerDay, StorageOverTime } from '../ui/types.js'
import type { Metrics } from '../observe/metrics.js'
import { registerUsageMetrics } from '../housekeeping/usage-metrics.js'
import type { RunLocks } from '../housekeeping/run-lock.js'
import { startSchedule } from '../housekeeping/gc-schedule.js'

export const USAGE_PATH = '/admin/api/usage'
export const PULLS_PATH = '/admin/api/pulls'
const DAY_MS = 86_400_000
/** The first sample waits this long after start: serving comes first. */
const FIRST_SAMPLE_DELAY_MS = 2_000
const MAX_DAYS = 3660

export interface UsageSetup {
  /** Measures the storage now and stores the sample (one at a time: a call while one runs waits for it, then measures again). */
  sample: (reason: SampleReason) => Promise<void>
  /** Samples from `sinceMs` on and the newest repository sizes. */
  storageOverTime: (sinceMs: number) => Promise<StorageOverTime>
  /** Manifest GETs per UTC day of a repository for the last `days` days (days without pulls are 0), oldest first. */
  pullsPerDay: (repository: string, days: number) => Promise<PullsPerDay>
  registerRoutes(api: AdminApi): void
}

/** The storage root Portier can read (the embedded registry's, or gc.registry_config's); undefined when it has none. */
function storageRootOf(config: Config): string | undefined {
  try {
    if (config.upstreams.length === 0) return embeddedTarget({ binary: '', dataDir: config.embedded_registry.data_dir }).storageRoot
    return upstreamTarget(config.gc, '', process.cwd()).storageRoot
  } catch {
    return undefined
  }
}

/** "30d", "12h" or a whole number of days; undefined when it is neither. */
function sinceParam(text: string | null, now: number, fallbackMs: number): number | undefined {
  if (text === null || text === '') return now - fallbackMs
  const match = /^(\d{1,5})(d|h)?$/.exec(text.trim())
  if (!match) return undefined
  return now - Number(match[1]) * (match[2] === 'h' ? 3_600_000 : DAY_MS)
}

function daysParam(text: string | null): number | undefined {
  if (text === null || text === '') return 30
  const days = Number(text)
  return Number.isInteger(days) && days >= 1 && days <= MAX_DAYS ? days : undefined
}

export function createUsage(config: Config, log: Logger, shutdown: Shutdown, deps: { store: StoreEngine; times: PushPullTimes; metrics: Metrics | undefined; now?: () => number; runLocks?: RunLocks }): UsageSetup {
  const now = deps.now ?? Date.now
  const usage = new StorageUsage(deps.store)
  const root = storageRootOf(config)
  const gauges = deps.metrics && root !== undefined ? registerUsageMetrics(deps.metrics.registry) : undefined
  let running: Promise<void> | undefined
  let again: Promise<void> | undefined
  let closed = false

  const measure = async (reason: SampleReason): Promise<void> => {
    if (root === undefined || closed) return
    const measured = await measureStorage(new RegistryStorage(root), now)
    if (closed) return
    await usage.record(
      { at: measured.at, diskBytes: measured.diskBytes, apparentBytes: measured.apparentBytes, blobBytes: measured.blobBytes, repositories: measured.repositories.length, reason },
      measured.repositories,
    )
    gauges?.sampled({ diskBytes: measured.diskBytes, blobBytes: measured.blobBytes, repositories: measured.repositories.length })
    if (config.gc.usage_keep > 0) await usage.prune(measured.at - config.gc.usage_keep)
    log.debug({ reason, disk_bytes: measured.diskBytes, blob_bytes: measured.blobBytes, repositories: measured.repositories.length }, 'storage sampled')
  }
  const guarded = (reason: SampleReason): Promise<void> =>
    measure(reason).catch((error: unknown) => log.warn({ err: error instanceof Error ? error.message : String(error), storage: root }, 'could not sample the storage\'s usage'))
  const sample = (reason: SampleReason): Promise<void> => {
    if (!running) {
      running = guarded(reason).finally(() => {
        running = undefined
      })
      return running
    }
    // One walk at a time; a sample asked for during one (after a GC) is taken once it is over.
    again ??= running.then(() => {
      again = undefined
      return sample(reason)
    })
    return again
  }

  if (root !== undefined) {
    let timer: NodeJS.Timeout | undefined
    const arm = (delay: number, reason: SampleReason): void => {
      if (closed) return
      timer = setTimeout(() => {
        sample(reason).then(
          () => {
            if (config.gc.usage_interval > 0 && !sharedSchedule) arm(config.gc.usage_interval, 'schedule')
          },
          () => undefined,
        )
      }, delay)
      timer.unref()
    }
    // Several instances measuring one storage: each scheduled time is sampled once, by the instance that claims it.
    const runLocks = deps.runLocks
    const sharedSchedule = runLocks?.shared === true && config.gc.usage_interval > 0
    const stopShared = sharedSchedule && runLocks
      ? startSchedule({ kind: 'interval', ms: config.gc.usage_interval }, (plannedAt) => runLocks.turn('usage', 'storage sample', plannedAt, () => sample('schedule')).then(() => undefined), { aligned: true })
      : undefined
    arm(FIRST_SAMPLE_DELAY_MS, 'start')
    shutdown.defer(async () => {
      closed = true
      clearTimeout(timer)
      stopShared?.()
      await running
    })
  }

  const storageOverTime = async (sinceMs: number): Promise<StorageOverTime> => {
    const latest = await usage.latestRepositories()
    return {
      available: root !== undefined,
      samples: (await usage.samples(sinceMs)).map((entry) => ({
        at: new Date(entry.at).toISOString(),
        diskBytes: entry.diskBytes,
        apparentBytes: entry.apparentBytes,
        blobBytes: entry.blobBytes,
        repositories: entry.repositories,
        reason: entry.reason,
      })),
      ...(latest ? { sizesAt: new Date(latest.at).toISOString(), repositories: latest.repositories } : { repositories: [] }),
    }
  }

  const pullsPerDay = async (repository: string, days: number): Promise<PullsPerDay> => {
    const today = now()
    const first = utcDay(today - (days - 1) * DAY_MS)
    const counted = new Map((await deps.times.dailyPulls(repository, first)).map((entry) => [entry.day, entry.pulls]))
    const series: PullsPerDay['days'] = []
    for (let i = days - 1; i >= 0; i--) {
      const day = utcDay(today - i * DAY_MS)
      series.push({ day, pulls: counted.get(day) ?? 0 })
    }
    return { repository, days: series, total: series.reduce((sum, entry) => sum + entry.pulls, 0) }
  }

  return {
    sample,
    storageOverTime,
    pullsPerDay,
    registerRoutes(api) {
      api.route('GET', USAGE_PATH, async (call) => {
        const since = sinceParam(call.params.get('since'), now(), 30 * DAY_MS)
        if (since === undefined) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'since must be a number of days like 30d or hours like 12h' })
        return storageOverTime(since)
      }, { admin: true })
      api.route('GET', PULLS_PATH, async (call) => {
        const repository = call.params.get('repo') ?? ''
        if (!isValidRepository(repository)) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'repo must name a repository (e.g. team/app)' })
        const days = daysParam(call.params.get('days'))
        if (days === undefined) throw new AdminError('ADMIN_BAD_REQUEST', { message: `days must be a whole number from 1 to ${MAX_DAYS}` })
        return pullsPerDay(repository, days)
      }, { admin: true })
    },
  }
}
