// Access tokens: created (the secret shown once), listed, revoked at once (on every instance with shared.redis), and verified by the hash of the secret with a short cache.
import { randomBytes } from 'node:crypto'
import type { Scope } from '../../registry/classify.js'
import type { Row, Statement, StoreEngine } from '../../store/engine.js'
import type { Revocations } from '../../shared/index.js'
import { BoundedCache } from '../../lib/bounded-cache.js'
import { RegistryError } from '../../registry/errors.js'
import { generateSecret, hashSecret, isAccessTokenSecret, secretHint } from './secret.js'
import { ACCESS_TOKEN_MIGRATIONS, BY_HASH, BY_ID, INSERT, LIST_ALL, LIST_OWNER, recordOf, REVOKE, ROBOT_LOCK, TOUCH, type AccessTokenRecord } from './table.js'

/** The kind of shared revocation (src/shared) a revoked token is announced under, by its id. */
export const REVOCATION_KIND = 'access-token'

export const ROBOT_PREFIX = 'robot$'
const ROBOT_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$/
const MAX_NAME_LENGTH = 100
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/

/** Why a presented token was refused (the audit trail's outcome). */
export type TokenRefusalReason = 'unknown' | 'revoked' | 'expired' | 'wrong_user' | 'owner_removed'

export type TokenCheck = { ok: true; record: AccessTokenRecord } | { ok: false; reason: TokenRefusalReason; record?: AccessTokenRecord }

/** A token event for the audit trail. Never the secret. */
export interface TokenAuditEvent {
  action: 'token.create' | 'token.revoke' | 'token.refused'
  outcome: string
  /** Who did it (create, revoke) or whose name the refused credentials gave. */
  user: string | undefined
  client: string
  /** `tok_… (name, owner)`: which token. */
  subject: string | undefined
}

export interface CreateRequest {
  /** The user the token acts for (ignored for robots: their owner is `robot$NAME`). */
  owner: string
  name: string
  scopes: Scope[]
  /** Lifetime in ms; 0: never expires. */
  expiresInMs: number
  robot: boolean
  /** The owner's groups from their source (single sign-on, directory), recorded on the token for the ACL. */
  groups?: readonly string[]
  /** Who asked (the owner, or an administrator). */
  by: string
  client: string
}

export interface AccessTokensOptions {
  /** How long a verified token is answered from memory (revocation here clears it at once). */
  cacheTtlMs?: number
  /** Last-used time and address are written at most this often per token (the store batches them). */
  touchIntervalMs?: number
  /** Whether an htpasswd user still exists; tokens of removed local users stop working. */
  accountActive?: (user: string) => boolean
  onAudit?: (event: TokenAuditEvent) => void
  /**
   * Revocations every instance sees (shared.redis): revoke() announces there, and a token cached here is
   * read again from the store when it is revoked there. Without it, revocation holds on this instance at
   * once and on others when their cache entry ends (cache_ttl).
   */
  revocations?: Revocations
  now?: () => number
}

/** Retry-After for a 503 while the store cannot be read. */
const STORE_RETRY_AFTER_SECONDS = 5

/** The 503 for a token the store could not be asked about (not in the cache, the store away): not a wrong token. */
function storeUnavailable(cause: unknown): RegistryError {
  return new RegistryError('UNAVAILABLE', { reason: 'the store cannot be reached to check the access token; try again shortly' }, { 'Retry-After': String(STORE_RETRY_AFTER_SECONDS) }, 'the store cannot be reached', { cause })
}

/** A refusal of a create or revoke request: the API answers it as a 400 (or 404, 409). */
export class AccessTokenError extends Error {
  constructor(
    readonly kind: 'invalid' | 'not_found' | 'conflict',
    message: string,
  ) {
    super(message)
    this.name = 'AccessTokenError'
  }
}

interface Cached {
  record: AccessTokenRecord
  /** When the last-used time was last written (or read) for this token. */
  touchedAt: number
}

const DEFAULT_CACHE_TTL_MS = 30_000
const DEFAULT_TOUCH_INTERVAL_MS = 60_000
/** A revoked token that never expires is announced for this long: far beyond any cache entry (the store says revoked forever). */
const NEVER_EXPIRING_REVOCATION_MS = 30 * 86_400_000

export function describeToken(record: Pick<AccessTokenRecord, 'id' | 'name' | 'owner'>): string {
  return `${record.id} (${record.name}, ${record.owner})`
}

export class AccessTokens {
  /** The table is migrated (on PostgreSQL the first instance migrates, the others wait); every call waits for it. */
  readonly ready: Promise<void>
  private readonly cache: BoundedCache<string, Cached>
  /** Whether a token (by id) is live, for the JWTs issued for it; revocation here updates it at once. */
  private readonly liveById: BoundedCache<string, { expiresAt: number | undefined; revoked: boolean }>
  /** Store reads under way by hash: concurrent first requests with one token share one read. */
  private readonly reading = new Map<string, Promise<AccessTokenRecord | undefined>>()
  private readonly now: () => number
  private readonly touchIntervalMs: number

