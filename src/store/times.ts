// Push and pull times per repository, tag and manifest digest (the registry keeps none): written from finished requests in batches, read by retention and the UI.
import type { FinishedListener, FinishedRequest } from '../observe/record.js'
import type { Migrations, Row, Statement, StoreEngine } from './engine.js'

/** The `times` module's schema, one step per version and engine (append only: never edit a step that has shipped). */
const SQLITE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE tag_times (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,
    first_seen_at INTEGER NOT NULL,
    first_pushed_at INTEGER,
    last_pushed_at INTEGER,
    last_pulled_at INTEGER,
    pulls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, tag)
  ) WITHOUT ROWID;
  CREATE TABLE manifest_times (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL,
    first_pushed_at INTEGER,
    last_pushed_at INTEGER,
    last_pulled_at INTEGER,
    pulls INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, digest)
  ) WITHOUT ROWID;
  CREATE TABLE daily_pulls (
    repository TEXT NOT NULL,
    day TEXT NOT NULL,
    pulls INTEGER NOT NULL,
    PRIMARY KEY (repository, day)
  ) WITHOUT ROWID;`,
]

const POSTGRES_MIGRATIONS: readonly string[] = [
  `CREATE TABLE tag_times (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,
    first_seen_at BIGINT NOT NULL,
    first_pushed_at BIGINT,
    last_pushed_at BIGINT,
    last_pulled_at BIGINT,
    pulls BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, tag)
  );
  CREATE TABLE manifest_times (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    first_pushed_at BIGINT,
    last_pushed_at BIGINT,
    last_pulled_at BIGINT,
    pulls BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repository, digest)
  );
  CREATE TABLE daily_pulls (
    repository TEXT NOT NULL,
    day TEXT NOT NULL,
    pulls BIGINT NOT NULL,
    PRIMARY KEY (repository, day)
  );`,
]

export const TIMES_MIGRATIONS: Migrations = { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS }

/** Times are milliseconds since the epoch; undefined: never (since Portier started recording). */
export interface TagTimes {
  tag: string
  /** The manifest the tag pointed at when last pushed, pulled or scanned. */
  digest: string | undefined
  /** When Portier first saw the tag: its first push through Portier, or the first scan/pull for older tags. */
  firstSeenAt: number
  firstPushedAt: number | undefined
  /** The last push of this tag (a PUT by tag). */
  pushedAt: number | undefined
  /** The last pull of the tag's current manifest, by this tag or by digest (or another tag naming it): what zot and Harbor call the artifact's pull time. */
  pulledAt: number | undefined
  /** The last pull by this tag name only. */
  tagPulledAt: number | undefined
  /** Pulls (manifest GETs) by this tag name. */
  pulls: number
}

export interface ManifestTimes {
  digest: string
  firstSeenAt: number
  firstPushedAt: number | undefined
  pushedAt: number | undefined
  pulledAt: number | undefined
  /** Manifest GETs of this digest, by digest or by a tag naming it. */
  pulls: number
}

function time(value: unknown): number | undefined {
  return typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : undefined
}

const isDigest = (reference: string): boolean => reference.includes(':')

/** The UTC day of a time, as YYYY-MM-DD. */
export function utcDay(at: number): string {
  return new Date(at).toISOString().slice(0, 10)
}

/** The later of a column (null: never) and a time: what SQLite's max(coalesce(column, 0), at) said, in SQL PostgreSQL speaks too. */
const later = (column: string, at: string): string => `CASE WHEN ${column} IS NULL OR ${column} < ${at} THEN ${at} ELSE ${column} END`

/** Column names are qualified in upserts: PostgreSQL finds a bare name ambiguous (the row, or EXCLUDED). */
const SQL = {
  tagPushed: `INSERT INTO tag_times (repository, tag, digest, first_seen_at, first_pushed_at, last_pushed_at) VALUES (?1, ?2, ?3, ?4, ?4, ?4)
    ON CONFLICT (repository, tag) DO UPDATE SET digest = coalesce(?3, tag_times.digest), first_pushed_at = coalesce(tag_times.first_pushed_at, ?4), last_pushed_at = ${later('tag_times.last_pushed_at', '?4')}`,
  manifestPushed: `INSERT INTO manifest_times (repository, digest, first_seen_at, first_pushed_at, last_pushed_at) VALUES (?1, ?2, ?3, ?3, ?3)
    ON CONFLICT (repository, digest) DO UPDATE SET first_pushed_at = coalesce(manifest_times.first_pushed_at, ?3), last_pushed_at = ${later('manifest_times.last_pushed_at', '?3')}`,
  tagPulled: `INSERT INTO tag_times (repository, tag, digest, first_seen_at, last_pulled_at, pulls) VALUES (?1, ?2, ?3, ?4, ?4, 1)
    ON CONFLICT (repository, tag) DO UPDATE SET digest = coalesce(?3, tag_times.digest), last_pulled_at = ${later('tag_times.last_pulled_at', '?4')}, pulls = tag_times.pulls + 1`,
  manifestPulled: `INSERT INTO manifest_times (repository, digest, first_seen_at, last_pulled_at, pulls) VALUES (?1, ?2, ?3, ?3, 1)
    ON CONFLICT (repository, digest) DO UPDATE SET last_pulled_at = ${later('manifest_times.last_pulled_at', '?3')}, pulls = manifest_times.pulls + 1`,
  dailyPull: `INSERT INTO daily_pulls (repository, day, pulls) VALUES (?, ?, 1) ON CONFLICT (repository, day) DO UPDATE SET pulls = daily_pulls.pulls + 1`,
  // Seen (a scan or a HEAD): first-seen for tags Portier did not know; a known tag only gets its digest filled in.
  tagSeen: `INSERT INTO tag_times (repository, tag, digest, first_seen_at) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (repository, tag) DO UPDATE SET digest = coalesce(?3, tag_times.digest)`,
  manifestSeen: 'INSERT INTO manifest_times (repository, digest, first_seen_at) VALUES (?, ?, ?) ON CONFLICT (repository, digest) DO NOTHING',
  tagDeleted: 'DELETE FROM tag_times WHERE repository = ? AND tag = ?',
  // The registry deletes every tag naming a digest with it.
  tagsOfDigestDeleted: 'DELETE FROM tag_times WHERE repository = ? AND digest = ?',
  manifestDeleted: 'DELETE FROM manifest_times WHERE repository = ? AND digest = ?',
} as const

/**
 * Records and answers push/pull times. Writes are queued on the store (one transaction per tick), so
 * a pull costs a closure and an array push; `at` is injectable for tests and imports.
 */
export class PushPullTimes {
  /** The module's tables are migrated: reads wait for it; the gateway waits for it before serving. */
  readonly ready: Promise<void>

  constructor(
    private readonly store: StoreEngine,
    private readonly clock: () => number = Date.now,
  ) {
    this.ready = store.migrateModule('times', TIMES_MIGRATIONS).then(() => undefined)
    // A failed migration is answered by every read and by the start-up's await; no unhandled rejection here.
    this.ready.catch(() => undefined)
  }

  private write(statements: Statement[]): void {
    if (statements.length > 0) this.store.write(...statements)
  }

  /** A manifest PUT answered 201: by tag (with the digest the registry answered) or by digest. */
  pushed(repository: string, reference: string, digest: string | undefined, at = this.clock()): void {
    const statements: Statement[] = []
    if (!isDigest(reference)) statements.push({ sql: SQL.tagPushed, params: [repository, reference, digest ?? null, at] })
    const manifest = isDigest(reference) ? reference : digest
    if (manifest) statements.push({ sql: SQL.manifestPushed, params: [repository, manifest, at] })
    this.write(statements)
  }

  /** A manifest GET answered 200: the tag (if by tag), the manifest and the repository's day count. */
  pulled(repository: string, reference: string, digest: string | undefined, at = this.clock()): void {
    const statements: Statement[] = []
    if (!isDigest(reference)) statements.push({ sql: SQL.tagPulled, params: [repository, reference, digest ?? null, at] })
    const manifest = isDigest(reference) ? reference : digest
    if (manifest) statements.push({ sql: SQL.manifestPulled, params: [repository, manifest, at] })
    statements.push({ sql: SQL.dailyPull, params: [repository, utcDay(at)] })
    this.write(statements)
  }

  /** A tag (and the manifest it names) known to exist: gets a first-seen time if Portier had none. */
  seen(repository: string, tag: string | undefined, digest: string | undefined, at = this.clock()): void {
    const statements: Statement[] = []
    if (tag !== undefined) statements.push({ sql: SQL.tagSeen, params: [repository, tag, digest ?? null, at] })
    if (digest) statements.push({ sql: SQL.manifestSeen, params: [repository, digest, at] })
    this.write(statements)
  }

  /** A manifest DELETE answered 202: by digest (its tags go with it) or by tag. */
  deleted(repository: string, reference: string): void {
    if (isDigest(reference)) {
      this.write([
        { sql: SQL.tagsOfDigestDeleted, params: [repository, reference] },
        { sql: SQL.manifestDeleted, params: [repository, reference] },
      ])
    } else {
      this.write([{ sql: SQL.tagDeleted, params: [repository, reference] }])
    }
  }

  /** A whole repository deleted: its times go (its daily pull counts stay for the charts). */
  forgetRepository(repository: string): void {
    this.write([
      { sql: 'DELETE FROM tag_times WHERE repository = ?', params: [repository] },
      { sql: 'DELETE FROM manifest_times WHERE repository = ?', params: [repository] },
    ])
  }

  /** Queued writes committed first, so a read sees what this instance recorded. */
  private async read(sql: string, params: Array<string | number> = []): Promise<Row[]> {
    await this.ready
    await this.store.commit()
    return this.store.all(sql, params)
  }

  /** The finished-request listener (Recorder.listen): successful manifest PUTs, GETs, HEADs by tag and DELETEs. */
  listener(): FinishedListener {
    return (finished: FinishedRequest) => {
      const request = finished.request
      const repository = request?.repository
      const reference = request?.reference
      if (!request || !repository || !reference) return
      const digest = finished.contentDigest
      switch (request.op) {
        case 'manifest.put':
          if (finished.status === 201) this.pushed(repository, reference, digest)
          break
        case 'manifest.get':
          if (finished.status === 200) this.pulled(repository, reference, digest)
          break
        case 'manifest.head':
          // Not a pull (clients HEAD to check for updates), but proof the tag exists.
          if (finished.status === 200 && !isDigest(reference)) this.seen(repository, reference, digest)
          break
        case 'manifest.delete':
          if (finished.status === 202) this.deleted(repository, reference)
          break
        default:
          break
      }
    }
  }

  /** Repositories with recorded times, sorted. */
  async repositories(): Promise<string[]> {
    const rows = await this.read('SELECT DISTINCT repository FROM tag_times UNION SELECT DISTINCT repository FROM manifest_times ORDER BY 1')
    return rows.map((row: Row) => String(row.repository))
  }

  /** Every recorded tag of a repository with its times, sorted by tag. Queued writes are committed first. */
  async tagTimes(repository: string): Promise<TagTimes[]> {
    const rows = await this.read(
        `SELECT t.tag, t.digest, t.first_seen_at, t.first_pushed_at, t.last_pushed_at, t.last_pulled_at, t.pulls, m.last_pulled_at AS manifest_pulled_at
         FROM tag_times t LEFT JOIN manifest_times m ON m.repository = t.repository AND m.digest = t.digest
         WHERE t.repository = ? ORDER BY t.tag`,
        [repository],
      )
    return rows.map((row: Row) => {
      const tagPulledAt = time(row.last_pulled_at)
      const manifestPulledAt = time(row.manifest_pulled_at)
      const pulledAt = tagPulledAt === undefined ? manifestPulledAt : manifestPulledAt === undefined ? tagPulledAt : Math.max(tagPulledAt, manifestPulledAt)
      return {
        tag: String(row.tag),
        digest: typeof row.digest === 'string' ? row.digest : undefined,
        firstSeenAt: time(row.first_seen_at) ?? 0,
        firstPushedAt: time(row.first_pushed_at),
        pushedAt: time(row.last_pushed_at),
        pulledAt,
        tagPulledAt,
        pulls: time(row.pulls) ?? 0,
      }
    })
  }

  /** Every recorded manifest of a repository with its times, sorted by digest. */
  async manifestTimes(repository: string): Promise<ManifestTimes[]> {
    const rows = await this.read('SELECT digest, first_seen_at, first_pushed_at, last_pushed_at, last_pulled_at, pulls FROM manifest_times WHERE repository = ? ORDER BY digest', [repository])
    return rows.map((row: Row) => ({
      digest: String(row.digest),
      firstSeenAt: time(row.first_seen_at) ?? 0,
      firstPushedAt: time(row.first_pushed_at),
      pushedAt: time(row.last_pushed_at),
      pulledAt: time(row.last_pulled_at),
      pulls: time(row.pulls) ?? 0,
    }))
  }

  /** Manifest GETs per UTC day for a repository (days without pulls left out), oldest first, from `since` (YYYY-MM-DD). */
  async dailyPulls(repository: string, since = '0000-00-00'): Promise<Array<{ day: string; pulls: number }>> {
    const rows = await this.read('SELECT day, pulls FROM daily_pulls WHERE repository = ? AND day >= ? ORDER BY day', [repository, since])
    return rows.map((row: Row) => ({ day: String(row.day), pulls: time(row.pulls) ?? 0 }))
  }
}
