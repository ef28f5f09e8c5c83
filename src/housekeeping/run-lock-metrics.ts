// Prometheus metric of scheduled housekeeping across instances: each scheduled time's outcome at this instance (ran, or why it skipped).
import { Counter, type Registry } from 'prom-client'
import { TURN_OUTCOMES, type TurnOutcome } from './run-lock.js'

export function registerRunLockMetrics(registry: Registry, jobs: readonly string[]): (job: string, outcome: TurnOutcome) => void {
  const turns = new Counter({
    name: 'portier_scheduled_runs_total',
    help: 'Scheduled housekeeping times (gc, retention, usage) by outcome at this instance: ran (counted as it starts); skipped_locked (another instance is running it); skipped_ran_elsewhere (another instance ran this time); skipped_lock_unavailable (the lock engine did not answer, so nothing ran).',
    labelNames: ['job', 'outcome'],
    registers: [registry],
  })
  for (const job of jobs) for (const outcome of TURN_OUTCOMES) turns.inc({ job, outcome }, 0)
  return (job, outcome) => turns.inc({ job, outcome })
}
