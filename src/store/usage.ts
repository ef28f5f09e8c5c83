// Storage over time (module `usage`): samples of the registry storage's disk usage and of each repository's size, for the UI's chart and the admin API.
import type { Migrations, StoreEngine } from './engine.js'

/** The `usage` module's schema, one step per version (append only: never edit a step that has shipped). */
const SQLITE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE storage_samples (
    at INTEGER PRIMARY KEY,
    disk_bytes INTEGER NOT NULL,
    apparent_bytes INTEGER NOT NULL,
    blob_bytes INTEGER NOT NULL,
    repositories INTEGER NOT NULL,
    reason TEXT NOT NULL
  );
  CREATE TABLE repository_sizes (
    at INTEGER NOT NULL,
    repository TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    blobs INTEGER NOT NULL,
    PRIMARY KEY (at, repository)
  ) WITHOUT ROWID;`,
]

const POSTGRES_MIGRATIONS: readonly string[] = [
  `CREATE TABLE storage_samples (
    at BIGINT PRIMARY KEY,
    disk_bytes BIGINT NOT NULL,
    apparent_bytes BIGINT NOT NULL,
    blob_bytes BIGINT NOT NULL,
    repositories INTEGER NOT NULL,
    reason TEXT NOT NULL
  );
  CREATE TABLE repository_sizes (
    at BIGINT NOT NULL,
    repository TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    blobs INTEGER NOT NULL,
    PRIMARY KEY (at, repository)
  );`,
]

export const USAGE_MIGRATIONS: Migrations = { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS }

/** Why a sample was taken. */
export type SampleReason = 'schedule' | 'start' | 'gc'

/** One measurement of the storage; times are milliseconds since the epoch. */
export interface StorageSample {
  at: number
  /** Bytes allocated on disk under the storage root (what `du` reports). */
  diskBytes: number
  /** Sum of the files' sizes (`du --apparent-size`). */
  apparentBytes: number
  /** Bytes of the blobs some manifest of some repository references, each blob counted once overall. */
  blobBytes: number
  repositories: number
  reason: SampleReason
}

/** A repository's size in a sample: every blob its manifests reference, a layer shared by several images counted once. */
export interface RepositorySize {
  repository: string
  bytes: number
  blobs: number
}

type Row = Record<string, unknown>

const count = (value: unknown): number => (typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : 0)

/** Samples kept at most this long by default (a year and a bit: a chart of last year against this one). */
export const DEFAULT_USAGE_KEEP_MS = 400 * 86_400_000

export class StorageUsage {
  /** The module's tables are migrated: every call waits for it. */
  readonly ready: Promise<void>

  constructor(private readonly store: StoreEngine) {
    this.ready = store.migrateModule('usage', USAGE_MIGRATIONS).then(() => undefined)
    this.ready.catch(() => undefined)
  }

  /** Stores a sample and its repository sizes in one transaction; two samples in the same millisecond keep the later one. */
  async record(sample: StorageSample, repositories: readonly RepositorySize[]): Promise<void> {
    await this.ready
    await this.store.atomic([
      { sql: 'DELETE FROM repository_sizes WHERE at = ?', params: [sample.at] },
      {
        sql: `INSERT INTO storage_samples (at, disk_bytes, apparent_bytes, blob_bytes, repositories, reason) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (at) DO UPDATE SET disk_bytes = excluded.disk_bytes, apparent_bytes = excluded.apparent_bytes, blob_bytes = excluded.blob_bytes,
           repositories = excluded.repositories, reason = excluded.reason`,
        params: [sample.at, sample.diskBytes, sample.apparentBytes, sample.blobBytes, sample.repositories, sample.reason],
      },
      ...repositories.map((entry) => ({ sql: 'INSERT INTO repository_sizes (at, repository, bytes, blobs) VALUES (?, ?, ?, ?)', params: [sample.at, entry.repository, entry.bytes, entry.blobs] })),
    ])
  }

  /** Samples from `since` on, oldest first, at most `limit` (the newest ones when there are more). */
  async samples(since = 0, limit = 5000): Promise<StorageSample[]> {
    await this.ready
    const rows = await this.store.all('SELECT at, disk_bytes, apparent_bytes, blob_bytes, repositories, reason FROM storage_samples WHERE at >= ? ORDER BY at DESC LIMIT ?', [since, Math.max(1, Math.floor(limit))])
    return rows.reverse().map((row: Row) => ({
      at: count(row.at),
      diskBytes: count(row.disk_bytes),
      apparentBytes: count(row.apparent_bytes),
      blobBytes: count(row.blob_bytes),
      repositories: count(row.repositories),
      reason: String(row.reason) as SampleReason,
    }))
  }

  /** The newest sample's repository sizes, largest first; undefined before the first sample. */
  async latestRepositories(): Promise<{ at: number; repositories: RepositorySize[] } | undefined> {
    await this.ready
    const [latest] = await this.store.all('SELECT max(at) AS at FROM storage_samples')
    if (latest?.at === null || latest?.at === undefined) return undefined
    const at = count(latest.at)
    const rows = await this.store.all('SELECT repository, bytes, blobs FROM repository_sizes WHERE at = ? ORDER BY bytes DESC, repository', [at])
    return { at, repositories: rows.map((row: Row) => ({ repository: String(row.repository), bytes: count(row.bytes), blobs: count(row.blobs) })) }
  }

  /** One repository's size in each sample from `since` on, oldest first. */
  async repositoryHistory(repository: string, since = 0): Promise<Array<{ at: number; bytes: number }>> {
    await this.ready
    const rows = await this.store.all('SELECT at, bytes FROM repository_sizes WHERE repository = ? AND at >= ? ORDER BY at', [repository, since])
    return rows.map((row: Row) => ({ at: count(row.at), bytes: count(row.bytes) }))
  }

  /** Deletes samples older than `before`; returns how many went. */
  async prune(before: number): Promise<number> {
    await this.ready
    const results = await this.store.atomic([
      { sql: 'DELETE FROM repository_sizes WHERE at < ?', params: [before] },
      { sql: 'DELETE FROM storage_samples WHERE at < ?', params: [before] },
    ])
    return results[1]?.changes ?? 0
  }
}
