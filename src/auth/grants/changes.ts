// The changes of groups and grants that the web UI ("Users & access") and the admin API (portier access) both make: one validation, one answer, one audit line.
import { checkGrant, GrantError, type AccessGrants, type StoredGrant, type StoredGroup } from './index.js'

/** The audit trail's action for a change of groups or grants. */
export type GrantChangeAction = 'group.create' | 'group.update' | 'group.delete' | 'grant.create' | 'grant.delete'

/** What a change answers (status and body: times as ISO 8601, as listed) and what the audit trail records of it. */
export interface GrantChange {
  status: number
  body: unknown
  action: GrantChangeAction
  /** e.g. `group ci: alice, bob`, `grant 3: group ci team/* pull,push` */
  subject: string
}

export function describeGrant(grant: Pick<StoredGrant, 'id' | 'kind' | 'subject' | 'repository' | 'actions'>): string {
  return `grant ${grant.id}: ${grant.kind} ${grant.subject} ${grant.repository} ${grant.actions.join(',')}`
}

/** A group as listed: times as ISO 8601. */
export function groupView(group: StoredGroup): { name: string; members: string[]; updatedAt: string; updatedBy: string } {
  return { name: group.name, members: group.members, updatedAt: new Date(group.updatedAt).toISOString(), updatedBy: group.updatedBy }
}

/** A grant as listed: times as ISO 8601. */
export function grantView(grant: StoredGrant): Omit<StoredGrant, 'createdAt'> & { createdAt: string } {
  return { ...grant, actions: [...grant.actions], createdAt: new Date(grant.createdAt).toISOString() }
}

const membersText = (group: StoredGroup): string => `group ${group.name}: ${group.members.join(', ') || 'no members'}`

/** POST: `{ name, members? }` makes a group (conflict when it exists). */
export async function createGroup(grants: AccessGrants, body: Record<string, unknown>, by: string): Promise<GrantChange> {
  const group = await grants.createGroup(body.name, body.members ?? [], by)
  return { status: 201, body: groupView(group), action: 'group.create', subject: membersText(group) }
}

/** PUT: `{ name, members }` replaces a group's members (not_found when there is no such group). */
export async function replaceMembers(grants: AccessGrants, body: Record<string, unknown>, by: string): Promise<GrantChange> {
  const group = await grants.setMembers(body.name, body.members, by)
  return { status: 200, body: groupView(group), action: 'group.update', subject: membersText(group) }
}

/** DELETE ?name=: a group and the grants given to it. */
export async function deleteGroup(grants: AccessGrants, name: string): Promise<GrantChange> {
  const { group, grants: deleted } = await grants.deleteGroup(name)
  return {
    status: 200,
    body: { name: group.name, grantsDeleted: deleted },
    action: 'group.delete',
    subject: `group ${group.name}${deleted > 0 ? ` (and ${deleted} grant${deleted === 1 ? '' : 's'})` : ''}`,
  }
}

/** POST: `{ kind, subject, repository, actions }` gives a user or group actions on repositories. */
export async function createGrant(grants: AccessGrants, body: Record<string, unknown>, by: string): Promise<GrantChange> {
  const grant = await grants.createGrant(checkGrant(body), by)
  return { status: 201, body: grantView(grant), action: 'grant.create', subject: describeGrant(grant) }
}

/** DELETE ?id=: one grant. */
export async function deleteGrant(grants: AccessGrants, id: string): Promise<GrantChange> {
  if (!/^[0-9]{1,15}$/.test(id)) throw new GrantError('invalid', 'a grant id is a positive whole number')
  const grant = await grants.deleteGrant(Number(id))
  return { status: 200, body: grantView(grant), action: 'grant.delete', subject: describeGrant(grant) }
}
