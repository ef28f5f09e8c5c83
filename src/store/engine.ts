// What the store's users see: one interface that SQLite (src/store/store.ts) and PostgreSQL (src/store/postgres.ts) implement, so times, audit and the events queue never know the engine.

/** A value bound to a statement's parameter. */
export type SqlValue = string | number | bigint | null

/**
 * One statement and its parameters. Parameters are written as SQLite writes them: `?` (in order) or `?N`
 * (the Nth value); the PostgreSQL engine turns them into `$N`. Write SQL both engines accept: quote the
 * column `"user"`, use CASE instead of two-argument max(), no GLOB (see glob() below).
 */
export interface Statement {
  sql: string
  params?: readonly SqlValue[]
}

export type Row = Record<string, unknown>

/** What one statement of atomic() did: its rows (a SELECT, or RETURNING) and how many rows it changed. */
export interface Result {
  rows: Row[]
  changes: number
}

/** A module's schema steps per engine (step i is version i + 1; append only, never edit a shipped step). */
export interface Migrations {
  sqlite: readonly string[]
  postgres: readonly string[]
}

/** Told of every batch committed and every write lost (metrics). */
export interface StoreWatcher {
  committed(writes: number, seconds: number): void
  /** Writes that threw, or that a failed commit could not keep queued. */
  dropped(count: number): void
}

/** Whether the engine answers; `reason` says why not (for /readyz and the log). */
export interface StoreHealth {
  up: boolean
  reason?: string
}

export type EngineKind = 'sqlite' | 'postgres'

/**
 * The persistent store as its users call it. Writes that may wait (pull times, audit entries) go through
 * write(): they are batched, one transaction per tick, and kept for the next tick while the engine is
 * down (bounded by store.max_pending). Writes a caller must know are durable use atomic().
 */
export interface StoreEngine {
  readonly kind: EngineKind
  /** The file, or the URL without its password: for logs. */
  readonly location: string
  /** Brings the module's tables to its last step; several instances starting at once migrate once. */
  migrateModule(module: string, migrations: Migrations): Promise<number>
  /**
   * Queues statements for the next batch; they run together (all or none). A trigger that RAISEs FAIL
   * breaks that for a single statement in SQLite (it runs without a savepoint of its own): none may.
   */
  write(...statements: Statement[]): void
  /** Commits what write() queued; reads call it first so they see their own writes. */
  commit(): Promise<number>
  all(sql: string, params?: readonly SqlValue[]): Promise<Row[]>
  /** The statements in one transaction, now (after what is queued), in order. */
  atomic(statements: readonly Statement[]): Promise<Result[]>
  /** A condition: `column` matches the shell glob `pattern` (`*`, `?`, `[…]`). */
  glob(column: string, pattern: string): Statement
  /** Writes waiting for the next batch. */
  readonly queued: number
  watch(watcher: StoreWatcher): void
  health(): StoreHealth
  /** Commits what is queued and closes; idempotent. */
  close(): Promise<void> | void
}

/**
 * The value index (1-based) of each `?`/`?N` placeholder in `sql`, numbered as SQLite numbers them: `?N` is N, a
 * bare `?` is one more than the largest number so far. The SQL must not hold `?` inside a string literal.
 */
export function mapPlaceholders(sql: string, replace: (index: number) => string): string {
  let largest = 0
  return sql.replace(/\?(\d+)?/g, (_match, digits: string | undefined) => {
    const index = digits === undefined ? largest + 1 : Number(digits)
    largest = Math.max(largest, index)
    return replace(index)
  })
}

/** SQLite's `?`/`?N` placeholders as PostgreSQL's `$N`. */
export function dollarParams(sql: string): string {
  return mapPlaceholders(sql, (index) => `$${index}`)
}

/** A shell glob as an anchored POSIX regular expression (PostgreSQL's `~`). */
export function globRegex(pattern: string): string {
  let out = '^'
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i] as string
    if (char === '*') out += '.*'
    else if (char === '?') out += '.'
    else if (char === '[') {
      const end = pattern.indexOf(']', i + 2)
      if (end === -1) out += '\\['
      else {
        const body = pattern.slice(i + 1, end)
        out += `[${body}]`
        i = end
      }
    } else out += /[\\^$.|+(){}]/.test(char) ? `\\${char}` : char
  }
  return `${out}$`
}
