// The `store` and `audit` config sections: where the persistent store lives, how it batches, and how long the audit trail is kept.
import { z } from 'zod'
import { duration, flag, section, text, whole } from '../config/fields.js'

const TEN_YEARS_MS = 3650 * 86_400_000

/** A PostgreSQL URL, or empty (SQLite at store.path). */
export function postgresUrlProblem(value: string): string | undefined {
  if (value === '') return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return 'a URL like postgres://portier@db.example:5432/portier'
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') return 'a URL starting with postgres:// (or postgresql://)'
  if (!url.hostname) return 'a URL naming the server: postgres://portier@db.example:5432/portier'
  if (url.pathname.length <= 1) return 'a URL naming the database: postgres://portier@db.example:5432/portier'
  return undefined
}

export const storeSection = section({
  /**
   * PostgreSQL instead of the SQLite file, for several gateway instances sharing one store:
   * postgres://user@host:5432/database (the password here, or in password_file). Empty: SQLite at `path`.
   */
  url: text()
    .default('')
    .superRefine((value, context) => {
      const problem = postgresUrlProblem(value)
      if (problem) context.addIssue({ code: 'custom', input: value, message: problem })
    }),
  /** A file holding the PostgreSQL password (one line), for a URL without one. */
  password_file: text().default(''),
  /** Connections the PostgreSQL pool keeps open at most. */
  pool_size: whole({ min: 1, max: 1000 }).default(10),
  /** How long connecting to PostgreSQL may take before the attempt fails. */
  connect_timeout: duration().default(5000),
  /** The SQLite file (beside it SQLite keeps `-wal` and `-shm` files); relative paths are from the working directory. */
  path: text({ pattern: /\S/, expect: 'a file path, e.g. data/portier.db' }).default('data/portier.db'),
  /** Small writes (pull times) wait this long to be committed together in one transaction. */
  flush_interval: duration().default(1000),
  /** Queued writes beyond this are committed at once instead of waiting for the interval. */
  max_pending: whole({ min: 1 }).default(10_000),
  /** At start, read every repository's tags once (in the background) so tags pushed before Portier get a first-seen time. */
  scan: flag().default(true),
  /** Manifest HEADs the start-up scan sends at once. */
  scan_concurrency: whole({ min: 1, max: 64 }).default(4),
  /** A scan that could not read everything (the registry not up yet) runs again after this, then twice as long each time up to 10m, 8 attempts in all; 0: only at start. */
  scan_retry: duration().default(30_000),
}).prefault({})

export const auditSection = section({
  /** Records every state-changing request and every login attempt in the store. */
  enabled: flag().default(true),
  /** Entries older than this are deleted. */
  retention: duration(TEN_YEARS_MS).default(90 * 86_400_000),
  /** How often old entries are pruned. */
  prune_interval: duration().default(3_600_000),
  /** An accepted login (GET /v2/ with credentials, a token) is recorded once per user, credential (password or which access token), client address and user agent in this time; 0 records every one. Refused logins are always recorded. */
  login_interval: duration().default(300_000),
}).prefault({})

export type StoreConfig = z.output<typeof storeSection>
export type AuditConfig = z.output<typeof auditSection>
