// The persistent store: one SQLite file (Node's built-in node:sqlite), schema migrations per module, and one writer that batches small writes into transactions once a second, in slices of a few ms.
import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync, type StatementSync } from 'node:sqlite'
import type { Migrations, Result, Row, SqlValue, Statement, StoreEngine, StoreHealth, StoreWatcher } from './engine.js'

export type { StoreWatcher } from './engine.js'

/** A store that cannot be opened or migrated; the message says what to do. */
export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreError'
  }
}

/** A queued write: runs inside the batch's transaction, on the one connection. */
export type Write = (store: Store) => void

/**
 * A queued write: a function (run under a savepoint of its own, so a throw undoes it alone), or one
 * statement, which needs none: SQLite undoes a failed statement by itself and keeps the transaction. The
 * savepoint around each login audit row was a third of its cost (3.8 against 2.7 µs in node:sqlite here).
 */
export type QueuedWrite = Write | Statement

/**
 * `OR FAIL` is the one conflict clause with which SQLite keeps what a failing statement did before the
 * failure (the rows of a multi-row INSERT before the bad one): such a statement keeps its savepoint, so a
 * queued write stays all or none. (A trigger that RAISEs FAIL would do the same; the store's tables have none.)
 */
const PARTIAL = /\bOR\s+FAIL\b/i
const partialBySql = new Map<string, boolean>()
function keepsPartialChanges(sql: string): boolean {
  let partial = partialBySql.get(sql)
  if (partial === undefined) {
    partial = PARTIAL.test(sql)
    if (partialBySql.size < 1024) partialBySql.set(sql, partial)
  }
  return partial
}

/** SQLITE_NOMEM, SQLITE_IOERR, SQLITE_FULL (primary result codes): failures of the machine, not of a write. */
const STORAGE_FAILURES = new Set([7, 10, 13])

function isStorageFailure(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { errcode?: unknown }).errcode : undefined
  return typeof code === 'number' && STORAGE_FAILURES.has(code & 0xff)
}

export interface StoreOptions {
  /** Opens without writing: no migrations run, no WAL switch; for `portier audit` beside a running gateway. */
  readOnly?: boolean
  /** How long queued writes wait before their batch commits (ms). */
  flushIntervalMs?: number
  /** Queued writes beyond this start committing at once, in the caller's turn, instead of waiting for the tick. */
  maxPending?: number
  /** How long a statement waits for another process's lock (ms) before failing with SQLITE_BUSY. */
  busyTimeoutMs?: number
  /** A queued write that threw, or a batch that could not commit (its writes are kept for the next tick while the queue has room). */
  onError?: (error: unknown, context: { dropped: number }) => void
}

const DEFAULT_FLUSH_MS = 1000
const DEFAULT_MAX_PENDING = 10_000
const DEFAULT_BUSY_MS = 5000
/**
 * How long one commit of queued writes may hold the main thread before the rest wait for the next turn of
 * the event loop (ms). node:sqlite runs in the main thread: one transaction of a second's login entries at
 * 8,000 authenticated requests a second took 25-50 ms, and every request that arrived meanwhile waited
 * (one-connection p99 26-30 ms against a p50 of 0.1 ms). Slices keep that wait to a few ms.
 */
