// `portier access` against a gateway with a real registry:2: a group and a grant made from the command line let the group's member
// push and pull where the grant says (skopeo, and the registry API with Basic credentials) and nowhere else; replacing the members
// and deleting the grant take access away at once; every change is audited; unknown groups and grants, bad input and
// a user who is no administrator are refused with the admin API's JSON errors and a non-zero exit.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { CLI, gatewayFixture } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { auditOf } from '../helpers/audit.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'

const PASSWORDS: Record<string, string> = { admin: 'admin-password', alice: 'alice-password', bob: 'bob-password' }
const basic = (user: string): string => `Basic ${Buffer.from(`${user}:${PASSWORDS[user] as string}`).toString('base64')}`

t.test('portier access: groups and grants from the command line decide what a member may push and pull', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-access-cli-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  const lines = await Promise.all(Object.entries(PASSWORDS).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}`))
  await writeFile(htpasswd, `${lines.join('\n')}\n`, { mode: 0o600 })
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        // Only the administrator has rules of the configuration: alice and bob get what grants give them.
        acl: [{ match: { account: 'admin' }, actions: ['*'] }],
      },
      ui: { admin_users: ['admin'] },
    },
  })
  const adminUrl = gateway.adminUrl as string
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const pull = async (repository: string, user: string): Promise<number> => {
    const response = await request(`${gateway.url}/v2/${repository}/manifests/latest`, {
      dispatcher,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json', authorization: basic(user) },
    })
    await response.body.text()
    return response.statusCode
  }
  const portier = (args: string[], user = 'admin') =>
    run(process.execPath, [CLI, 'access', ...args, '--admin-url', adminUrl, '--user', user], {
      cwd: gateway.cwd,
      env: { ...process.env, PORTIER_ADMIN_PASSWORD: PASSWORDS[user] as string },
      timeoutMs: 30_000,
    })
  const ok = async (args: string[]) => {
    const result = await portier(args)
    t.equal(result.code, 0, `portier access ${args.join(' ')} exits 0 (${result.stderr.trim()})`)
    return result.stdout
  }
  const image = await buildLayout(join(work, 'image'), 'latest', [{ layers: [2048], tar: true }])
  const push = (repository: string, user: string) =>
    skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}`, { destCertDir: gateway.certDir, destCreds: `${user}:${PASSWORDS[user] as string}`, allowFailure: true })

  // The administrator pushes one image where the grant will reach and one where it will not.
  t.equal((await push('team/base', 'admin')).code, 0, 'admin pushes team/base')
  t.equal((await push('other/base', 'admin')).code, 0, 'admin pushes other/base')
  t.equal(await pull('team/base', 'alice'), 403, 'before any grant alice may not pull team/base')
  t.not((await push('team/alice', 'alice')).code, 0, 'nor push to team/')

  // A group and a grant, from the command line.
  t.match(await ok(['group-create', 'builders', '--member', 'alice']), /^created group builders: alice$/m)
  const groups = await ok(['groups'])
  t.match(groups, /^NAME\s+MEMBERS\s+UPDATED BY\s+UPDATED AT$/m, 'groups lists name, members, who and when')
  t.match(groups, /^builders\s+alice\s+admin\s+\d{4}-\d\d-\d\dT/m, 'the new group, changed by admin')
  const made = JSON.parse(await ok(['grant-create', '--for-group', 'builders', '--repository', 'team/*', '--actions', 'pull,push', '--json'])) as { id: number; kind: string; subject: string; repository: string; actions: string[] }
  t.match(made, { kind: 'group', subject: 'builders', repository: 'team/*', actions: ['pull', 'push'] }, 'the grant as the admin API made it')
  t.ok(Number.isInteger(made.id) && made.id > 0, `a grant id (${made.id})`)
  const grants = await ok(['grants'])
  t.match(grants, /^ID\s+SUBJECT\s+REPOSITORY\s+ACTIONS/m)
  t.match(grants, new RegExp(`^${made.id}\\s+group builders\\s+team/\\*\\s+pull,push\\s+admin`, 'm'), 'grants lists id, subject, glob and actions')
  const listed = JSON.parse(await ok(['grants', '--json'])) as { grants: Array<{ id: number }> }
  t.same(listed.grants.map((grant) => grant.id), [made.id], '--json gives the admin API\'s list')

  // The member may now pull and push under team/ — and still nowhere else.
  t.equal(await pull('team/base', 'alice'), 200, 'alice pulls team/base through the grant')
  const pushed = await push('team/alice', 'alice')
  t.equal(pushed.code, 0, `alice pushes team/alice (${pushed.stderr.trim()})`)
  t.equal(await pull('other/base', 'alice'), 403, 'alice may not pull other/base')
  t.not((await push('other/alice', 'alice')).code, 0, 'nor push other/alice')
  t.equal(await pull('team/base', 'bob'), 403, 'bob is no member')
  const explained = await ok(['explain', '--for', 'alice', '--repository', 'team/base'])
  t.match(explained, /^alice on team\/base/m)
  t.match(explained, /^\s+pull\s+granted\s+.*builders/m, 'explain names how pull is granted')
  t.match(explained, /^\s+delete\s+denied/m, 'and that delete is not')

  // Replacing the members moves the access from alice to bob.
  t.match(await ok(['group-members', 'builders', '--member', 'bob']), /^updated group builders: bob$/m)
  t.equal(await pull('team/base', 'bob'), 200, 'bob pulls team/base now')
  t.equal(await pull('team/base', 'alice'), 403, 'alice does not any more')

  // Deleting the grant takes the access away.
  t.match(await ok(['grant-delete', String(made.id)]), new RegExp(`^deleted grant ${made.id}: group builders team/\\* pull,push$`, 'm'))
  t.equal(await pull('team/base', 'bob'), 403, 'without the grant bob may not pull team/base')
  t.not((await push('team/bob', 'bob')).code, 0, 'nor push there')
  t.match(await ok(['grants']), /^no grants$/m)

  // Refusals: the admin API's JSON errors, a non-zero exit, the message on stderr.
  const unknownGroup = await portier(['group-members', 'nosuch', '--member', 'alice'])
  t.equal(unknownGroup.code, 1, 'an unknown group exits 1')
  t.match(unknownGroup.stderr, /answered 404: no group nosuch/, 'and says so')
  const unknownDelete = await portier(['group-delete', 'nosuch'])
  t.equal(unknownDelete.code, 1)
  t.match(unknownDelete.stderr, /answered 404: no group nosuch/)
  const unknownGrant = await portier(['grant-delete', String(made.id)])
  t.equal(unknownGrant.code, 1, 'a deleted grant cannot be deleted again')
  t.match(unknownGrant.stderr, new RegExp(`answered 404: no grant ${made.id}`))
  const badId = await portier(['grant-delete', 'abc'])
  t.match(badId.stderr, /answered 400: a grant id is a positive whole number/)
  const duplicate = await portier(['group-create', 'builders'])
  t.equal(duplicate.code, 1, 'a group that exists exits 1')
  t.match(duplicate.stderr, /answered 409: the group builders exists already/)
  const badActions = await portier(['grant-create', '--for-user', 'alice', '--repository', 'team/*', '--actions', 'pull,fly'])
  t.equal(badActions.code, 1)
  t.match(badActions.stderr, /answered 400: actions may only be pull, push and delete/)
  const badGlob = await portier(['grant-create', '--for-user', 'alice', '--repository', 'Team/*', '--actions', 'pull'])
  t.match(badGlob.stderr, /answered 400: repository "Team\/\*": /)
  const badName = await portier(['group-create', '-bad'])
  t.equal(badName.code, 64, 'a group name starting with "-" is an option: a usage error')
  const badGroup = await portier(['group-create', 'a b'])
  t.match(badGroup.stderr, /answered 400: a group name is 1 to 64 letters/)
  const usage = await portier(['grant-create', '--for-user', 'alice', '--for-group', 'builders', '--repository', 'x', '--actions', 'pull'])
  t.equal(usage.code, 64, 'both --for-user and --for-group is a usage error')
  t.match(usage.stderr, /grant-create needs either --for-user USER or --for-group GROUP/)

  // Someone who is no administrator is refused, for reading too; without credentials the API asks for them.
  const notAdmin = await portier(['groups'], 'alice')
  t.equal(notAdmin.code, 1, 'alice is no administrator')
  t.match(notAdmin.stderr, /answered 403: .*not an administrator/)
  const notAdminChange = await portier(['group-create', 'mine', '--member', 'alice'], 'alice')
  t.match(notAdminChange.stderr, /answered 403/)
  for (const path of ['/admin/api/access/groups', '/admin/api/access/grants']) {
    const anonymous = await request(`${adminUrl}${path}`)
    const body = (await anonymous.body.json()) as { code?: string; errors?: Array<{ code: string }> }
    t.equal(anonymous.statusCode, 401, `GET ${path} without credentials: 401`)
    t.equal(anonymous.headers['content-type'], 'application/json')
    t.ok(body.code ?? body.errors?.[0]?.code, 'a JSON error with a code')
  }
  t.notMatch(await ok(['groups']), /mine/, 'alice made no group')

  // Every change is in the audit trail, by the administrator, with what was changed.
  const expected: Array<[string, RegExp]> = [
    ['group.create', /^group builders: alice$/],
    ['group.update', /^group builders: bob$/],
    ['grant.create', new RegExp(`^grant ${made.id}: group builders team/\\* pull,push$`)],
    ['grant.delete', new RegExp(`^grant ${made.id}: group builders team/\\* pull,push$`)],
  ]
  for (const [action, subject] of expected) {
    const entries = await auditOf(gateway, action)
    t.equal(entries.length, 1, `one ${action} entry`)
    t.match(entries[0], { user: 'admin', outcome: 'success', subject }, `${action}: by admin, what changed`)
  }

  t.match(await ok(['group-delete', 'builders']), /^deleted group builders$/m)
  t.match(await ok(['groups']), /^no groups$/m)
  t.match((await auditOf(gateway, 'group.delete'))[0], { user: 'admin', subject: 'group builders' })
})
