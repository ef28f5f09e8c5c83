// The admin API's garbage collection and repository routes: POST /admin/api/gc starts a run, GET /admin/api/gc polls its progress and the history, POST /admin/api/repositories/delete deletes a whole repository.
import type { GarbageCollector, GcProgress, GcRequest, GcRun } from '../housekeeping/gc.js'
import { GcBusy } from '../housekeeping/gc.js'
import { GcUnavailable } from '../housekeeping/gc-target.js'
import { RunLockUnavailable, RunningElsewhere } from '../housekeeping/run-lock.js'
import type { HeldSharedLock } from '../shared/index.js'
import type { RepositoryDeleted } from '../housekeeping/repository-delete.js'
import { isValidRepository } from '../registry/names.js'
import { RegistryError } from '../registry/errors.js'
import { AdminError } from '../observe/admin.js'
import type { Logger } from '../observe/log.js'
import { reply, type AdminApi } from './api.js'

export const GC_PATH = '/admin/api/gc'
export const REPOSITORY_DELETE_PATH = '/admin/api/repositories/delete'

/** Progress lines kept per run for pollers (a run prints a few dozen; the collector's are throttled). */
const MAX_EVENTS = 1000

/** The progress of the latest run, line by line, so a poller sees every phase even if it polls slowly. */
export class GcProgressLog {
  private runId: string | undefined
  private events: GcProgress[] = []
  private dropped = 0

  record(progress: GcProgress): void {
    if (progress.runId !== this.runId) {
      this.runId = progress.runId
      this.events = []
      this.dropped = 0
    }
    if (this.events.length >= MAX_EVENTS) {
      // Keep the first lines (the phases) and the newest: drop from the middle.
      this.events.splice(MAX_EVENTS / 2, 1)
      this.dropped += 1
    }
    this.events.push(progress)
  }

  /** The lines of `runId` from index `since` on (an index into every line recorded, dropped ones included). */
  since(runId: string, since: number): { events: GcProgress[]; next: number } | undefined {
    if (runId !== this.runId) return undefined
    const total = this.events.length + this.dropped
    const from = Math.max(0, since - this.dropped)
    return { events: this.events.slice(Math.min(from, this.events.length)), next: total }
  }
}

export interface GcRoutesDeps {
  gc: GarbageCollector
  progress: GcProgressLog
  /** Deletes every manifest of a repository (through routing, as a client's deletes). */
  deleteRepository: (repository: string, by: string) => Promise<RepositoryDeleted>
  /** The configured schedule, for GET. */
  schedule: string
  log: Logger
  /** Takes the GC lock across instances for a run started here (throws RunningElsewhere, RunLockUnavailable); none: one instance. */
  hold?: () => Promise<HeldSharedLock>
}

function flag(body: Record<string, unknown>, name: string): boolean {
  const value = body[name]
  if (value === undefined) return false
  if (typeof value !== 'boolean') throw new AdminError('ADMIN_BAD_REQUEST', { message: `"${name}" must be true or false` })
  return value
}

/**
 * Starts a run in the background; answers at once with its id (poll GET /admin/api/gc?run=ID). With several instances
 * the run holds the GC lock until it ends; refused (AdminError) when a run is going on here or at another instance.
 */
export async function startGc(deps: Pick<GcRoutesDeps, 'gc' | 'progress' | 'log' | 'hold'>, request: GcRequest): Promise<{ runId: string; progress: GcProgress | undefined; finished: Promise<GcRun | undefined> }> {
  const busy = deps.gc.current()
  if (busy) throw gcRefusal(new GcBusy(busy))
  let held: HeldSharedLock | undefined
  try {
    // A dry run deletes nothing: it may run beside another instance's collection.
    held = request.dryRun ? undefined : await deps.hold?.()
  } catch (error) {
    throw gcRefusal(error)
  }
  let started: { runId: string; finished: Promise<GcRun> }
  try {
    started = deps.gc.start(request, (progress) => deps.progress.record(progress))
  } catch (error) {
    await held?.release().catch(() => undefined)
    throw gcRefusal(error)
  }
  // A run reports its own failures (result: failure); a rejection here is a bug to log, not to crash on.
  const finished = started.finished
    .catch((error: unknown) => {
      deps.log.error({ err: error instanceof Error ? error.message : String(error) }, 'garbage collection failed unexpectedly')
      return undefined
    })
    .finally(() => held?.release().catch(() => undefined))
  return { runId: started.runId, progress: deps.gc.current(), finished }
}