const SLICE_MS = 4
/** Writes run between two looks at the clock (a write takes a few microseconds). */
const CLOCK_EVERY = 32

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  module TEXT NOT NULL,
  version INTEGER NOT NULL,
  applied_at TEXT NOT NULL,
  PRIMARY KEY (module, version)
)`

/**
 * The one connection to the store file. node:sqlite is synchronous, so everything here runs in the main
 * thread in order: there is one writer by construction. Writes that may be lost in a crash without harm
 * (pull times) go through enqueue(), which commits many per transaction, once a tick in slices; writes a caller must
 * know are durable before answering (an event queued for delivery) use transaction().
 */
export class Store implements StoreEngine {
  readonly kind = 'sqlite' as const
  readonly db: DatabaseSync
  readonly path: string
  readonly readOnly: boolean
  private readonly statements = new Map<string, StatementSync>()
  private pending: QueuedWrite[] = []
  private timer: NodeJS.Timeout | undefined
  private nextSlice: NodeJS.Immediate | undefined
  private readonly flushIntervalMs: number
  private readonly maxPending: number
  private readonly onError: (error: unknown, context: { dropped: number }) => void
  private closed = false
  private batches = 0
  private readonly watchers: StoreWatcher[] = []

  private constructor(path: string, db: DatabaseSync, options: StoreOptions) {
    this.path = path
    this.db = db
    this.readOnly = options.readOnly ?? false
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_FLUSH_MS
    this.maxPending = options.maxPending ?? DEFAULT_MAX_PENDING
    this.onError = options.onError ?? (() => undefined)
  }

  get location(): string {
    return this.path
  }

  /** Opens (creating the file and its directory unless read-only) and sets the connection up. */
  static open(path: string, options: StoreOptions = {}): Store {
    const readOnly = options.readOnly ?? false
    let db: DatabaseSync
    try {
      if (!readOnly && path !== ':memory:') mkdirSync(dirname(path), { recursive: true })
      db = new DatabaseSync(path, { readOnly })
    } catch (error) {
      throw new StoreError(`cannot open the store ${JSON.stringify(path)}: ${(error as Error).message}`, { cause: error })
    }
    try {
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? DEFAULT_BUSY_MS))}`)
      if (!readOnly) {
        // WAL: readers (the audit CLI, a backup) never block the writer and the writer never blocks them.
        const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode?: string } | undefined
        if (path !== ':memory:' && mode?.journal_mode !== 'wal') throw new Error(`journal_mode is ${String(mode?.journal_mode)}, WAL was asked for`)
        // NORMAL in WAL mode: a commit is safe against the process dying (SIGKILL, OOM): it is in the WAL
        // before COMMIT returns; only a power loss or OS crash can lose the last commits, never corrupt the
        // file. FULL would fsync on every commit, which the batching exists to avoid.
        db.exec('PRAGMA synchronous = NORMAL')
      }
      db.exec('PRAGMA foreign_keys = ON')
      // A file that is not a database fails here rather than at the first query.
      db.prepare('SELECT count(*) FROM sqlite_master').get()
    } catch (error) {
      db.close()
      throw new StoreError(`cannot use the store ${JSON.stringify(path)}: ${(error as Error).message}`, { cause: error })
    }
    return new Store(path, db, options)
  }

  /** A prepared statement, prepared once per connection. */
  statement(sql: string): StatementSync {
    let prepared = this.statements.get(sql)
    if (!prepared) {
      prepared = this.db.prepare(sql)
      this.statements.set(sql, prepared)
    }
    return prepared
  }

  /** The schema version of a module: how many of its migrations have been applied (0: none, or no table yet). */
  version(module: string): number {
    const exists = this.db.prepare("SELECT 1 AS found FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get()
    if (!exists) return 0
    const row = this.db.prepare('SELECT max(version) AS version FROM schema_migrations WHERE module = ?').get(module) as { version: number | null } | undefined
    return row?.version ?? 0
  }

  /**
   * Brings a module's tables to the last of `steps` (step i is version i + 1), the missing ones in order in
   * one transaction, each recorded in schema_migrations. Steps already applied are skipped, so calling it at
   * every start is the way to use it. A file from a newer Portier (more versions than `steps`) is refused:
   * this code does not know its tables. Read-only stores only check the version.
   */
  migrate(module: string, steps: readonly string[]): number {
    if (this.closed) throw new StoreError('the store is closed')
    const current = this.version(module)
    if (current > steps.length) {
      throw new StoreError(
        `the store ${JSON.stringify(this.path)} holds ${module} schema version ${current}, written by a newer Portier; this one knows up to version ${steps.length}: run the newer Portier, or restore a backup made with this version`,
      )
    }
    if (current === steps.length) return current
    if (this.readOnly) {
      throw new StoreError(`the store ${JSON.stringify(this.path)} holds ${module} schema version ${current}, older than this Portier's ${steps.length}: start the gateway once to upgrade it`)
    }
    this.flush()
    this.db.exec('BEGIN IMMEDIATE')
    try {
      this.db.exec(MIGRATIONS_TABLE)
      // Read again inside the transaction: another process may have migrated since.
      const start = this.version(module)
      const record = this.db.prepare('INSERT INTO schema_migrations (module, version, applied_at) VALUES (?, ?, ?)')
      for (let version = start + 1; version <= steps.length; version++) {
        this.db.exec(steps[version - 1] as string)
        record.run(module, version, new Date().toISOString())
      }
      this.db.exec('COMMIT')
    } catch (error) {
      this.db.exec('ROLLBACK')
      throw new StoreError(`migrating ${module} in the store ${JSON.stringify(this.path)} failed: ${(error as Error).message}`, { cause: error })
    }
    return steps.length
  }

  /** Adds a watcher of commits and lost writes. */
  watch(watcher: StoreWatcher): void {
    this.watchers.push(watcher)
  }

  private report(error: unknown, dropped: number): void {
    this.onError(error, { dropped })
    this.countDropped(dropped)
  }

  private countDropped(dropped: number): void {
    if (dropped > 0) for (const watcher of this.watchers) watcher.dropped(dropped)
  }

  /** Queues a write for the next batch; a full queue starts committing at once. */
  enqueue(write: QueuedWrite): void {
    if (this.closed || this.readOnly) return
    this.pending.push(write)
    if (this.pending.length >= this.maxPending) this.commitSlice()
    else if (this.nextSlice === undefined) this.timer ??= setTimeout(() => this.commitSlice(), this.flushIntervalMs).unref()
  }

  /** Queued writes not yet committed. */
  get queued(): number {
    return this.pending.length
  }

  /** Batches committed since open (for tests and metrics). */
  get committedBatches(): number {
    return this.batches
  }

  /**
   * Commits every queued write in one transaction; returns how many ran. A write that throws is undone
   * alone (a function by its savepoint, a statement by SQLite) and reported; the rest commit. A batch that cannot commit (the disk is full,
   * another process holds the lock past busy_timeout) stays queued for the next tick while it fits.
   */
  flush(): number {
    this.cancelTimers()
    return this.commitQueued(Number.POSITIVE_INFINITY).committed
  }

  /**
   * The tick's commit: one slice of the queue now, and the rest slice by slice in the next turns of the event
   * loop. After a failed commit the rest waits for the retry timer instead.
   */
  private commitSlice(): void {
    this.cancelTimers()
    const { failed } = this.commitQueued(SLICE_MS)
    if (failed || this.closed || this.pending.length === 0) return
    // A write queued during the slice may have started the tick's timer: the next slice comes sooner.
    this.cancelTimers()
    this.nextSlice = setImmediate(() => this.commitSlice()).unref()
  }

  private cancelTimers(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (this.nextSlice) clearImmediate(this.nextSlice)
    this.nextSlice = undefined
  }

  /**
   * Runs queued writes in order in one transaction until the queue is empty or `budgetMs` has passed, and
   * commits them; the writes not reached stay first in the queue. `committed`: how many ran and committed
   * (a write that threw counts: it was undone alone); `failed`: the transaction could not commit.
   */
  private commitQueued(budgetMs: number): { committed: number; failed: boolean } {
    if (this.pending.length === 0 || this.closed) return { committed: 0, failed: false }
    const queue = this.pending
    this.pending = []
    const started = performance.now()
    let failed = 0
    try {
      this.db.exec('BEGIN IMMEDIATE')
    } catch (error) {
      this.requeue(queue, error)
      return { committed: 0, failed: true }
    }
    // Prepared once: parsing the savepoint statements again for every write cost a fifth of a batch's time.
    const savepoint = this.statement('SAVEPOINT queued_write')
    const release = this.statement('RELEASE queued_write')
    let ran = 0
    for (; ran < queue.length; ran++) {
      if (ran > 0 && ran % CLOCK_EVERY === 0 && performance.now() - started > budgetMs) break
      const write = queue[ran] as QueuedWrite
      try {
        if (typeof write === 'function') {
          savepoint.run()
          write(this)
          release.run()
        } else {
          this.statement(write.sql).run(...(write.params ?? []))
        }
      } catch (error) {
        // The disk or memory failed, not the write: the whole batch, this write included, waits for the next tick.
        const machine = isStorageFailure(error)
        if (!machine) {
          failed++
          this.report(error, 1)
        }
        if (machine || (typeof write === 'function' ? !this.undoWrite() : !this.db.isTransaction)) {
          // Or SQLite ended the whole transaction: the writes before this one are undone too, and go back in the queue.
          this.rollback()
          this.pending = [...queue.slice(ran + 1), ...this.pending]
          this.requeue(queue.slice(0, machine ? ran + 1 : ran), error, machine)
          return { committed: 0, failed: true }
        }
      }
    }
    const batch = ran === queue.length ? queue : queue.slice(0, ran)
    if (ran < queue.length) this.pending = [...queue.slice(ran), ...this.pending]
    try {
      this.db.exec('COMMIT')
      this.batches++
      const seconds = (performance.now() - started) / 1000
      for (const watcher of this.watchers) watcher.committed(batch.length - failed, seconds)
    } catch (error) {
      this.rollback()
      this.requeue(batch, error)
      return { committed: 0, failed: true }
    }
    return { committed: batch.length, failed: false }
  }

  /** Ends the batch's transaction, unless SQLite has already ended it (it does on some errors). */
  private rollback(): void {
    try {
      if (this.db.isTransaction) this.db.exec('ROLLBACK')
    } catch {
      // Already over.
    }
  }

  /** Undoes the write that threw, alone; false when SQLite has already ended the whole transaction. */
  private undoWrite(): boolean {
    try {
      this.statement('ROLLBACK TO queued_write').run()
      this.statement('RELEASE queued_write').run()
      return true
    } catch {
      return false
    }
  }

  /** Puts writes that did not commit back first in the queue while it has room; `log: false` when the error was reported already. */
  private requeue(batch: QueuedWrite[], error: unknown, log = true): void {
    const room = Math.max(0, this.maxPending - this.pending.length)
    const kept = batch.slice(0, room)
    this.pending = [...kept, ...this.pending]
    const dropped = batch.length - kept.length
    if (log) this.report(error, dropped)
    else this.countDropped(dropped)
    if (this.pending.length > 0 && !this.closed) this.timer ??= setTimeout(() => this.commitSlice(), this.flushIntervalMs).unref()
  }

  /** Runs `fn` in its own transaction now (after the queued writes), for writes that must be durable before the caller goes on. */
  transaction<T>(fn: (store: Store) => T): T {
    if (this.closed) throw new StoreError('the store is closed')
    this.flush()
    this.db.exec('BEGIN IMMEDIATE')
    try {
      const result = fn(this)
      this.db.exec('COMMIT')
      return result
    } catch (error) {
      this.db.exec('ROLLBACK')
      throw error
    }
  }

  // The StoreEngine interface: node:sqlite answers at once, so each promise is settled when it is returned
  // (an atomic() is committed before the caller's next line, as the events queue has always relied on).

  migrateModule(module: string, migrations: Migrations): Promise<number> {
    try {
      return Promise.resolve(this.migrate(module, migrations.sqlite))
    } catch (error) {
      return Promise.reject(error as Error)
    }
  }

  write(...statements: Statement[]): void {
    const [only] = statements
    if (statements.length === 1 && only !== undefined && !keepsPartialChanges(only.sql)) this.enqueue(only)
    else
      this.enqueue((s) => {
        for (const statement of statements) s.statement(statement.sql).run(...(statement.params ?? []))
      })
  }

  commit(): Promise<number> {
    return Promise.resolve(this.flush())
  }

  all(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
    try {
      return Promise.resolve(this.statement(sql).all(...params) as Row[])
    } catch (error) {
      return Promise.reject(error as Error)
    }
  }

  atomic(statements: readonly Statement[]): Promise<Result[]> {
    try {
      return Promise.resolve(
        this.transaction((s) =>
          statements.map((statement): Result => {
            const prepared = s.statement(statement.sql)
            const params = statement.params ?? []
            if (/^\s*SELECT\b|\bRETURNING\b/i.test(statement.sql)) {
              const rows = prepared.all(...params) as Row[]
              return { rows, changes: rows.length }
            }
            return { rows: [], changes: Number(prepared.run(...params).changes) }
          }),
        ),
      )
    } catch (error) {
      return Promise.reject(error as Error)
    }
  }

  glob(column: string, pattern: string): Statement {
    return { sql: `${column} GLOB ?`, params: [pattern] }
  }

  /** A file that opened is up: a failed write is reported through onError and the dropped counter. */
  health(): StoreHealth {
    return this.closed ? { up: false, reason: 'the store is closed' } : { up: true }
  }

  /** Commits what is queued and closes the connection (SQLite checkpoints the WAL into the file). Idempotent. */
  close(): void {
    if (this.closed) return
    this.flush()
    this.cancelTimers()
    const left = this.pending.length
    this.pending = []
    if (left > 0) this.report(new StoreError(`the store closed with ${left} queued writes that could not be committed`), left)
    this.closed = true
    this.statements.clear()
    this.db.close()
  }
}
