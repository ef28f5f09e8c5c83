// The access_tokens table in the store (SQLite or PostgreSQL): its migrations per engine, and rows to records and back.
import type { Scope } from '../../registry/classify.js'
import type { Migrations } from '../../store/engine.js'

/** Step 1 shipped on SQLite before PostgreSQL was supported: never edit it. */
const SQLITE_MIGRATIONS: readonly string[] = [
  `CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    robot INTEGER NOT NULL,
    local_owner INTEGER NOT NULL,
    scopes TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    last_used_from TEXT,
    revoked_at INTEGER,
    revoked_by TEXT
  );
  CREATE INDEX access_tokens_owner ON access_tokens (owner, created_at);`,
  // The groups a single sign-on or directory owner had when the token was made from their UI session (JSON list).
  'ALTER TABLE access_tokens ADD COLUMN groups TEXT;',
]

/** The same table on PostgreSQL: times in ms as BIGINT; flags stay 0/1 integers so the SQL is the same on both engines. */
const POSTGRES_MIGRATIONS: readonly string[] = [
  `CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    robot INTEGER NOT NULL,
    local_owner INTEGER NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    last_used_from TEXT,
    revoked_at BIGINT,
    revoked_by TEXT
  );
  CREATE INDEX access_tokens_owner ON access_tokens (owner, created_at);`,
  'ALTER TABLE access_tokens ADD COLUMN groups TEXT;',
]

export const ACCESS_TOKEN_MIGRATIONS: Migrations = { sqlite: SQLITE_MIGRATIONS, postgres: POSTGRES_MIGRATIONS }

/** One token as stored, without its hash. Times are ms since the epoch. */
export interface AccessTokenRecord {
  /** Public id (`tok_…`): what lists show and revocation names. */
  id: string
  /** The secret's last 4 characters, to tell tokens apart. */
  hint: string
  /** A label the creator chose (a robot's name for robots). */
  name: string
  /** The account the token acts as: a user, or `robot$NAME`. */
  owner: string
  robot: boolean
  /** The owner was an htpasswd user when the token was made: the token stops working when that user is removed. */
  localOwner: boolean
  scopes: Scope[]
  /**
   * Groups the owner's source vouched for when the token was made from their UI session (single sign-on
   * claims, a directory's groups): the ACL matches them as it matched the owner's. Undefined: none recorded.
   */
  groups: string[] | undefined
  createdAt: number
  createdBy: string
  /** Undefined: never expires. */
  expiresAt: number | undefined
  lastUsedAt: number | undefined
  lastUsedFrom: string | undefined
  revokedAt: number | undefined
  revokedBy: string | undefined
}

type Row = Record<string, unknown>
const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined)
const num = (value: unknown): number | undefined => (typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : undefined)

function scopesOf(value: unknown): Scope[] {
  try {
    const parsed: unknown = JSON.parse(String(value))
    return Array.isArray(parsed) ? (parsed as Scope[]) : []
  } catch {
    // A damaged row grants nothing.
    return []
  }
}

function groupsOf(value: unknown): string[] | undefined {
  if (typeof value !== 'string') return undefined
  try {
    const parsed: unknown = JSON.parse(value)
    return Array.isArray(parsed) ? parsed.filter((group): group is string => typeof group === 'string') : undefined
  } catch {
    // A damaged row vouches for no group.
    return undefined
  }
}

export function recordOf(row: Row): AccessTokenRecord {
  return {
    id: String(row.id),
    hint: String(row.hint),
    name: String(row.name),
    owner: String(row.owner),
    robot: num(row.robot) === 1,
    localOwner: num(row.local_owner) === 1,
    scopes: scopesOf(row.scopes),
    groups: groupsOf(row.groups),
    createdAt: num(row.created_at) ?? 0,
    createdBy: String(row.created_by),
    expiresAt: num(row.expires_at),
    lastUsedAt: num(row.last_used_at),
    lastUsedFrom: text(row.last_used_from),
    revokedAt: num(row.revoked_at),
    revokedBy: text(row.revoked_by),
  }
}

export const COLUMNS = 'id, hint, name, owner, robot, local_owner, scopes, groups, created_at, created_by, expires_at, last_used_at, last_used_from, revoked_at, revoked_by'
/**
 * A new token (?1-?12); for a robot (?13 = 1) only while its account has no live token (?14: now), so two
 * creations racing for one robot name cannot both succeed (on PostgreSQL under ROBOT_LOCK).
 */
export const INSERT = `INSERT INTO access_tokens (id, hash, hint, name, owner, robot, local_owner, scopes, groups, created_at, created_by, expires_at)
  SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12
  WHERE ?13 = 0 OR NOT EXISTS (SELECT 1 FROM access_tokens WHERE owner = ?5 AND robot = 1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?14))`
/** PostgreSQL: robot creations for one name one after the other (the lock ends with the transaction). */
export const ROBOT_LOCK = 'SELECT pg_advisory_xact_lock(hashtext(?)) AS locked'
export const BY_HASH = `SELECT ${COLUMNS} FROM access_tokens WHERE hash = ?`
export const BY_ID = `SELECT ${COLUMNS}, hash FROM access_tokens WHERE id = ?`
export const REVOKE = 'UPDATE access_tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL'
export const TOUCH = 'UPDATE access_tokens SET last_used_at = ?, last_used_from = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)'
export const LIST_ALL = `SELECT ${COLUMNS} FROM access_tokens ORDER BY created_at DESC, id`
export const LIST_OWNER = `SELECT ${COLUMNS} FROM access_tokens WHERE owner = ? ORDER BY created_at DESC, id`
