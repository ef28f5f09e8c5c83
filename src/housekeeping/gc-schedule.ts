// When scheduled garbage collections run: every interval, or daily at a UTC time.
import { parseDuration } from '../config/units.js'

export type GcSchedule = { kind: 'interval'; ms: number } | { kind: 'daily'; hour: number; minute: number }

const DAILY = /^([01]?\d|2[0-3]):([0-5]\d)$/
/** Short intervals are for trying a schedule out (a run pauses pushes while it collects). */
const MIN_INTERVAL_MS = 10_000

/** null: no schedule (""); undefined: not a schedule. */
export function parseSchedule(text: string): GcSchedule | null | undefined {
  const trimmed = text.trim()
  if (trimmed === '') return null
  const daily = DAILY.exec(trimmed)
  if (daily) return { kind: 'daily', hour: Number(daily[1]), minute: Number(daily[2]) }
  // A bare number would be seconds: too easy to misread as hours, so an interval needs its unit.
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return undefined
  const ms = parseDuration(trimmed)
  if (ms === undefined || ms < MIN_INTERVAL_MS || ms > 2 ** 31 - 1) return undefined
  return { kind: 'interval', ms }
}

/** Milliseconds from `now` until the next run. */
export function nextRunDelay(schedule: GcSchedule, now: number): number {
  if (schedule.kind === 'interval') return schedule.ms
  const date = new Date(now)
  let next = Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate(), schedule.hour, schedule.minute)
  if (next <= now) next += 86_400_000
  return next - now
}

/**
 * The next scheduled time after `now` that every instance computes alike (ms since the epoch): an interval's next
 * whole multiple since the epoch, or the daily UTC time. The time is the run's turn, claimed by one instance.
 */
export function nextAlignedRun(schedule: GcSchedule, now: number): number {
  if (schedule.kind === 'interval') return (Math.floor(now / schedule.ms) + 1) * schedule.ms
  return now + nextRunDelay(schedule, now)
}

export interface ScheduleOptions {
  now?: () => number
  /** Runs at the times nextAlignedRun() gives (several instances: the same times everywhere); otherwise an interval counts from start. */
  aligned?: boolean
}

/**
 * Runs `job` on the schedule until the returned stop is called; one run at a time (a slow run delays the next).
 * The job is told the time it was planned for.
 */
export function startSchedule(schedule: GcSchedule, job: (plannedAt: number) => Promise<void>, options: ScheduleOptions = {}): () => void {
  const now = options.now ?? Date.now
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  let last = -Infinity
  const arm = (): void => {
    if (stopped) return
    const at = now()
    // A timer may fire a moment before the wall clock reaches its time: never plan the same time twice.
    const planned = options.aligned ? nextAlignedRun(schedule, Math.max(at, last)) : at + nextRunDelay(schedule, at)
    last = planned
    timer = setTimeout(() => {
      job(planned).catch(() => undefined).then(arm, arm)
    }, Math.max(0, planned - at))
    timer.unref()
  }
  arm()
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}
