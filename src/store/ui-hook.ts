// What the web UI did, told to the store: sign-ins and deletes into the audit trail, deletes into the push/pull times.
import type { UiAuditHook, UiAuditLog } from '../ui/api.js'
import type { AuditTrail } from './audit.js'
import type { PushPullTimes } from './times.js'
import { parseAuditQuery } from './routes.js'

export function uiStoreHook(times: PushPullTimes, audit: AuditTrail | undefined): UiAuditHook {
  const record = audit?.uiListener()
  return (event) => {
    record?.(event)
    if (event.outcome !== 'success' || event.repository === undefined) return
    if (event.action === 'manifest.delete' && event.digest !== undefined) times.deleted(event.repository, event.digest)
    if (event.action === 'repository.delete') times.forgetRepository(event.repository)
  }
}

/** The web UI's audit page reads the trail with the admin API's parameters. */
export function uiAuditLog(audit: AuditTrail): UiAuditLog {
  return {
    list: async (params) => {
      const query = parseAuditQuery(params)
      if ('problem' in query) return query
      return {
        entries: (await audit.query(query)).map((entry) => ({
          id: entry.id, at: new Date(entry.at).toISOString(), action: entry.action, outcome: entry.outcome, status: entry.status,
          client: entry.client, requestId: entry.requestId,
          ...(entry.user !== undefined ? { user: entry.user } : {}),
          ...(entry.userAgent !== undefined ? { userAgent: entry.userAgent } : {}),
          ...(entry.repository !== undefined ? { repository: entry.repository } : {}),
          ...(entry.tag !== undefined ? { tag: entry.tag } : {}),
          ...(entry.digest !== undefined ? { digest: entry.digest } : {}),
          ...(entry.size !== undefined ? { size: entry.size } : {}),
          ...(entry.sourceRepository !== undefined ? { sourceRepository: entry.sourceRepository } : {}),
          ...(entry.subject !== undefined ? { subject: entry.subject } : {}),
        })),
      }
    },
  }
}
