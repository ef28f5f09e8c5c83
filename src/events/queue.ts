// The persistent event queue: one row per event and endpoint in the store (SQLite or PostgreSQL), committed before delivery starts, removed once delivered; on PostgreSQL one instance at a time delivers an endpoint (a lease).
import type { Migrations, Result, SqlValue, Statement, StoreEngine } from '../store/engine.js'
import type { RegistryEvent } from './envelope.js'

export interface QueuedEvent {
  /** Order of arrival: delivery to one endpoint follows it. */
  seq: number
  endpoint: string
  event: RegistryEvent
  /** When the event was queued (ms since the epoch). */
  queuedAt: number
  attempts: number
  lastError: string | undefined
  dead: boolean
}

export interface EndpointCounts {
  pending: number
  dead: number
  delivered: number
  failed: number
  /** When a POST to the endpoint last succeeded (ms since the epoch). */
  lastSuccessAt: number | undefined
}

/**
 * What delivery needs from a queue; the store's (below) is the one Portier runs. Every call may wait for the
 * store (PostgreSQL); on SQLite each is done before it returns.
 */
export interface EventQueue {
  /** Stored durably once the promise resolves (a crash right after loses nothing). */
  add(endpoint: string, events: readonly RegistryEvent[], now?: number): Promise<void>
  /**
   * Takes or renews the right to deliver `endpoint`'s queue for `ttlMs`: one instance at a time delivers an
   * endpoint, in order. False: another instance holds it. A holder that stops renewing loses it after ttlMs.
   */
  claim(endpoint: string, holder: string, ttlMs: number): Promise<boolean>
  /** Gives the claim up (shutdown): another instance takes the endpoint at once. */
  release(endpoint: string, holder: string): Promise<void>
  /** The oldest pending (not dead) events of `endpoint`, in order. */
  next(endpoint: string, limit: number): Promise<QueuedEvent[]>
  delivered(endpoint: string, seq: number, now?: number): Promise<void>
  /** Counts a failed attempt; returns the attempts made so far. */
  failed(endpoint: string, seq: number, error: string): Promise<number>
  deadLetter(endpoint: string, seq: number, error: string): Promise<void>
  list(options: { endpoint?: string; dead?: boolean; limit?: number }): Promise<QueuedEvent[]>
  /** Dead letters back to pending (in their original order); returns how many. */
  retry(endpoint?: string, now?: number): Promise<number>
  counts(endpoint: string): Promise<EndpointCounts>
  /** Every endpoint with events in the queue, and how many (an endpoint removed from the config keeps its rows). */
  queuedEndpoints(): Promise<Map<string, number>>
}

// The events module's migrations in the store (step i is schema version i + 1): append, never edit.
const SQLITE_MIGRATIONS = [
  `CREATE TABLE event_deliveries (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     endpoint TEXT NOT NULL,
     event_id TEXT NOT NULL,
     body TEXT NOT NULL,
     queued_at INTEGER NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     last_error TEXT,
     dead INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX event_deliveries_by_endpoint ON event_deliveries (endpoint, dead, seq);
   CREATE TABLE event_endpoint_totals (
     endpoint TEXT PRIMARY KEY,
     delivered INTEGER NOT NULL DEFAULT 0,
     failed INTEGER NOT NULL DEFAULT 0,
     last_success_at INTEGER
   )`,
]

// On PostgreSQL several instances share the queue: event_leases says which one delivers an endpoint, until when (the server's clock, ms).
const POSTGRES_MIGRATIONS = [
  `CREATE TABLE event_deliveries (
     seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     endpoint TEXT NOT NULL,
     event_id TEXT NOT NULL,
     body TEXT NOT NULL,
     queued_at BIGINT NOT NULL,
     attempts INTEGER NOT NULL DEFAULT 0,
     last_error TEXT,
     dead INTEGER NOT NULL DEFAULT 0
   );
   CREATE INDEX event_deliveries_by_endpoint ON event_deliveries (endpoint, dead, seq);
   CREATE TABLE event_endpoint_totals (
     endpoint TEXT PRIMARY KEY,
     delivered BIGINT NOT NULL DEFAULT 0,
     failed BIGINT NOT NULL DEFAULT 0,
     last_success_at BIGINT
   );
   CREATE TABLE event_leases (
     endpoint TEXT PRIMARY KEY,
     holder TEXT NOT NULL,
     expires_at BIGINT NOT NULL
   )`,
]

export const EVENTS_MIGRATIONS: Migrations = { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS }

interface Row {
  seq: number
  endpoint: string
  body: string
  queued_at: number
  attempts: number
  last_error: string | null
  dead: number
}

function fromRow(row: Row): QueuedEvent {
  return {
    seq: row.seq,
    endpoint: row.endpoint,
    event: JSON.parse(row.body) as RegistryEvent,
    queuedAt: row.queued_at,
    attempts: row.attempts,
    lastError: row.last_error ?? undefined,
    dead: row.dead === 1,
  }
}