  constructor(
    private readonly store: StoreEngine,
    private readonly options: AccessTokensOptions = {},
  ) {
    this.ready = store.migrateModule('access_tokens', ACCESS_TOKEN_MIGRATIONS).then(() => undefined)
    // A failed migration is answered by every call and by the start-up's await; no unhandled rejection here.
    this.ready.catch(() => undefined)
    this.now = options.now ?? Date.now
    this.touchIntervalMs = options.touchIntervalMs ?? DEFAULT_TOUCH_INTERVAL_MS
    this.cache = new BoundedCache({ max: 10_000, ttlMs: options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS, now: this.now })
    this.liveById = new BoundedCache({ max: 10_000, ttlMs: options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS, now: this.now })
  }

  /** Makes a token; the secret is in the answer and nowhere else (the store keeps its SHA-256). */
  async create(request: CreateRequest): Promise<{ secret: string; record: AccessTokenRecord }> {
    const name = request.name.trim()
    if (name === '' || name.length > MAX_NAME_LENGTH || CONTROL_CHARACTER.test(name)) {
      throw new AccessTokenError('invalid', `the name must be 1 to ${MAX_NAME_LENGTH} characters on one line`)
    }
    if (request.robot && !ROBOT_NAME.test(name)) {
      throw new AccessTokenError('invalid', 'a robot name is lowercase letters, digits, ".", "_" and "-" (at most 64), e.g. ci-deploy')
    }
    if (!request.robot && (request.owner === '' || request.owner.startsWith(ROBOT_PREFIX))) {
      throw new AccessTokenError('invalid', 'a personal token needs a signed-in user as its owner')
    }
    if (request.scopes.length === 0) throw new AccessTokenError('invalid', 'a token needs at least one scope')
    if (!Number.isSafeInteger(request.expiresInMs) || request.expiresInMs < 0) throw new AccessTokenError('invalid', 'the lifetime must be a duration (0: never expires)')
    await this.ready
    const owner = request.robot ? `${ROBOT_PREFIX}${name}` : request.owner
    const at = this.now()
    const secret = generateSecret()
    // Robots get exactly their scopes: groups would mean nothing to them.
    const groups = !request.robot && request.groups ? [...new Set(request.groups)] : undefined
    const record: AccessTokenRecord = {
      id: `tok_${randomBytes(9).toString('base64url')}`,
      hint: secretHint(secret),
      name,
      owner,
      robot: request.robot,
      localOwner: !request.robot && (this.options.accountActive?.(owner) ?? false),
      scopes: request.scopes.map((scope) => ({ type: scope.type, name: scope.name, actions: [...scope.actions] })),
      groups,
      createdAt: at,
      createdBy: request.by,
      expiresAt: request.expiresInMs > 0 ? at + request.expiresInMs : undefined,
      lastUsedAt: undefined,
      lastUsedFrom: undefined,
      revokedAt: undefined,
      revokedBy: undefined,
    }
    const insert: Statement = {
      sql: INSERT,
      params: [
        record.id, hashSecret(secret), record.hint, record.name, record.owner, record.robot ? 1 : 0, record.localOwner ? 1 : 0,
        JSON.stringify(record.scopes), groups ? JSON.stringify(groups) : null, record.createdAt, record.createdBy, record.expiresAt ?? null,
        record.robot ? 1 : 0, at,
      ],
    }
    const statements: Statement[] = request.robot && this.store.kind === 'postgres' ? [{ sql: ROBOT_LOCK, params: [owner] }, insert] : [insert]
    const results = await this.store.atomic(statements)
    if (results.at(-1)?.changes !== 1) throw new AccessTokenError('conflict', `robot account ${owner} already has a live token: revoke it first`)
    this.options.onAudit?.({ action: 'token.create', outcome: 'success', user: request.by, client: request.client, subject: describeToken(record) })
    return { secret, record }
  }

  /** Tokens newest first: one owner's, or every token (administrators). Revoked ones included (marked). */
  async list(filter: { owner?: string } = {}): Promise<AccessTokenRecord[]> {
    await this.ready
    // Last-used times queued here are written first, so the list shows them.
    await this.store.commit()
    const rows = filter.owner === undefined ? await this.store.all(LIST_ALL) : await this.store.all(LIST_OWNER, [filter.owner])
    return rows.map(recordOf)
  }

  async get(id: string): Promise<AccessTokenRecord | undefined> {
    await this.ready
    const [row] = await this.store.all(BY_ID, [id])
    return row ? recordOf(row) : undefined
  }

