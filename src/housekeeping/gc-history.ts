// Finished garbage collections kept in the store (module `gc_history`): the UI's and the admin API's history survives a restart.
import type { Migrations, StoreEngine } from '../store/engine.js'
import type { GcRun } from './gc.js'

/** The `gc_history` module's schema, one step per version (append only: never edit a step that has shipped). */
const SQLITE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE gc_runs (
    id TEXT PRIMARY KEY,
    finished_at INTEGER NOT NULL,
    result TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    bytes_freed INTEGER NOT NULL,
    bytes_after INTEGER NOT NULL,
    report TEXT NOT NULL
  );
  CREATE INDEX gc_runs_finished ON gc_runs (finished_at);`,
]

const POSTGRES_MIGRATIONS: readonly string[] = [
  `CREATE TABLE gc_runs (
    id TEXT PRIMARY KEY,
    finished_at BIGINT NOT NULL,
    result TEXT NOT NULL,
    dry_run INTEGER NOT NULL,
    bytes_freed BIGINT NOT NULL,
    bytes_after BIGINT NOT NULL,
    report TEXT NOT NULL
  );
  CREATE INDEX gc_runs_finished ON gc_runs (finished_at);`,
]

export const GC_HISTORY_MIGRATIONS: Migrations = { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS }

/** Runs kept at most; older ones are deleted as new ones come. */
const DEFAULT_KEEP = 500

/** The fields every stored report must have to be shown; a row that lacks them (damaged by hand) is skipped. */
function isRun(value: unknown): value is GcRun {
  if (typeof value !== 'object' || value === null) return false
  const run = value as Record<string, unknown>
  return typeof run.id === 'string' && typeof run.finishedAt === 'string' && (run.result === 'success' || run.result === 'failure') && typeof run.bytesFreed === 'number'
}

export class GcHistory {
  /** The module's tables are migrated: every call waits for it. */
  readonly ready: Promise<void>

  constructor(
    private readonly store: StoreEngine,
    private readonly keep = DEFAULT_KEEP,
  ) {
    this.ready = store.migrateModule('gc_history', GC_HISTORY_MIGRATIONS).then(() => undefined)
    this.ready.catch(() => undefined)
  }

  /** Stores a finished run now (in its own transaction: the history must not lose it to a crash right after). */
  async record(run: GcRun): Promise<void> {
    const finishedAt = Date.parse(run.finishedAt)
    await this.ready
    await this.store.atomic([
      {
        sql: `INSERT INTO gc_runs (id, finished_at, result, dry_run, bytes_freed, bytes_after, report) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at, result = excluded.result, dry_run = excluded.dry_run,
           bytes_freed = excluded.bytes_freed, bytes_after = excluded.bytes_after, report = excluded.report`,
        params: [run.id, Number.isFinite(finishedAt) ? finishedAt : 0, run.result, run.dryRun ? 1 : 0, run.bytesFreed, run.bytesAfter, JSON.stringify(run)],
      },
      { sql: 'DELETE FROM gc_runs WHERE id NOT IN (SELECT id FROM gc_runs ORDER BY finished_at DESC, id DESC LIMIT ?)', params: [this.keep] },
    ])
  }

  /** The last `limit` runs, newest first. */
  async list(limit: number): Promise<GcRun[]> {
    await this.ready
    const rows = await this.store.all('SELECT report FROM gc_runs ORDER BY finished_at DESC, id DESC LIMIT ?', [Math.max(0, Math.floor(limit))])
    const runs: GcRun[] = []
    for (const row of rows) {
      try {
        const parsed: unknown = JSON.parse(String(row.report))
        if (isRun(parsed)) runs.push(parsed)
      } catch {
        // A damaged row is left out rather than failing the whole history.
      }
    }
    return runs
  }
}
