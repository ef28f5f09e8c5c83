// The admin API's retention routes: POST /admin/api/retention starts a run (dry_run lists what would go and why; wait: true answers the report itself), GET /admin/api/retention polls a run or shows the rules and the last runs.
import { AdminError } from '../observe/admin.js'
import { RetentionBusy, type RetentionReport, type RetentionRequest, type RetentionRunner } from '../housekeeping/retention-run.js'
import { RunLockUnavailable, RunningElsewhere } from '../housekeeping/run-lock.js'
import type { Logger } from '../observe/log.js'
import type { RetentionConfig } from '../housekeeping/retention-section.js'
import { reply, type AdminApi } from './api.js'

export const RETENTION_PATH = '/admin/api/retention'

export interface RetentionRoutesDeps {
  runner: RetentionRunner
  config: RetentionConfig
  /** The newest finished runs: the last real one and the last dry run. */
  last: () => { apply?: RetentionReport; dryRun?: RetentionReport }
  /** Starts a run (a real one holding the retention lock across instances); rejects with RetentionBusy, RunningElsewhere or RunLockUnavailable. */
  start: (request: RetentionRequest) => Promise<{ id: string; finished: Promise<RetentionReport> }>
  log: Logger
}

function flag(body: Record<string, unknown>, name: string): boolean {
  const value = body[name] ?? false
  if (typeof value !== 'boolean') throw new AdminError('ADMIN_BAD_REQUEST', { message: `"${name}" must be true or false` })
  return value
}

export function registerRetentionRoutes(api: AdminApi, deps: RetentionRoutesDeps): void {
  api.route('POST', RETENTION_PATH, async (call) => {
    const body = await call.json()
    const dryRun = flag(body, 'dry_run')
    // A large registry takes longer than a client waits for an answer: by default the run goes on in the background.
    const wait = flag(body, 'wait')
    if (deps.config.rules.length === 0) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'no retention rules are configured (retention.rules)' })
    let started: { id: string; finished: Promise<RetentionReport> }
    try {
      started = await deps.start({ dryRun, trigger: 'api', by: call.user })
    } catch (error) {
      if (error instanceof RetentionBusy || error instanceof RunningElsewhere) throw new AdminError('ADMIN_CONFLICT', { message: error.message, ...(error instanceof RunningElsewhere ? { detail: { running_elsewhere: true } } : {}) })
      if (error instanceof RunLockUnavailable) throw new AdminError('HOUSEKEEPING_LOCK_UNAVAILABLE', { message: error.message, detail: { engine: error.engine } })
      throw error
    }
    if (wait) return await started.finished
    started.finished.catch((error: unknown) => deps.log.error({ err: error instanceof Error ? error.message : String(error), retention_run: started.id }, 'retention run failed unexpectedly'))
    return reply(202, { run_id: started.id, poll: `${RETENTION_PATH}?run=${started.id}` })
  })

  // Admins only: the answer lists repositories and tags.
  api.route('GET', RETENTION_PATH, async (call) => {
    const runId = call.params.get('run')
    if (runId !== null) {
      const report = deps.runner.report(runId)
      if (report) return { run_id: runId, done: true, report }
      if (deps.runner.current === runId) return { run_id: runId, done: false }
      throw new AdminError('ADMIN_NOT_FOUND', { message: `no retention run ${runId} (only the newest runs are kept)` })
    }
    const last = deps.last()
    return { schedule: deps.config.schedule, rules: deps.config.rules, running: deps.runner.current ?? null, last_run: last.apply ?? null, last_dry_run: last.dryRun ?? null }
  }, { admin: true })
}
