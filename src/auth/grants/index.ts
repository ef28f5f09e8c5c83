// Groups and grants made in the web UI, kept in the store: validated changes, and the set the ACL reads (reloaded when any instance changes it).
import type { StoreEngine } from '../../store/engine.js'
import { grantActions, nameGlobProblem, type GrantAction, type GrantSet } from '../acl.js'
import { GRANT_MIGRATIONS, grantOf, groupOf, type StoredGrant, type StoredGroup } from './table.js'

export type { StoredGrant, StoredGroup } from './table.js'
export { GRANT_MIGRATIONS } from './table.js'

/** A change that cannot be made: `invalid` input, a `not_found` group or grant, or a `conflict` (the group exists). */
export class GrantError extends Error {
  constructor(
    readonly kind: 'invalid' | 'not_found' | 'conflict',
    message: string,
  ) {
    super(message)
    this.name = 'GrantError'
  }
}

const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
/** A user name as htpasswd files and the directory spell them: no ":" or white space. */
export const USER_NAME = /^[^:\s]{1,255}$/
const MAX_MEMBERS = 500

export interface NewGrant {
  kind: 'user' | 'group'
  subject: string
  repository: string
  actions: GrantAction[]
}

export interface GrantsOptions {
  clock?: () => number
  /** Told after each change made here: src/app tells the other instances (shared bus). */
  onChange?: () => void
}

/** What the ACL and the UI read: the groups and grants as last loaded, with the set handed to the ACL. */
interface Loaded {
  groups: StoredGroup[]
  grants: StoredGrant[]
  set: GrantSet
}

function loaded(groups: StoredGroup[], grants: StoredGrant[]): Loaded {
  return {
    groups,
    grants,
    set: {
      groups: groups.map((group) => ({ name: group.name, members: group.members })),
      grants: grants.map((grant) => ({ id: grant.id, kind: grant.kind, subject: grant.subject, repository: grant.repository, actions: grant.actions })),
    },
  }
}

export function checkGroupName(name: unknown): string {
  if (typeof name !== 'string' || !GROUP_NAME.test(name)) throw new GrantError('invalid', 'a group name is 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit')
  return name
}

export function checkMembers(members: unknown): string[] {
  if (!Array.isArray(members)) throw new GrantError('invalid', 'members must be a list of user names')
  const names = [...new Set(members.map((member) => (typeof member === 'string' ? member.trim() : '')).filter((member) => member !== ''))]
  const wrong = names.find((member) => !USER_NAME.test(member))
  if (wrong !== undefined) throw new GrantError('invalid', `${JSON.stringify(wrong.slice(0, 100))} is no user name (no ":" or spaces, at most 255 characters)`)
  if (names.length > MAX_MEMBERS) throw new GrantError('invalid', `at most ${MAX_MEMBERS} members`)
  return names.sort()
}

/** A grant request from a JSON body: { kind: "user"|"group", subject, repository (glob), actions: [pull, push, delete] }. */
export function checkGrant(body: Record<string, unknown>): NewGrant {
  const { kind, subject, repository, actions } = body
  if (kind !== 'user' && kind !== 'group') throw new GrantError('invalid', 'kind must be "user" or "group"')
  if (kind === 'group') checkGroupName(subject)
  else if (typeof subject !== 'string' || !USER_NAME.test(subject)) throw new GrantError('invalid', 'subject must be a user name (no ":" or spaces)')
  if (typeof repository !== 'string') throw new GrantError('invalid', 'repository must be a repository name or glob such as team/*')
  const problem = nameGlobProblem(repository)
  if (problem !== undefined) throw new GrantError('invalid', `repository ${JSON.stringify(repository.slice(0, 300))}: ${problem}; expected a name or glob like team/* or team/**`)
  if (!Array.isArray(actions) || actions.length === 0) throw new GrantError('invalid', 'actions must list one or more of pull, push, delete')
  const chosen = grantActions.filter((action) => actions.includes(action))
  if (chosen.length !== new Set(actions).size) throw new GrantError('invalid', 'actions may only be pull, push and delete')
  return { kind, subject: subject as string, repository, actions: chosen }
}

/** The store's groups and grants. Reads of the ACL are synchronous: they see the set as last loaded. */
export class AccessGrants {
  readonly ready: Promise<void>
  private current: Loaded = loaded([], [])
  private readonly clock: () => number
  /** Loads run one after another, so an older answer never replaces a newer one. */
  private loading: Promise<void> = Promise.resolve()

  constructor(
    private readonly store: StoreEngine,
    private readonly options: GrantsOptions = {},
  ) {
    this.clock = options.clock ?? Date.now
    this.ready = store.migrateModule('access_grants', GRANT_MIGRATIONS).then(() => this.reload())
    this.ready.catch(() => undefined)
  }

  /** What the ACL reads: a new object after every load that changed something. */
  get set(): GrantSet {
    return this.current.set
  }

  get groups(): readonly StoredGroup[] {
    return this.current.groups
  }

  get grants(): readonly StoredGrant[] {
    return this.current.grants
  }

