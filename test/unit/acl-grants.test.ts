// Groups and grants made in the web UI: the ACL adds them to auth.acl (never takes away), explains each action with the rule or
// grant that gives it, and the store keeps them on both engines (migrations, validation, a removed user's grants go).
import t from 'tap'
import { createAcl, type Caller, type GrantSet } from '../../src/auth/acl.js'
import type { AclGroup, AclRule } from '../../src/auth/section.js'
import { AccessGrants, GrantError, checkGrant } from '../../src/auth/grants/index.js'
import { ENGINES, openEngine } from '../helpers/store-engines.js'

const ip = '192.0.2.10'
const alice: Caller = { user: 'alice', anonymous: false }
const bob: Caller = { user: 'bob', anonymous: false }
const carol: Caller = { user: 'carol', anonymous: false, groups: ['ldap-devs'] }
const nobody: Caller = { user: '', anonymous: true }

const rules: AclRule[] = [
  { match: { account: 'admin' }, actions: ['*'] },
  { match: { group: 'readers', name: 'team/**' }, actions: ['pull'] },
  { match: { account: '', name: 'public/*' }, actions: ['pull'] },
]
const groups: AclGroup[] = [{ name: 'readers', members: ['alice'] }, { name: 'ldap-devs', members: [] }]

function aclWith(set: () => GrantSet) {
  return createAcl({ mode: 'htpasswd', acl: rules, groups }, { grants: set })
}
const repo = (name: string, ...actions: Array<'pull' | 'push' | 'delete' | '*'>) => ({ type: 'repository' as const, name, actions })

t.test('store grants add to the rules: a group grant gives push, the rule still gives pull, nothing else changes', async (t) => {
  let set: GrantSet = { groups: [], grants: [] }
  const acl = aclWith(() => set)
  t.same(acl.granted(alice, repo('team/app', 'pull', 'push'), ip), ['pull'], 'before any grant: the rule gives pull only')
  set = {
    groups: [{ name: 'ci', members: ['alice', 'bob'] }],
    grants: [{ id: 3, kind: 'group', subject: 'ci', repository: 'team/*', actions: ['push'] }],
  }
  t.same(acl.granted(alice, repo('team/app', 'pull', 'push'), ip), ['pull', 'push'], 'alice: pull by rule 2, push by the grant')
  t.same(acl.granted(bob, repo('team/app', 'pull', 'push'), ip), ['push'], 'bob is in ci (UI) but not in readers: push only')
  t.same(acl.granted(bob, repo('team/deep/app', 'push'), ip), [], 'team/* is one level')
  t.same(acl.granted(bob, repo('other/app', 'push'), ip), [], 'other repositories: nothing')
  t.same(acl.granted(bob, repo('team/app', '*'), ip), [], 'a grant never gives *')
  t.same(acl.granted(bob, { type: 'registry', name: 'catalog', actions: ['*'] }, ip), [], 'nor the catalog')
  t.same(acl.granted(nobody, repo('team/app', 'push'), ip), [], 'anonymous callers get no grants')
  t.same(acl.granted({ ...bob, limit: [repo('team/*', 'pull')] }, repo('team/app', 'push'), ip), [], "an access token's scopes still limit")
  t.same(acl.granted({ user: 'robot$x', anonymous: false, robot: true, limit: [repo('x/*', 'pull')] }, repo('team/app', 'push'), ip), [], 'robots get exactly their scopes')
  set = { groups: [], grants: [] }
  t.same(acl.granted(bob, repo('team/app', 'push'), ip), [], 'the grant removed: refused at the next check')
})

t.test('store group members count for rules naming the group, and directory groups for grants', async (t) => {
  const set: GrantSet = {
    groups: [{ name: 'readers', members: ['bob'] }],
    grants: [{ id: 1, kind: 'group', subject: 'ldap-devs', repository: 'dev/**', actions: ['pull', 'push'] }, { id: 2, kind: 'user', subject: 'carol', repository: 'carol/*', actions: ['delete'] }],
  }
  const acl = aclWith(() => set)
  t.same(acl.granted(bob, repo('team/x', 'pull'), ip), ['pull'], 'bob, a UI member of readers, gets rule 2')
  t.same(acl.granted(carol, repo('dev/a/b', 'push'), ip), ['push'], 'carol through her directory group')
  t.same(acl.granted(carol, repo('carol/app', 'delete'), ip), ['delete'], 'a grant to the user herself')
})

