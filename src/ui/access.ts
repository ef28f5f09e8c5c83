// The web UI's "Users & access" API for administrators: htpasswd users, groups and grants (kept in the store), the configuration's rules read-only, and why a user may do what on a repository.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { AccessGrants, checkUserName, describeRule, GrantError, type Caller, type Explanation, type LocalUsers } from '../auth/index.js'
import { createGrant, createGroup, deleteGrant, deleteGroup, grantView, groupView, replaceMembers, type GrantChange } from '../auth/grants/changes.js'
import type { AclGroup, AclRule } from '../auth/section.js'
import { RegistryError } from '../registry/errors.js'
import { isValidRepository } from '../registry/names.js'
import type { Session } from './session.js'
import type { AccessAuditAction, UiAuditHook, UiClient } from './api.js'
import type { AccessExplanation, AccessPage } from './types.js'

/** What the page shows and changes; built by src/app from the auth config, the htpasswd file and the store. */
export interface UiAccessAdmin {
  grants: AccessGrants
  /** Absent without an htpasswd file (auth.mode none, an external token issuer). */
  users?: LocalUsers
  configRules: readonly AclRule[]
  configGroups: readonly AclGroup[]
  /** How soon other instances see a change, in words ("at once (shared.redis)", "within 10s"). */
  propagation: string
  /** What the ACL gives `who` on `repository` and why. */
  explain(who: Caller, repository: string, clientIp: string): Explanation[]
}

/** The API's checks and answers, lent by src/ui/api.ts. */
export interface AccessRouteKit {
  requireSession(req: IncomingMessage): Session
  requireStateChange(req: IncomingMessage, client: UiClient, session: Session): void
  isAdmin(session: Session, client: UiClient): boolean
  readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>>
  sendJson(res: ServerResponse, status: number, body: unknown): void
  /** The caller a user name stands for (with the groups a directory gave it). */
  callerOf(user: string): Caller
  audit: UiAuditHook | undefined
}

export const ACCESS_ROUTES = ['access', 'users', 'groups', 'grants', 'explain'] as const
export type AccessRoute = (typeof ACCESS_ROUTES)[number]

function refusal(error: unknown): unknown {
  if (!(error instanceof GrantError)) return error
  if (error.kind === 'not_found') return new RegistryError('NOT_FOUND', { reason: error.message }, {}, error.message)
  return new RegistryError(error.kind === 'conflict' ? 'DENIED' : 'PATH_INVALID', { reason: error.message }, {}, error.message)
}

function page(admin: UiAccessAdmin): AccessPage {
  const users = admin.users
  const writability = users?.writability()
  return {
    users: users
      ? { names: users.list(), file: users.path, writable: writability?.writable === true, ...(writability && !writability.writable ? { reason: writability.reason } : {}) }
      : { names: [], file: '', writable: false, reason: 'Portier has no htpasswd file in this auth mode: there are no users to manage here' },
    configGroups: admin.configGroups.map((group) => ({ name: group.name, members: [...group.members] })),
    groups: admin.grants.groups.map(groupView),
    rules: admin.configRules.map((rule, index) => ({
      number: index + 1,
      key: `auth.acl[${index}]`,
      match: describeRule(rule),
      actions: [...rule.actions],
      ...(rule.comment !== undefined ? { comment: rule.comment } : {}),
    })),
    defaultRule: admin.configRules.length === 0,
    grants: admin.grants.grants.map(grantView),
    propagation: admin.propagation,
  }
}

/** The change a groups or grants call asks for (src/auth/grants/changes.ts, shared with the admin API). */
function grantChange(grants: AccessGrants, route: 'groups' | 'grants', method: string, params: URLSearchParams, body: Record<string, unknown>, by: string): Promise<GrantChange> {
  if (route === 'groups') {
    if (method === 'DELETE') return deleteGroup(grants, params.get('name') ?? '')
    return method === 'PUT' ? replaceMembers(grants, body, by) : createGroup(grants, body, by)
  }
  return method === 'DELETE' ? deleteGrant(grants, params.get('id') ?? '') : createGrant(grants, body, by)
}

export async function accessRoute(kit: AccessRouteKit, admin: UiAccessAdmin, route: AccessRoute, req: IncomingMessage, res: ServerResponse, params: URLSearchParams, client: UiClient): Promise<void> {
  const session = kit.requireSession(req)
  if (!kit.isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'users and access are for administrators (ui.admin_users)' })
  const method = req.method ?? 'GET'
  const by = session.user || 'anonymous'
  const audited = (action: AccessAuditAction, subject: string, outcome = 'success'): void =>
    kit.audit?.({ action, outcome, user: session.user || undefined, client: client.clientIp, userAgent: req.headers['user-agent'], subject })
  try {
    if (route === 'access') return kit.sendJson(res, 200, page(admin))
    if (route === 'explain') {
      const user = checkUserName(params.get('user') ?? '')
      const repository = params.get('repository') ?? ''
      if (!isValidRepository(repository)) throw new RegistryError('NAME_INVALID', { name: repository.slice(0, 300) })
      const actions = admin.explain(kit.callerOf(user), repository, client.clientIp)
      return kit.sendJson(res, 200, { user, repository, clientIp: client.clientIp, actions } satisfies AccessExplanation)
    }
    kit.requireStateChange(req, client, session)
    const body = method === 'DELETE' ? {} : await kit.readJsonBody(req)
    switch (route) {
      case 'users': {
        const users = admin.users
        if (!users) throw new GrantError('conflict', 'Portier has no htpasswd file in this auth mode')
        if (method === 'DELETE') {
          const user = checkUserName(params.get('user') ?? '')
          if (user === session.user) throw new GrantError('conflict', 'you cannot remove your own account while signed in with it')
          users.remove(user)
          // Audited as soon as the file has changed: the store's clean-up below may still fail (store down).
          audited('user.delete', user)
          const forgotten = await admin.grants.forgetUser(user, by)
          return kit.sendJson(res, 200, { user, removedFromGroups: forgotten.groups, grantsDeleted: forgotten.grants })
        }
        const user = checkUserName(body.user)
        const outcome = await users.set(user, typeof body.password === 'string' ? body.password : '', method === 'PUT')
        audited(outcome === 'created' ? 'user.create' : 'user.password', user)
        return kit.sendJson(res, outcome === 'created' ? 201 : 200, { user, outcome })
      }
      case 'groups':
      case 'grants': {
        const change = await grantChange(admin.grants, route, method, params, body, by)
        audited(change.action, change.subject)
        return kit.sendJson(res, change.status, change.body)
      }
    }
  } catch (error) {
    throw refusal(error)
  }
}
