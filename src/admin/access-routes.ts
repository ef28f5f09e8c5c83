// The admin API's access routes (portier access): the explanation (GET /admin/api/access/explain?user=&repository= says what the user may do there and
// through which rule or grant), and the groups and grants kept in the store, changed as the web UI's "Users & access" page changes them.
import { isIP } from 'node:net'
import { AdminError } from '../observe/admin.js'
import { isValidRepository } from '../registry/names.js'
import type { Caller, Explanation } from '../auth/index.js'
import { GrantError, USER_NAME, type AccessGrants } from '../auth/grants/index.js'
import { createGrant, createGroup, deleteGrant, deleteGroup, grantView, groupView, replaceMembers, type GrantChange, type GrantChangeAction } from '../auth/grants/changes.js'
import { reply, type AdminApi, type AdminCall } from './api.js'

export const EXPLAIN_PATH = '/admin/api/access/explain'
export const GROUPS_PATH = '/admin/api/access/groups'
export const GRANTS_PATH = '/admin/api/access/grants'

/** One change of groups or grants for the audit trail (the web UI's hook: the same entries). */
export type GrantAuditHook = (event: { action: GrantChangeAction; outcome: string; subject: string; user: string | undefined; client: string; userAgent: string | undefined }) => void

export interface GrantDeps {
  grants: AccessGrants
  audit?: GrantAuditHook | undefined
}

function refusal(error: unknown): unknown {
  if (!(error instanceof GrantError)) return error
  const code = error.kind === 'not_found' ? 'ADMIN_NOT_FOUND' : error.kind === 'conflict' ? 'ADMIN_CONFLICT' : 'ADMIN_BAD_REQUEST'
  return new AdminError(code, { message: error.message })
}

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

/** Groups and grants: every route needs an administrator (ui.admin_users), GETs too, as for the access tokens. */
export function registerGrantRoutes(api: AdminApi, deps: GrantDeps): void {
  const { grants } = deps
  const change = (make: (call: AdminCall) => Promise<GrantChange>) => async (call: AdminCall) => {
    let made: GrantChange
    try {
      made = await make(call)
    } catch (error) {
      throw refusal(error)
    }
    deps.audit?.({ action: made.action, outcome: 'success', subject: made.subject, user: call.user, client: call.clientIp, userAgent: call.req.headers['user-agent'] })
    return reply(made.status, made.body)
  }
  api.route('GET', GROUPS_PATH, async () => ({ groups: grants.groups.map(groupView) }), { admin: true })
  api.route('POST', GROUPS_PATH, change(async (call) => createGroup(grants, await call.json(), call.user)))
  api.route('PUT', GROUPS_PATH, change(async (call) => replaceMembers(grants, await call.json(), call.user)))
  api.route('DELETE', GROUPS_PATH, change(async (call) => deleteGroup(grants, call.params.get('name') ?? '')))
  api.route('GET', GRANTS_PATH, async () => ({ grants: grants.grants.map(grantView) }), { admin: true })
  api.route('POST', GRANTS_PATH, change(async (call) => createGrant(grants, await call.json(), call.user)))
  api.route('DELETE', GRANTS_PATH, change(async (call) => deleteGrant(grants, call.params.get('id') ?? '')))
}
