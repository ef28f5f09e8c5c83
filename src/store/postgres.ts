// The store on PostgreSQL (store.url), for several gateway instances sharing one store: a pool of connections (node-postgres), migrations under an advisory lock, batched writes kept while the server is down.
import pg from 'pg'
import { dollarParams, globRegex, mapPlaceholders, type Migrations, type Result, type Row, type SqlValue, type Statement, type StoreEngine, type StoreHealth, type StoreWatcher } from './engine.js'
import { StoreError } from './store.js'

export interface PostgresOptions {
  /** postgres://user[:password]@host[:port]/database */
  url: string
  /** Used when the URL carries none (store.password_file). */
  password?: string
  poolSize?: number
  connectTimeoutMs?: number
  flushIntervalMs?: number
  maxPending?: number
  /** How often the server is pinged to tell /readyz whether it answers (ms). */
  healthIntervalMs?: number
  onError?: (error: unknown, context: { dropped: number }) => void
  /** The server went away or came back: said once per change (the log). */
  onHealth?: (health: StoreHealth) => void
}

/** One queued write: statements that run together. */
type Write = readonly Statement[]

/** Every migration of every module runs under this advisory lock: instances starting at once migrate one after the other. */
const MIGRATION_LOCK = 0x706f7274 // "port"

const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  module TEXT NOT NULL,
  version INTEGER NOT NULL,
  applied_at TEXT NOT NULL,
  PRIMARY KEY (module, version)
)`

// bigint (int8: counts, SUM, ms timestamps) and numeric as JS numbers: every value Portier stores fits 2^53.
const INT8 = 20
const NUMERIC = 1700
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary'): unknown => {
    if (oid === INT8 || oid === NUMERIC) return (value: string) => Number(value)
    return pg.types.getTypeParser(oid, format) as unknown
  }) as typeof pg.types.getTypeParser,
}

/** The URL without its password, for logs and errors. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = 'redacted'
    return parsed.toString()
  } catch {
    return 'postgres://(unparsable URL)'
  }
}

/** A value as a SQL literal (pg's escapeLiteral for text: quotes doubled, E'' when a backslash is in it). */
function literal(value: SqlValue | undefined): string {
  if (value === null || value === undefined) return 'NULL'
  if (typeof value === 'bigint') return value.toString()
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new StoreError(`a number the store cannot hold: ${value}`)
    return String(value)
  }
  return pg.escapeLiteral(withoutNul(value))
}

/**
 * PostgreSQL's text holds no NUL character: inlined, it ends the query text and the server refuses the
 * message (08P01, which reads as a lost connection: the batch would be retried for ever); as a parameter,
 * the value (22021). Client input can carry one (a form's user name, a Basic header): it is stored as U+FFFD.
 */
function withoutNul(text: string): string {
  return text.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text
}

/** Query parameters with every string's NUL characters replaced (see withoutNul). */
function storableParams(params: readonly SqlValue[] | undefined): SqlValue[] | undefined {
  return params?.map((value) => (typeof value === 'string' ? withoutNul(value) : value))
}

/**
 * Statements as one text with their values inlined, for one round trip: a batch of thousands of writes costs one
 * exchange with the server instead of one per statement (which the kernel's scheduling makes the whole cost
 * on a busy machine). Values are escaped as libpq does; ?/?N as in dollarParams().
 */
export function inlineStatements(statements: readonly Statement[]): string {
  return statements
    .map((statement) => {
      const params = statement.params ?? []
      return mapPlaceholders(statement.sql, (index) => literal(params[index - 1]))
    })
    .join(';\n')
}

/** The URL with the password from store.password_file when it names none (the pool takes the URL's fields over separate ones). */
function withPassword(url: string, password: string | undefined): string {
  const parsed = new URL(url)
  if (password === undefined || parsed.password) return url
  parsed.password = encodeURIComponent(password)
  return parsed.toString()
}

/** An error that says the server cannot be reached (as opposed to a statement that failed). */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string') {
    // Class 08: connection exception; 57P01-57P03: the server is shutting down or starting.
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true
    if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'EAI_AGAIN'].includes(code)) return true
  }
  return /Connection terminated|connection timeout|Client has encountered a connection error|timeout exceeded when trying to connect|not queryable/i.test(error.message)
}

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error))

export class PostgresStore implements StoreEngine {
  readonly kind = 'postgres' as const
  readonly location: string
  private readonly pool: pg.Pool
  private pending: Write[] = []
  private timer: NodeJS.Timeout | undefined
  private flushing: Promise<number> | undefined
  private readonly flushIntervalMs: number
  private readonly maxPending: number
  private readonly watchers: StoreWatcher[] = []
  private readonly onError: (error: unknown, context: { dropped: number }) => void
  private readonly onHealth: (health: StoreHealth) => void
  private state: StoreHealth = { up: true }
  private readonly pinger: NodeJS.Timeout
  private closed = false
  /** close() has begun: nothing is scheduled any more. */
  private closing = false

  private constructor(options: PostgresOptions) {
    this.location = redactedUrl(options.url)
    this.flushIntervalMs = options.flushIntervalMs ?? 1000
    this.maxPending = options.maxPending ?? 10_000
    this.onError = options.onError ?? (() => undefined)
    this.onHealth = options.onHealth ?? (() => undefined)
    this.pool = new pg.Pool({
      connectionString: withPassword(options.url, options.password),
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 10_000,
      application_name: 'portier',
      types,
    })
    // A pooled client that loses its server while idle: the pool drops it; said through health, never thrown.
    this.pool.on('error', (error) => this.down(error))
    // A client checked out (inside a batch or a transaction) whose server goes away emits 'error' too; without a
    // listener that would be an uncaught exception. The query it runs rejects as well and is handled there.
    this.pool.on('connect', (client) => {
      client.on('error', (error) => this.down(error))
    })
    // ping() catches what the query throws.
    this.pinger = setInterval(() => {
      this.ping().catch(() => undefined)
    }, options.healthIntervalMs ?? 1000).unref()
  }

  /** Connects once (a server that cannot be reached stops the start with the reason). */
  static async open(options: PostgresOptions): Promise<PostgresStore> {
    let url: URL
    try {
      url = new URL(options.url)
    } catch {
      throw new StoreError('store.url is not a URL: expected postgres://user@host:5432/database')
    }
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new StoreError(`store.url must start with postgres:// (got ${url.protocol}//)`)
    const store = new PostgresStore(options)
    try {
      await store.pool.query('SELECT 1')
    } catch (error) {
      await store.close()
      throw new StoreError(`cannot connect to the store ${store.location}: ${message(error)}`, { cause: error })
    }
    return store
  }

  health(): StoreHealth {
    return this.state
  }

  private down(error: unknown): void {
    if (this.closed) return
    const reason = `PostgreSQL at ${this.location} does not answer: ${message(error)}`
    const was = this.state.up
    this.state = { up: false, reason }
    if (was) this.onHealth(this.state)
  }

  private up(): void {
    if (this.state.up || this.closed) return
    this.state = { up: true }
    this.onHealth(this.state)
    // Writes kept while the server was away go now rather than at the next tick.
    if (this.pending.length > 0) this.schedule(0)
  }

  /** Runs `work` and notes whether the server answered. */
  private async track<T>(work: () => Promise<T>): Promise<T> {
    try {
      const result = await work()
      this.up()
      return result
    } catch (error) {
      if (isConnectionError(error)) this.down(error)
      throw error
    }
  }

  private async ping(): Promise<void> {
    if (this.closed) return
    try {
      await this.track(() => this.pool.query('SELECT 1'))
    } catch {
      // Recorded by track().
    }
  }

  async migrateModule(module: string, migrations: Migrations): Promise<number> {
    const steps = migrations.postgres
    return this.track(async () => {
      const client = await this.pool.connect()
      let broken: Error | undefined
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
        try {
          await client.query('BEGIN')
          await client.query(MIGRATIONS_TABLE)
          const found = await client.query<{ version: number | null }>('SELECT max(version) AS version FROM schema_migrations WHERE module = $1', [module])
          const current = Number(found.rows[0]?.version ?? 0)
          if (current > steps.length) {
            throw new StoreError(
              `the store ${this.location} holds ${module} schema version ${current}, written by a newer Portier; this one knows up to version ${steps.length}: run the newer Portier on every instance`,
            )
          }
          for (let version = current + 1; version <= steps.length; version++) {
            await client.query(steps[version - 1] as string)
            await client.query('INSERT INTO schema_migrations (module, version, applied_at) VALUES ($1, $2, $3)', [module, version, new Date().toISOString()])
          }
          await client.query('COMMIT')
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined)
          if (error instanceof StoreError) throw error
          throw new StoreError(`migrating ${module} in the store ${this.location} failed: ${message(error)}`, { cause: error })
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined)
        }
        return steps.length
      } catch (error) {
        if (isConnectionError(error) || (error instanceof StoreError && isConnectionError(error.cause))) broken = error as Error
        throw error
      } finally {
        client.release(broken)
      }
    })
  }

  write(...statements: Statement[]): void {
    if (this.closed) return
    this.pending.push(statements)
    if (this.pending.length >= this.maxPending) this.schedule(0)
    else this.schedule(this.flushIntervalMs)
  }

  private schedule(ms: number): void {
    if (this.closed || this.closing) return
    if (ms === 0 && this.timer) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      this.commit().catch(() => undefined)
    }, ms).unref()
  }

  get queued(): number {
    return this.pending.length
  }

  watch(watcher: StoreWatcher): void {
    this.watchers.push(watcher)
  }

  private report(error: unknown, dropped: number): void {
    this.onError(error, { dropped })
    if (dropped > 0) for (const watcher of this.watchers) watcher.dropped(dropped)
  }

  /** One batch at a time: a commit() while one runs waits for it, then commits what came since. */
  async commit(): Promise<number> {
    while (this.flushing) await this.flushing.catch(() => undefined)
    if (this.pending.length === 0) return 0
    const batch = this.pending
    this.pending = []
    this.flushing = this.flushBatch(batch).finally(() => {
      this.flushing = undefined
    })
    return this.flushing
  }

  /**
   * The batch in one transaction. A statement that fails undoes the try; the batch is then run again with a
   * savepoint per write, so only the failing write is lost (and reported). A server that cannot be reached
   * keeps the whole batch queued (up to max_pending) for the next tick.
   */
  private async flushBatch(batch: Write[]): Promise<number> {
    const started = process.hrtime.bigint()
    let failed = 0
    try {
      await this.track(async () => {
        const client = await this.pool.connect()
        let broken: Error | undefined
        try {
          try {
            // One round trip: BEGIN, every write, COMMIT (an error stops the text there; the transaction is then aborted).
            await client.query(`BEGIN;\n${inlineStatements(batch.flat())};\nCOMMIT`)
            return
          } catch (error) {
            if (isConnectionError(error)) throw error
            await client.query('ROLLBACK')
          }
          // A write failed: again, each write alone in a savepoint.
          await client.query('BEGIN')
          for (const write of batch) {
            await client.query('SAVEPOINT queued_write')
            try {
              for (const statement of write) await client.query(dollarParams(statement.sql), storableParams(statement.params))
              await client.query('RELEASE SAVEPOINT queued_write')
            } catch (error) {
              if (isConnectionError(error)) throw error
              await client.query('ROLLBACK TO SAVEPOINT queued_write')
              failed++
              this.report(error, 1)
            }
          }
          await client.query('COMMIT')
        } catch (error) {
          if (isConnectionError(error)) broken = error as Error
          else await client.query('ROLLBACK').catch(() => undefined)
          throw error
        } finally {
          client.release(broken)
        }
      })
    } catch (error) {
      this.requeue(batch, error)
      return 0
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    for (const watcher of this.watchers) watcher.committed(batch.length - failed, seconds)
    return batch.length
  }

  private requeue(batch: Write[], error: unknown): void {
    const room = Math.max(0, this.maxPending - this.pending.length)
    const kept = batch.slice(0, room)
    this.pending = [...kept, ...this.pending]
    this.report(error, batch.length - kept.length)
    if (this.pending.length > 0) this.schedule(this.flushIntervalMs)
  }

  async all(sql: string, params: readonly SqlValue[] = []): Promise<Row[]> {
    const result = await this.track(() => this.pool.query(dollarParams(sql), storableParams(params)))
    return result.rows as Row[]
  }

  async atomic(statements: readonly Statement[]): Promise<Result[]> {
    if (this.closed) throw new StoreError('the store is closed')
    await this.commit()
    return this.track(async () => {
      const client = await this.pool.connect()
      let broken: Error | undefined
      try {
        if (statements.length === 0) return []
        // One round trip; pg answers a multi-statement text with one result per statement (BEGIN and COMMIT included).
        const answered = (await client.query(`BEGIN;\n${inlineStatements(statements)};\nCOMMIT`)) as unknown as pg.QueryResult | pg.QueryResult[]
        const results = Array.isArray(answered) ? answered.slice(1, -1) : []
        if (results.length !== statements.length) throw new StoreError(`the store answered ${results.length} results for ${statements.length} statements`)
        return results.map((result) => ({ rows: result.rows as Row[], changes: result.rowCount ?? 0 }))
      } catch (error) {
        if (isConnectionError(error)) broken = error as Error
        else await client.query('ROLLBACK').catch(() => undefined)
        throw error
      } finally {
        client.release(broken)
      }
    })
  }

  glob(column: string, pattern: string): Statement {
    return { sql: `${column} ~ ?`, params: [globRegex(pattern)] }
  }

  /** Commits what is queued (if the server answers) and closes the pool. Idempotent. */
  async close(): Promise<void> {
    if (this.closed || this.closing) return
    this.closing = true
    clearInterval(this.pinger)
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.commit().catch(() => undefined)
    if (this.pending.length > 0) this.report(new StoreError(`closing with the store ${this.location} unreachable`), this.pending.length)
    this.closed = true
    this.pending = []
    await this.pool.end().catch(() => undefined)
  }
}
