// The admin API's access explanation: GET /admin/api/access/explain?user=&repository= says what the user may do there and through which rule or grant.
import { isIP } from 'node:net'
import { AdminError } from '../observe/admin.js'
import { isValidRepository } from '../registry/names.js'
import type { Caller, Explanation } from '../auth/index.js'
import { USER_NAME } from '../auth/grants/index.js'
import type { AdminApi } from './api.js'

export const EXPLAIN_PATH = '/admin/api/access/explain'

export interface ExplainDeps {
  explain(who: Caller, repository: string, clientIp: string): Explanation[]
  /** The groups a directory last gave the user (auth.ldap), for the ACL. */
  groupsOf?: (user: string) => readonly string[] | undefined
}

export function registerAccessRoutes(api: AdminApi, deps: ExplainDeps): void {
  api.route('GET', EXPLAIN_PATH, async (call) => {
    const user = call.params.get('user') ?? ''
    const repository = call.params.get('repository') ?? ''
    if (!USER_NAME.test(user)) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'give the user as ?user=NAME' })
    if (!isValidRepository(repository)) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'give a repository name as ?repository=NAME' })
    // Rules with match.ip are checked against ?ip= when given, else the caller's own address.
    const ip = call.params.get('ip') || call.clientIp
    if (isIP(ip) === 0) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'ip must be an IPv4 or IPv6 address' })
    const groups = deps.groupsOf?.(user)
    const who: Caller = { user, anonymous: false, ...(groups ? { groups } : {}) }
    return { user, repository, clientIp: ip, actions: deps.explain(who, repository, ip) }
  }, { admin: true })
}
