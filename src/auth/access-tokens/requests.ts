// What the admin API and the web UI take and show: a create request's body read and checked, a token as JSON.
import { parseDuration } from '../../config/units.js'
import type { Scope } from '../../registry/classify.js'
import { formatTokenScope, parseTokenScopes } from './scopes.js'
import type { AccessTokenRecord } from './table.js'
import { AccessTokenError } from './tokens.js'

export interface ExpiryPolicy {
  /** ms; used when the request names none. */
  default_expiry: number
  /** ms; 0: no limit. */
  max_expiry: number
}

export interface CreateBody {
  name: string
  scopes: Scope[]
  expiresInMs: number
  robot: boolean
  /** A personal token for another user (administrators only). */
  owner?: string
}

const invalid = (message: string): AccessTokenError => new AccessTokenError('invalid', message)

/** `{ name, scopes: ["repository:team/*:pull,push"] | "…", expires?: "90d" | "never", robot?: bool, owner?: "user" }`. */
export function parseCreateBody(body: Record<string, unknown>, policy: ExpiryPolicy): CreateBody {
  const { name, scopes, expires, robot, owner } = body
  if (typeof name !== 'string') throw invalid('"name" must be a text, e.g. "ci"')
  const scopeTexts = typeof scopes === 'string' ? [scopes] : Array.isArray(scopes) && scopes.every((scope) => typeof scope === 'string') ? (scopes as string[]) : undefined
  if (!scopeTexts) throw invalid('"scopes" must be a list of scopes like "repository:team/*:pull,push"')
  let parsed: Scope[]
  try {
    parsed = parseTokenScopes(scopeTexts)
  } catch (error) {
    throw invalid((error as Error).message)
  }
  if (robot !== undefined && typeof robot !== 'boolean') throw invalid('"robot" must be true or false')
  if (owner !== undefined && (typeof owner !== 'string' || owner === '')) throw invalid('"owner" must be a user name')
  const result: CreateBody = { name, scopes: parsed, expiresInMs: expiryOf(expires, policy), robot: robot === true }
  if (typeof owner === 'string') result.owner = owner
  return result
}

function expiryOf(value: unknown, policy: ExpiryPolicy): number {
  if (value === undefined || value === null || value === '') return policy.default_expiry
  const never = value === 'never' || value === 0 || value === '0'
  const ms = never ? 0 : parseDuration(value)
  if (ms === undefined) throw invalid('"expires" must be a duration like 30d or 12h, or "never"')
  if (policy.max_expiry > 0 && (ms === 0 || ms > policy.max_expiry)) {
    throw invalid(`"expires" may be at most ${Math.floor(policy.max_expiry / 86_400_000)}d here (access_tokens.max_expiry)`)
  }
  if (!never && ms < 60_000) throw invalid('"expires" must be at least 1m')
  return ms
}

export type TokenState = 'active' | 'expired' | 'revoked'

export interface TokenView {
  id: string
  name: string
  owner: string
  robot: boolean
  hint: string
  scopes: string[]
  /** The owner's groups recorded at creation (single sign-on, directory); empty: none. */
  groups: string[]
  state: TokenState
  createdAt: string
  createdBy: string
  expiresAt: string | null
  lastUsedAt: string | null
  lastUsedFrom: string | null
  revokedAt: string | null
  revokedBy: string | null
}

const iso = (at: number | undefined): string | null => (at === undefined ? null : new Date(at).toISOString())

export function tokenView(record: AccessTokenRecord, now = Date.now()): TokenView {
  const state: TokenState = record.revokedAt !== undefined ? 'revoked' : record.expiresAt !== undefined && record.expiresAt <= now ? 'expired' : 'active'
  return {
    id: record.id,
    name: record.name,
    owner: record.owner,
    robot: record.robot,
    hint: record.hint,
    scopes: record.scopes.map(formatTokenScope),
    groups: record.groups ?? [],
    state,
    createdAt: new Date(record.createdAt).toISOString(),
    createdBy: record.createdBy,
    expiresAt: iso(record.expiresAt),
    lastUsedAt: iso(record.lastUsedAt),
    lastUsedFrom: record.lastUsedFrom ?? null,
    revokedAt: iso(record.revokedAt),
    revokedBy: record.revokedBy ?? null,
  }
}
