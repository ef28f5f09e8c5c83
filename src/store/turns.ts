// Turns of scheduled housekeeping jobs claimed in the store (schedule_turns): the first instance to claim a scheduled time runs it, the others skip it.
import type { Migrations, StoreEngine } from './engine.js'

export const TURN_MIGRATIONS: Migrations = {
  sqlite: ['CREATE TABLE schedule_turns (job TEXT PRIMARY KEY, turn INTEGER NOT NULL, claimed_at TEXT NOT NULL)'],
  postgres: ['CREATE TABLE schedule_turns (job TEXT PRIMARY KEY, turn BIGINT NOT NULL, claimed_at TEXT NOT NULL)'],
}

/** True when `turn` (ms since the epoch) is later than the last turn claimed for `job`, now recorded; false when it or a later one was claimed. Rejects when the store does not answer. */
export async function claimTurn(store: StoreEngine, job: string, turn: number, now: number = Date.now()): Promise<boolean> {
  const [result] = await store.atomic([
    {
      sql: 'INSERT INTO schedule_turns (job, turn, claimed_at) VALUES (?, ?, ?) ON CONFLICT (job) DO UPDATE SET turn = excluded.turn, claimed_at = excluded.claimed_at WHERE schedule_turns.turn < excluded.turn',
      params: [job, Math.trunc(turn), new Date(now).toISOString()],
    },
  ])
  return (result?.changes ?? 0) > 0
}

/** Stores whose schedule_turns table is migrated (or being migrated): once per store, not per claim. */
const migrated = new WeakMap<StoreEngine, Promise<unknown>>()

function windowOf(now: number, windowMs: number): number {
  return Math.floor(now / windowMs) * windowMs
}

/**
 * Whether this instance should run `job` in the window of `windowMs` that `now` falls in: true for the
 * first instance of a fleet sharing this PostgreSQL store to ask in that window, false for the others;
 * always true for a SQLite store (one instance) and when PostgreSQL does not answer (the job runs twice
 * rather than not at all: every job asked about here is idempotent; `onError` hears why).
 */
export async function firstInWindow(store: StoreEngine, job: string, windowMs: number, now: number = Date.now(), onError?: (error: unknown) => void): Promise<boolean> {
  if (store.kind !== 'postgres' || !(windowMs > 0)) return true
  try {
    let migration = migrated.get(store)
    if (!migration) {
      migration = store.migrateModule('schedule', TURN_MIGRATIONS)
      migrated.set(store, migration)
      migration.catch(() => migrated.delete(store))
    }
    await migration
    return await claimTurn(store, job, windowOf(now, windowMs), now)
  } catch (error) {
    onError?.(error)
    return true
  }
}

/**
 * Gives back the window `firstInWindow` granted at `now` when the job did not finish (stopped, or the
 * registry did not answer): an instance that asks later in the same window runs it. Instances that
 * asked meanwhile have skipped it. Never rejects.
 */
export async function giveBackWindow(store: StoreEngine, job: string, windowMs: number, now: number): Promise<void> {
  if (store.kind !== 'postgres' || !(windowMs > 0)) return
  const turn = windowOf(now, windowMs)
  await store.atomic([{ sql: 'UPDATE schedule_turns SET turn = ? WHERE job = ? AND turn = ?', params: [turn - 1, job, turn] }]).catch(() => undefined)
}