  /**
   * Revokes a token: from the next request on it is refused here (its cache entry goes now) and, with
   * shared revocations, on every instance. `allowed` decides whether `by` may revoke this one (owners
   * theirs, administrators any).
   */
  async revoke(id: string, by: string, client: string, allowed: (record: AccessTokenRecord) => boolean): Promise<AccessTokenRecord> {
    await this.ready
    const [row] = await this.store.all(BY_ID, [id])
    const record = row ? recordOf(row) : undefined
    if (!row || !record || !allowed(record)) throw new AccessTokenError('not_found', `no token ${id} of yours`)
    if (record.revokedAt !== undefined) throw new AccessTokenError('conflict', `token ${id} was revoked already`)
    const at = this.now()
    // Durable first: an instance told of the revocation reads the store and must find it revoked there.
    const [result] = await this.store.atomic([{ sql: REVOKE, params: [at, by, id] }])
    if (result?.changes !== 1) throw new AccessTokenError('conflict', `token ${id} was revoked already`)
    this.cache.delete(String(row.hash))
    this.liveById.delete(id)
    await this.options.revocations?.revoke(REVOCATION_KIND, id, record.expiresAt ?? at + NEVER_EXPIRING_REVOCATION_MS)
    this.options.onAudit?.({ action: 'token.revoke', outcome: 'success', user: by, client, subject: describeToken(record) })
    return { ...record, revokedAt: at, revokedBy: by }
  }

  /** Whether the token with this id is neither revoked nor expired (a JWT issued for it is refused otherwise). */
  async isLive(id: string): Promise<boolean> {
    let state = this.revokedElsewhere(id) ? undefined : this.liveById.get(id)
    if (!state) {
      const row = await this.readRow(BY_ID, id)
      if (!row) return false
      const record = recordOf(row)
      state = { expiresAt: record.expiresAt, revoked: record.revokedAt !== undefined }
      if (!this.revokedElsewhere(id)) this.liveById.set(id, state)
    }
    return !state.revoked && (state.expiresAt === undefined || state.expiresAt > this.now())
  }

  /**
   * Checks a presented secret for `user` (the name given with it: the owner, a robot's `robot$NAME`).
   * A token seen within cache_ttl is answered from memory; a refusal is told to the audit trail with its reason.
   */
  async verify(secret: string, user: string, client: string): Promise<TokenCheck> {
    const check = await this.lookup(secret, user, client)
    if (!check.ok) {
      this.options.onAudit?.({ action: 'token.refused', outcome: check.reason, user: user || undefined, client, subject: check.record ? describeToken(check.record) : undefined })
    }
    return check
  }

  /** Revoked on some instance (shared revocations): a copy cached here is not to be trusted; the store decides. */
  private revokedElsewhere(id: string): boolean {
    return this.options.revocations?.isRevoked(REVOCATION_KIND, id, this.now()) ?? false
  }

  private async lookup(secret: string, user: string, client: string): Promise<TokenCheck> {
    if (!isAccessTokenSecret(secret)) return { ok: false, reason: 'unknown' }
    const hash = hashSecret(secret)
    let cached = this.cache.get(hash)
    if (cached && this.revokedElsewhere(cached.record.id)) {
      this.cache.delete(hash)
      cached = undefined
    }
    if (!cached) {
      const record = await this.read(hash)
      // Unknown secrets are not cached: the login throttle bounds how many anyone can try.
      if (!record) return { ok: false, reason: 'unknown' }
      cached = { record, touchedAt: record.lastUsedAt ?? 0 }
      // Not while a revocation is announced (the store's answer may predate it, or shared state is stale): read again next time.
      if (record.revokedAt === undefined && !this.revokedElsewhere(record.id)) this.cache.set(hash, cached)
    }
    const { record } = cached
    const at = this.now()
    if (record.revokedAt !== undefined) return { ok: false, reason: 'revoked', record }
    if (record.expiresAt !== undefined && record.expiresAt <= at) {
      this.cache.delete(hash)
      return { ok: false, reason: 'expired', record }
    }
    if (user !== record.owner) return { ok: false, reason: 'wrong_user', record }
    if (record.localOwner && this.options.accountActive && !this.options.accountActive(record.owner)) return { ok: false, reason: 'owner_removed', record }
    if (at - cached.touchedAt >= this.touchIntervalMs || record.lastUsedFrom !== client) this.touch(cached, at, client)
    return { ok: true, record }
  }

  /** The token with this hash from the store; one read at a time per hash. */
  private read(hash: string): Promise<AccessTokenRecord | undefined> {
    let pending = this.reading.get(hash)
    if (!pending) {
      pending = this.readRow(BY_HASH, hash)
        .then((row) => (row ? recordOf(row) : undefined))
        .finally(() => this.reading.delete(hash))
      this.reading.set(hash, pending)
    }
    return pending
  }

  /** One row on the authentication path; a store that cannot answer is a 503 (RegistryError UNAVAILABLE). */
  private async readRow(sql: string, key: string): Promise<Row | undefined> {
    try {
      await this.ready
      const [row] = await this.store.all(sql, [key])
      return row
    } catch (error) {
      throw storeUnavailable(error)
    }
  }

  /** Last-used time and address, through the store's batched writes (a crash loses at most one flush interval). */
  private touch(cached: Cached, at: number, client: string): void {
    cached.touchedAt = at
    cached.record = { ...cached.record, lastUsedAt: at, lastUsedFrom: client }
    this.store.write({ sql: TOUCH, params: [at, client, cached.record.id, at] })
  }
}
