// `portier access`: each action's arguments become one admin API call, checked before any network; wrong arguments are usage errors.
import t from 'tap'
import { UsageError } from '../../src/cli/args.js'
import { parseAccess } from '../../src/cli/access.js'

function requestOf(args: string[]) {
  const parsed = parseAccess(args)
  if (parsed.help) throw new Error('help')
  return parsed.request
}

function usageError(args: string[]): string {
  try {
    parseAccess(args)
  } catch (error) {
    if (error instanceof UsageError) {
      if (error.command !== 'access') throw new Error(`usage of ${String(error.command)}`)
      return error.message
    }
    throw error
  }
  throw new Error(`no usage error for ${args.join(' ')}`)
}

t.test('each action is one admin API call', async (t) => {
  t.same(requestOf(['groups']), { method: 'GET', path: '/admin/api/access/groups' })
  t.same(requestOf(['grants', '--json']), { method: 'GET', path: '/admin/api/access/grants' })
  t.same(requestOf(['group-create', 'ci']), { method: 'POST', path: '/admin/api/access/groups', body: { name: 'ci', members: [] } })
  t.same(requestOf(['group-create', 'ci', '--member', 'alice', '--member', 'bob']), { method: 'POST', path: '/admin/api/access/groups', body: { name: 'ci', members: ['alice', 'bob'] } })
  t.same(requestOf(['group-members', 'ci', '--member', 'carol']), { method: 'PUT', path: '/admin/api/access/groups', body: { name: 'ci', members: ['carol'] } })
  t.same(requestOf(['group-members', 'ci', '--no-members']), { method: 'PUT', path: '/admin/api/access/groups', body: { name: 'ci', members: [] } })
  t.same(requestOf(['group-delete', 'ci']), { method: 'DELETE', path: '/admin/api/access/groups?name=ci' })
  t.same(requestOf(['grant-delete', '7']), { method: 'DELETE', path: '/admin/api/access/grants?id=7' })
  t.same(requestOf(['grant-create', '--for-group', 'ci', '--repository', 'team/*', '--actions', 'pull, push']), {
    method: 'POST', path: '/admin/api/access/grants', body: { kind: 'group', subject: 'ci', repository: 'team/*', actions: ['pull', 'push'] },
  })
  t.same(requestOf(['grant-create', '--for-user', 'alice', '--repository', 'alice/**', '--actions', 'pull,push,delete']), {
    method: 'POST', path: '/admin/api/access/grants', body: { kind: 'user', subject: 'alice', repository: 'alice/**', actions: ['pull', 'push', 'delete'] },
  })
  t.same(requestOf(['explain', '--for', 'a b&c', '--repository', 'team/app']), { method: 'GET', path: '/admin/api/access/explain?user=a%20b%26c&repository=team%2Fapp' })
  // -u/--user stays the administrator of the admin API, as for every admin command.
  const parsed = parseAccess(['groups', '-u', 'admin', '--admin-url', 'http://127.0.0.1:9113'])
  t.match(parsed, { help: false, values: { user: 'admin', 'admin-url': 'http://127.0.0.1:9113' } })
  t.same(parseAccess(['--help']), { help: true })
})

t.test('wrong arguments are usage errors of portier access', async (t) => {
  t.match(usageError([]), /^access needs one of groups, group-create/)
  t.match(usageError(['list']), /^unknown action list \(groups, /)
  t.equal(usageError(['group-create']), 'group-create needs the group name')
  t.equal(usageError(['group-members', 'ci']), 'group-members needs --member USER (repeat for more), or --no-members to empty the group')
  t.equal(usageError(['group-members', 'ci', '--member', 'a', '--no-members']), '--member and --no-members exclude each other')
  t.equal(usageError(['group-delete']), 'group-delete needs the group name')
  t.equal(usageError(['grant-delete']), 'grant-delete needs the grant id (see portier access grants)')
  t.equal(usageError(['grant-create', '--repository', 'x', '--actions', 'pull']), 'grant-create needs either --for-user USER or --for-group GROUP')
  t.equal(usageError(['grant-create', '--for-user', 'a', '--for-group', 'g', '--repository', 'x', '--actions', 'pull']), 'grant-create needs either --for-user USER or --for-group GROUP')
  t.equal(usageError(['grant-create', '--for-user', 'a', '--actions', 'pull']), 'grant-create needs --repository GLOB, e.g. team/*')
  t.equal(usageError(['grant-create', '--for-user', 'a', '--repository', 'x']), 'grant-create needs --actions, e.g. pull,push')
  t.equal(usageError(['explain', '--repository', 'x']), 'explain needs --for USER')
  t.equal(usageError(['explain', '--for', 'a']), 'explain needs --repository NAME')
  t.equal(usageError(['groups', 'extra']), 'unexpected argument extra')
  t.equal(usageError(['group-delete', 'a', 'b']), 'unexpected argument b')
  t.equal(usageError(['grant-create', 'x', '--for-user', 'a', '--repository', 'x', '--actions', 'pull']), 'unexpected argument x')
  t.equal(usageError(['group-create', 'ci', '--member']), '--member needs a user name')
  t.equal(usageError(['grant-create', '--actions']), '--actions needs actions like pull,push')
  t.equal(usageError(['groups', '--frobnicate']), 'unknown option --frobnicate')
})