function gcRefusal(error: unknown): unknown {
  if (error instanceof GcBusy) return new AdminError('ADMIN_CONFLICT', { message: error.message, detail: { running: error.current } })
  if (error instanceof RunningElsewhere) return new AdminError('ADMIN_CONFLICT', { message: error.message, detail: { running_elsewhere: true } })
  if (error instanceof RunLockUnavailable) return new AdminError('HOUSEKEEPING_LOCK_UNAVAILABLE', { message: error.message, detail: { engine: error.engine } })
  if (error instanceof GcUnavailable) return new AdminError('GC_UNAVAILABLE', { message: error.message })
  return error
}

export function registerGcRoutes(api: AdminApi, deps: GcRoutesDeps): void {
  api.route('POST', GC_PATH, async (call) => {
    const body = await call.json()
    const request: GcRequest = { dryRun: flag(body, 'dry_run'), deleteUntagged: flag(body, 'delete_untagged'), trigger: 'api', by: call.user }
    const started = await startGc(deps, request)
    return reply(202, { run_id: started.runId, progress: started.progress, poll: `${GC_PATH}?run=${started.runId}&since=0` })
  })

  api.route('GET', GC_PATH, async (call) => {
    const runId = call.params.get('run')
    const history = deps.gc.history()
    if (runId === null) return { running: deps.gc.current() ?? null, history, schedule: deps.schedule }
    const sinceText = call.params.get('since') ?? '0'
    const since = Number(sinceText)
    if (!Number.isInteger(since) || since < 0) throw new AdminError('ADMIN_BAD_REQUEST', { message: '"since" must be a whole number ≥ 0' })
    const run = history.find((entry) => entry.id === runId)
    const lines = deps.progress.since(runId, since)
    if (!lines && !run) throw new AdminError('ADMIN_NOT_FOUND', { message: `no garbage collection run ${runId}` })
    return { run_id: runId, events: lines?.events ?? [], next: lines?.next ?? since, done: run !== undefined, ...(run ? { run } : {}) }
  })

  api.route('POST', REPOSITORY_DELETE_PATH, async (call) => {
    const body = await call.json()
    const repository = body.repository
    if (typeof repository !== 'string' || !isValidRepository(repository)) {
      throw new AdminError('ADMIN_BAD_REQUEST', { message: '"repository" must be a repository name like library/alpine' })
    }
    const runGc = flag(body, 'gc')
    let deleted: RepositoryDeleted
    try {
      deleted = await deps.deleteRepository(repository, call.user)
    } catch (error) {
      if (error instanceof RegistryError) {
        const code = error.status === 404 ? 'ADMIN_NOT_FOUND' : error.status === 503 ? 'ADMIN_CONFLICT' : error.status < 500 ? 'ADMIN_BAD_REQUEST' : 'ADMIN_INTERNAL'
        throw new AdminError(code, { message: `${repository}: ${error.message}`, detail: { registry_code: error.code } })
      }
      throw error
    }
    if (!runGc) return { ...deleted, hint: 'the blobs stay on disk until the next garbage collection: run `portier gc`' }
    const started = await startGc(deps, { dryRun: false, deleteUntagged: false, trigger: 'api', by: call.user })
    return { ...deleted, gc: { run_id: started.runId, poll: `${GC_PATH}?run=${started.runId}&since=0` } }
  })
}