t.test('explain names the rule or grant behind each action, and why the others are refused', async (t) => {
  const set: GrantSet = {
    groups: [{ name: 'ci', members: ['alice'] }],
    grants: [{ id: 3, kind: 'group', subject: 'ci', repository: 'team/*', actions: ['pull', 'push'] }, { id: 4, kind: 'user', subject: 'alice', repository: 'team/app', actions: ['push'] }],
  }
  const acl = aclWith(() => set)
  const explained = acl.explain(alice, 'team/app', ip)
  t.same(explained, [
    { action: 'pull', granted: true, via: ['group readers (member through auth.groups), rule 2 (auth.acl[1])', 'group ci, grant 3 (UI)'] },
    { action: 'push', granted: true, via: ['group ci, grant 3 (UI)', 'user alice, grant 4 (UI)'] },
    { action: 'delete', granted: false, via: [], reason: 'rule 2 (auth.acl[1]) matches first and does not give delete, and no grant does' },
  ])
  t.same(acl.explain({ user: 'admin', anonymous: false }, 'any/thing', ip).map((entry) => entry.via), [['rule 1 (auth.acl[0])'], ['rule 1 (auth.acl[0])'], ['rule 1 (auth.acl[0])']])
  t.same(acl.explain(bob, 'other/x', ip)[0], { action: 'pull', granted: false, via: [], reason: 'no rule of auth.acl matches and no grant gives it' })
  const open = createAcl({ mode: 'htpasswd', acl: [], groups: [] })
  t.same(open.explain(bob, 'x', ip)[1]?.via, ['the default rule (auth.acl is empty)'])
})

for (const engine of ENGINES) {
  t.test(`${engine}: groups and grants are kept, validated, and reloaded by another reader`, async (t) => {
    const store = await openEngine(t, engine, { flushIntervalMs: 20 })
    let changes = 0
    const grants = new AccessGrants(store, { onChange: () => changes++ })
    await grants.ready
    const first = grants.set
    const group = await grants.createGroup('ci', ['bob', 'alice', 'bob'], 'admin')
    t.same(group.members, ['alice', 'bob'], 'members sorted, without repeats')
    t.equal(await rejectedAs(grants.createGroup('ci', [], 'admin')), 'conflict')
    t.equal(await rejectedAs(grants.createGroup('bad name', [], 'admin')), 'invalid')
    t.equal(await rejectedAs(grants.setMembers('ci', ['no:colons'], 'admin')), 'invalid')
    t.equal(await rejectedAs(grants.setMembers('missing', [], 'admin')), 'not_found')
    const grant = await grants.createGrant(checkGrant({ kind: 'group', subject: 'ci', repository: 'team/*', actions: ['push', 'pull'] }), 'admin')
    t.same({ kind: grant.kind, subject: grant.subject, repository: grant.repository, actions: grant.actions }, { kind: 'group', subject: 'ci', repository: 'team/*', actions: ['pull', 'push'] })
    t.ok(grant.id > 0, 'the store numbers grants')
    await grants.createGrant(checkGrant({ kind: 'user', subject: 'bob', repository: 'bob/*', actions: ['delete'] }), 'admin')
    t.not(grants.set, first, 'a change hands the ACL a new set')
    t.equal(changes, 3, 'each change is announced (for the other instances)')

    // Another instance on the same store sees it all after a reload.
    const other = new AccessGrants(store)
    await other.ready
    t.same(other.set, grants.set)
    const unchanged = other.set
    await other.reload()
    t.equal(other.set, unchanged, 'a reload that finds nothing new keeps the set (the ACL keeps its compiled copy)')

    const forgotten = await grants.forgetUser('bob', 'admin')
    t.same(forgotten, { groups: ['ci'], grants: 1 }, "a removed user leaves the groups, and their own grants go")
    t.same(grants.groups[0]?.members, ['alice'])
    const removed = await grants.deleteGroup('ci')
    t.same(removed.grants, 1, "a deleted group's grants go with it")
    t.same(grants.set, { groups: [], grants: [] })
    t.equal(await rejectedAs(grants.deleteGrant(grant.id)), 'not_found')
  })
}

/** The kind of GrantError `promise` rejects with, or 'none'. */
async function rejectedAs(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    return error instanceof GrantError ? error.kind : 'other'
  }
  return 'none'
}

/** The kind of GrantError `fn` throws, or 'none'. */
function refusedAs(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    return error instanceof GrantError ? error.kind : 'other'
  }
  return 'none'
}

t.test('checkGrant refuses what the ACL could not use', async (t) => {
  t.equal(refusedAs(() => checkGrant({ kind: 'role', subject: 'x', repository: 'a', actions: ['pull'] })), 'invalid')
  t.equal(refusedAs(() => checkGrant({ kind: 'user', subject: 'a b', repository: 'a', actions: ['pull'] })), 'invalid')
  t.equal(refusedAs(() => checkGrant({ kind: 'user', subject: 'a', repository: 'Team/*', actions: ['pull'] })), 'invalid')
  t.equal(refusedAs(() => checkGrant({ kind: 'user', subject: 'a', repository: 'team/*', actions: ['*'] })), 'invalid')
  t.equal(refusedAs(() => checkGrant({ kind: 'user', subject: 'a', repository: 'team/*', actions: [] })), 'invalid')
  t.same(checkGrant({ kind: 'user', subject: 'a', repository: 'u/${account}/*', actions: ['delete', 'pull'] }).actions, ['pull', 'delete'])
})
