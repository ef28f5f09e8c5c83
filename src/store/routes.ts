// The admin API's store routes: GET /admin/api/audit (the audit trail, filtered) and GET /admin/api/times (push/pull times of a repository).
import type { AdminApi } from '../admin/api.js'
import { AdminError } from '../observe/admin.js'
import { AUDIT_ACTIONS, sinceTime, type AuditEntry, type AuditQuery, type AuditTrail } from './audit.js'
import type { PushPullTimes } from './times.js'

export const AUDIT_PATH = '/admin/api/audit'
export const TIMES_PATH = '/admin/api/times'
const MAX_LIST = 10_000

const iso = (at: number | undefined): string | undefined => (at === undefined ? undefined : new Date(at).toISOString())

/** An entry as the API and `portier audit --json` show it: the time as ISO 8601. */
export function listedEntry(entry: AuditEntry): Record<string, unknown> {
  return { ...entry, at: iso(entry.at) }
}

/** The audit query a request's parameters ask for (repo, user, since, action, limit), or what is wrong with them. */
export function parseAuditQuery(params: URLSearchParams, now = Date.now()): AuditQuery | { problem: string } {
  const query: AuditQuery = {}
  const repository = params.get('repo')
  if (repository) query.repository = repository
  const user = params.get('user')
  if (user) query.user = user
  const since = params.get('since')
  if (since) {
    const at = sinceTime(since, now)
    if (at === undefined) return { problem: 'since must be a duration like 24h or 7d, or a time like 2026-01-31T12:00:00Z' }
    query.since = at
  }
  const action = params.get('action')
  if (action) {
    if (!(AUDIT_ACTIONS as readonly string[]).includes(action)) return { problem: `action must be one of ${AUDIT_ACTIONS.join(', ')}` }
    query.action = action
  }
  const limit = Number(params.get('limit') ?? 100)
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST) return { problem: `limit must be a whole number from 1 to ${MAX_LIST}` }
  query.limit = limit
  return query
}

/** Both need an administrator: the trail names users and addresses, the times what is pulled. */
export function registerStoreRoutes(api: AdminApi, deps: { audit: AuditTrail | undefined; times: PushPullTimes }): void {
  api.route('GET', AUDIT_PATH, async (call) => {
    const query = parseAuditQuery(call.params)
    if ('problem' in query) throw new AdminError('ADMIN_BAD_REQUEST', { message: query.problem })
    return { enabled: deps.audit !== undefined, entries: (deps.audit ? await deps.audit.query(query) : []).map(listedEntry) }
  }, { admin: true })
  api.route('GET', TIMES_PATH, async (call) => {
    const repository = call.params.get('repo')
    if (!repository) return { repositories: await deps.times.repositories() }
    return {
      repository,
      tags: (await deps.times.tagTimes(repository)).map((tag) => ({
        ...tag, firstSeenAt: iso(tag.firstSeenAt), firstPushedAt: iso(tag.firstPushedAt), pushedAt: iso(tag.pushedAt), pulledAt: iso(tag.pulledAt), tagPulledAt: iso(tag.tagPulledAt),
      })),
      daily_pulls: await deps.times.dailyPulls(repository),
    }
  }, { admin: true })
}
