// Housekeeping that must happen once across instances (GC, retention, storage samples): a lock held for the whole run, and each scheduled time claimed by one instance; without a shared engine, runs as a single instance always did.
import type { HeldSharedLock, Locks } from '../shared/index.js'
import type { Logger } from '../observe/log.js'

/** What became of one scheduled time at this instance. */
export type TurnOutcome = 'ran' | 'skipped_locked' | 'skipped_ran_elsewhere' | 'skipped_lock_unavailable'

export const TURN_OUTCOMES: readonly TurnOutcome[] = ['ran', 'skipped_locked', 'skipped_ran_elsewhere', 'skipped_lock_unavailable']

/** The engine the lock lives in: Redis (shared.redis), the primary of server.workers, PostgreSQL advisory locks (store.url), or none (one instance). */
export type RunLockEngine = 'redis' | 'cluster' | 'postgres' | 'local'

/** Another instance holds the job's lock: a manual run answers 409. */
export class RunningElsewhere extends Error {
  override name = 'RunningElsewhere'
  constructor(readonly job: string, what: string) {
    super(`${what} is running on another instance; try again when it has finished`)
  }
}

/** The lock engine does not answer: nothing runs (it might run twice). */
export class RunLockUnavailable extends Error {
  override name = 'RunLockUnavailable'
  constructor(readonly job: string, what: string, readonly engine: RunLockEngine, reason: string) {
    super(`${what} did not start: the lock shared by the instances (${engine}) cannot be reached (${reason}), and without it the run could happen twice`)
  }
}

export interface RunLocksOptions {
  engine: RunLockEngine
  /** Undefined for the local engine. */
  locks: Locks | undefined
  /** How long a lock outlives a holder that stopped renewing it (killed); renewed every third of it while held. */
  ttlMs: number
  log: Logger
  /** Told of every scheduled time's outcome (the metric). */
  onTurn?: (job: string, outcome: TurnOutcome) => void
}

const NO_LOCK: HeldSharedLock = { release: () => Promise.resolve() }

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message || error.name : String(error)
}

/** One per process; src/app hands it to every job that runs on a schedule. */
export class RunLocks {
  readonly engine: RunLockEngine

  constructor(private readonly options: RunLocksOptions) {
    this.engine = options.locks ? options.engine : 'local'
  }

  /** Whether runs are coordinated with other instances (false: one instance, as before). */
  get shared(): boolean {
    return this.engine !== 'local'
  }

  /**
   * The lock of `job` for a run this instance starts (a manual one: admin API, CLI, UI); release it when the run ends.
   * Throws RunningElsewhere when another instance holds it, RunLockUnavailable when the engine does not answer.
   */
  async hold(job: string, what: string): Promise<HeldSharedLock> {
    const { locks } = this.options
    if (!locks) return NO_LOCK
    let held: HeldSharedLock | undefined
    try {
      held = await locks.tryAcquire(`housekeeping:${job}`, this.options.ttlMs)
    } catch (error) {
      throw new RunLockUnavailable(job, what, this.engine, reasonOf(error))
    }
    if (!held) throw new RunningElsewhere(job, what)
    return held
  }

  /**
   * One scheduled time (`plannedAt`, the same at every instance) of `job`: runs `work` here when this instance holds the
   * lock and is the first to claim the time, and skips it otherwise. Never rejects (work's errors are its own to log).
   */
  async turn(job: string, what: string, plannedAt: number, work: () => Promise<void>): Promise<TurnOutcome> {
    const { locks, log } = this.options
    const at = new Date(plannedAt).toISOString()
    const told = (outcome: TurnOutcome): TurnOutcome => {
      this.options.onTurn?.(job, outcome)
      return outcome
    }
    if (!locks) {
      log.debug({ job, turn: at, outcome: 'ran' }, `scheduled ${what}: running`)
      told('ran')
      await work().catch(() => undefined)
      return 'ran'
    }
    let held: HeldSharedLock | undefined
    try {
      held = await locks.tryAcquire(`housekeeping:${job}`, this.options.ttlMs)
    } catch (error) {
      // Fail safe: without the lock the run could happen at two instances; the next time tries again.
      log.warn({ job, turn: at, outcome: 'skipped_lock_unavailable', engine: this.engine, err: reasonOf(error) }, `scheduled ${what}: skipped, the lock shared by the instances cannot be reached`)
      return told('skipped_lock_unavailable')
    }
    if (!held) {
      log.info({ job, turn: at, outcome: 'skipped_locked', engine: this.engine }, `scheduled ${what}: skipped, another instance is running it`)
      return told('skipped_locked')
    }
    try {
      let claimed: boolean
      try {
        claimed = await locks.claimTurn(`housekeeping:${job}`, plannedAt)
      } catch (error) {
        log.warn({ job, turn: at, outcome: 'skipped_lock_unavailable', engine: this.engine, err: reasonOf(error) }, `scheduled ${what}: skipped, the lock shared by the instances cannot be reached`)
        return told('skipped_lock_unavailable')
      }
      if (!claimed) {
        log.debug({ job, turn: at, outcome: 'skipped_ran_elsewhere', engine: this.engine }, `scheduled ${what}: skipped, another instance ran this time already`)
        return told('skipped_ran_elsewhere')
      }
      // Counted as it starts: a scrape during a long run sees it.
      log.info({ job, turn: at, outcome: 'ran', engine: this.engine }, `scheduled ${what}: running here (this instance holds the lock)`)
      told('ran')
      await work().catch(() => undefined)
      return 'ran'
    } finally {
      await held.release().catch(() => undefined)
    }
  }
}