const SQL = {
  insert: 'INSERT INTO event_deliveries (endpoint, event_id, body, queued_at) VALUES (?, ?, ?, ?)',
  pending: 'SELECT * FROM event_deliveries WHERE endpoint = ? AND dead = 0 ORDER BY seq LIMIT ?',
  remove: 'DELETE FROM event_deliveries WHERE endpoint = ? AND seq = ?',
  totals: 'INSERT INTO event_endpoint_totals (endpoint) VALUES (?) ON CONFLICT (endpoint) DO NOTHING',
  countDelivered: 'UPDATE event_endpoint_totals SET delivered = delivered + 1, last_success_at = ? WHERE endpoint = ?',
  countFailed: 'UPDATE event_endpoint_totals SET failed = failed + 1 WHERE endpoint = ?',
  attempt: 'UPDATE event_deliveries SET attempts = attempts + 1, last_error = ? WHERE endpoint = ? AND seq = ? RETURNING attempts',
  bury: 'UPDATE event_deliveries SET dead = 1, last_error = ? WHERE endpoint = ? AND seq = ?',
  states: 'SELECT SUM(CASE WHEN dead = 0 THEN 1 ELSE 0 END) AS pending, SUM(CASE WHEN dead = 1 THEN 1 ELSE 0 END) AS dead FROM event_deliveries WHERE endpoint = ?',
  endpointTotals: 'SELECT delivered, failed, last_success_at FROM event_endpoint_totals WHERE endpoint = ?',
  queuedEndpoints: 'SELECT endpoint, COUNT(*) AS n FROM event_deliveries GROUP BY endpoint',
  // The server's clock decides (instances' clocks may differ): taken when free, expired, or already ours.
  claim: `INSERT INTO event_leases (endpoint, holder, expires_at) VALUES (?1, ?2, (extract(epoch from clock_timestamp()) * 1000)::bigint + ?3)
    ON CONFLICT (endpoint) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
    WHERE event_leases.holder = excluded.holder OR event_leases.expires_at < (extract(epoch from clock_timestamp()) * 1000)::bigint
    RETURNING holder`,
  release: 'DELETE FROM event_leases WHERE endpoint = ? AND holder = ?',
} as const

/** The queue in the store (tables event_deliveries and event_endpoint_totals, and event_leases on PostgreSQL, migrated here). */
export function storeQueue(store: StoreEngine): EventQueue {
  const ready = store.migrateModule('events', EVENTS_MIGRATIONS).then(() => undefined)
  ready.catch(() => undefined)
  const all = async (sql: string, params: SqlValue[]): Promise<Row[]> => {
    await ready
    return (await store.all(sql, params)) as unknown as Row[]
  }
  const atomic = async (statements: Statement[]): Promise<Result[]> => {
    await ready
    return store.atomic(statements)
  }
  // One file, one process: SQLite's queue is always this instance's to deliver.
  const shared = store.kind === 'postgres'

  return {
    async add(endpoint, events, now = Date.now()) {
      if (events.length === 0) return
      // Durable before resolving: committed (SQLite: in the WAL, before add() returns) in one transaction.
      await atomic(events.map((event) => ({ sql: SQL.insert, params: [endpoint, event.id, JSON.stringify(event), now] })))
    },
    async claim(endpoint, holder, ttlMs) {
      if (!shared) return true
      const [result] = await atomic([{ sql: SQL.claim, params: [endpoint, holder, Math.max(1, Math.floor(ttlMs))] }])
      return (result?.rows.length ?? 0) > 0
    },
    async release(endpoint, holder) {
      if (!shared) return
      await atomic([{ sql: SQL.release, params: [endpoint, holder] }])
    },
    next: async (endpoint, limit) => (await all(SQL.pending, [endpoint, limit])).map(fromRow),
    async delivered(endpoint, seq, now = Date.now()) {
      await atomic([
        { sql: SQL.remove, params: [endpoint, seq] },
        { sql: SQL.totals, params: [endpoint] },
        { sql: SQL.countDelivered, params: [now, endpoint] },
      ])
    },
    async failed(endpoint, seq, error) {
      const results = await atomic([
        { sql: SQL.totals, params: [endpoint] },
        { sql: SQL.countFailed, params: [endpoint] },
        { sql: SQL.attempt, params: [error, endpoint, seq] },
      ])
      const row = results[2]?.rows[0] as { attempts?: number } | undefined
      return Number(row?.attempts ?? 0)
    },
    async deadLetter(endpoint, seq, error) {
      await atomic([{ sql: SQL.bury, params: [error, endpoint, seq] }])
    },
    async list({ endpoint, dead, limit = 100 }) {
      const where: string[] = []
      const values: SqlValue[] = []
      if (endpoint !== undefined) {
        where.push('endpoint = ?')
        values.push(endpoint)
      }
      if (dead !== undefined) {
        where.push('dead = ?')
        values.push(dead ? 1 : 0)
      }
      const sql = `SELECT * FROM event_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY endpoint, seq LIMIT ?`
      return (await all(sql, [...values, limit])).map(fromRow)
    },
    async retry(endpoint, now = Date.now()) {
      // A retried event gets a fresh deadletter_after window (its age counts from here).
      const sql = `UPDATE event_deliveries SET dead = 0, attempts = 0, queued_at = ? WHERE dead = 1${endpoint === undefined ? '' : ' AND endpoint = ?'}`
      const [result] = await atomic([{ sql, params: endpoint === undefined ? [now] : [now, endpoint] }])
      return result?.changes ?? 0
    },
    async queuedEndpoints() {
      const rows = (await all(SQL.queuedEndpoints, [])) as unknown as Array<{ endpoint: string; n: number }>
      return new Map(rows.map((row) => [row.endpoint, Number(row.n)]))
    },
    async counts(endpoint) {
      const [state] = (await all(SQL.states, [endpoint])) as unknown as Array<{ pending: number | null; dead: number | null }>
      const [total] = (await all(SQL.endpointTotals, [endpoint])) as unknown as Array<{ delivered: number; failed: number; last_success_at: number | null }>
      return {
        pending: Number(state?.pending ?? 0),
        dead: Number(state?.dead ?? 0),
        delivered: Number(total?.delivered ?? 0),
        failed: Number(total?.failed ?? 0),
        lastSuccessAt: total?.last_success_at ?? undefined,
      }
    },
  }
}