  /** Reads the tables again (another instance changed them, or the refresh interval passed). */
  reload(): Promise<void> {
    const next = this.loading.then(async () => {
      const [groups, grants] = await Promise.all([
        this.store.all('SELECT name, members, updated_at, updated_by FROM access_groups ORDER BY name'),
        this.store.all('SELECT id, kind, subject, repository, actions, created_at, created_by FROM access_grants ORDER BY id'),
      ])
      const fresh = loaded(groups.map(groupOf), grants.map(grantOf))
      // Unchanged: the ACL keeps its compiled set.
      if (JSON.stringify(fresh.set) !== JSON.stringify(this.current.set)) this.current = fresh
      else this.current = { ...fresh, set: this.current.set }
    })
    this.loading = next.catch(() => undefined)
    return next
  }

  private async changed(): Promise<void> {
    await this.reload()
    this.options.onChange?.()
  }

  async createGroup(name: unknown, members: unknown, by: string): Promise<StoredGroup> {
    const groupName = checkGroupName(name)
    const names = checkMembers(members ?? [])
    await this.ready
    const [existing] = await this.store.atomic([{ sql: 'SELECT name FROM access_groups WHERE name = ?', params: [groupName] }])
    if ((existing?.rows.length ?? 0) > 0) throw new GrantError('conflict', `the group ${groupName} exists already`)
    await this.store.atomic([{ sql: 'INSERT INTO access_groups (name, members, updated_at, updated_by) VALUES (?, ?, ?, ?)', params: [groupName, JSON.stringify(names), this.clock(), by] }])
    await this.changed()
    return this.group(groupName)
  }

  async setMembers(name: unknown, members: unknown, by: string): Promise<StoredGroup> {
    const groupName = checkGroupName(name)
    const names = checkMembers(members)
    await this.ready
    const [result] = await this.store.atomic([{ sql: 'UPDATE access_groups SET members = ?, updated_at = ?, updated_by = ? WHERE name = ?', params: [JSON.stringify(names), this.clock(), by, groupName] }])
    if ((result?.changes ?? 0) === 0) throw new GrantError('not_found', `no group ${groupName}`)
    await this.changed()
    return this.group(groupName)
  }

  /** Deletes the group and the grants made to it; returns the group and how many grants went with it. */
  async deleteGroup(name: unknown): Promise<{ group: StoredGroup; grants: number }> {
    const groupName = checkGroupName(name)
    await this.ready
    const [found, , grants] = await this.store.atomic([
      { sql: 'SELECT name, members, updated_at, updated_by FROM access_groups WHERE name = ?', params: [groupName] },
      { sql: 'DELETE FROM access_groups WHERE name = ?', params: [groupName] },
      { sql: "DELETE FROM access_grants WHERE kind = 'group' AND subject = ?", params: [groupName] },
    ])
    const row = found?.rows[0]
    if (!row) throw new GrantError('not_found', `no group ${groupName}`)
    await this.changed()
    return { group: groupOf(row), grants: grants?.changes ?? 0 }
  }

  async createGrant(grant: NewGrant, by: string): Promise<StoredGrant> {
    await this.ready
    const [inserted] = await this.store.atomic([
      {
        sql: 'INSERT INTO access_grants (kind, subject, repository, actions, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?) RETURNING id, kind, subject, repository, actions, created_at, created_by',
        params: [grant.kind, grant.subject, grant.repository, grant.actions.join(','), this.clock(), by],
      },
    ])
    const row = inserted?.rows[0]
    if (!row) throw new Error('the store did not return the new grant')
    await this.changed()
    return grantOf(row)
  }

  async deleteGrant(id: number): Promise<StoredGrant> {
    if (!Number.isSafeInteger(id) || id < 1) throw new GrantError('invalid', 'a grant id is a positive whole number')
    await this.ready
    const [found] = await this.store.atomic([
      { sql: 'SELECT id, kind, subject, repository, actions, created_at, created_by FROM access_grants WHERE id = ?', params: [id] },
      { sql: 'DELETE FROM access_grants WHERE id = ?', params: [id] },
    ])
    const row = found?.rows[0]
    if (!row) throw new GrantError('not_found', `no grant ${id}`)
    await this.changed()
    return grantOf(row)
  }

  /** A removed user: out of every group, and their own grants deleted (a new user of that name starts with nothing). */
  async forgetUser(user: string, by: string): Promise<{ groups: string[]; grants: number }> {
    await this.ready
    await this.reload()
    const groups = this.current.groups.filter((group) => group.members.includes(user))
    const [grants] = await this.store.atomic([
      { sql: "DELETE FROM access_grants WHERE kind = 'user' AND subject = ?", params: [user] },
      ...groups.map((group) => ({
        sql: 'UPDATE access_groups SET members = ?, updated_at = ?, updated_by = ? WHERE name = ?',
        params: [JSON.stringify(group.members.filter((member) => member !== user)), this.clock(), by, group.name],
      })),
    ])
    await this.changed()
    return { groups: groups.map((group) => group.name), grants: grants?.changes ?? 0 }
  }

  private group(name: string): StoredGroup {
    const group = this.current.groups.find((candidate) => candidate.name === name)
    if (!group) throw new GrantError('not_found', `no group ${name}`)
    return group
  }

  /** Reloads every `intervalMs` (several instances without a shared bus); stop() ends it. */
  startRefresh(intervalMs: number, onError: (error: unknown) => void): { stop(): void } {
    const timer = setInterval(() => {
      this.reload().catch(onError)
    }, intervalMs)
    timer.unref()
    return { stop: () => clearInterval(timer) }
  }
}
