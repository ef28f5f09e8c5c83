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

/**
 * Whether this instance should run `job` in the window of `windowMs` that `now` falls in: true for the
 * first instance of a fleet sharing this PostgreSQL store to ask in that window, false for the others;
 * always true for a SQLite store (one instance) and when PostgreSQL does not answer (the job runs twice
 * rather than not at all: every job asked about here is idempotent).
 */
export async function firstInWindow(store: StoreEngine, job: string, windowMs: number, now: number = Date.now()): Promise<boolean> {
  if (store.kind !== 'postgres') return true
  try {
    await store.migrateModule('schedule', TURN_MIGRATIONS)
    return await claimTurn(store, job, Math.floor(now / windowMs) * windowMs, now)
  } catch {
    return true
  }
}
