// ACL rules: first match wins, default deny, ${account} namespaces, groups, CIDRs, anonymous pull, catalog, * and config errors.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createAcl, type Caller } from '../../src/auth/acl.js'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import type { AclGroup, AclRule } from '../../src/auth/section.js'
import type { Action, Scope } from '../../src/registry/classify.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-acl-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const alice: Caller = { user: 'alice', anonymous: false }
const bob: Caller = { user: 'bob', anonymous: false }
const nobody: Caller = { user: '', anonymous: true }
const ip = '192.0.2.10'

function acl(rules: AclRule[], groups: AclGroup[] = [], mode: 'none' | 'htpasswd' = 'htpasswd') {
  return createAcl({ mode, acl: rules, groups })
}

function repo(name: string, ...actions: Action[]): Scope {
  return { type: 'repository', name, actions }
}

const catalog: Scope = { type: 'registry', name: 'catalog', actions: ['*'] }

let fileCount = 0
function problemsOf(yamlText: string): ConfigProblem[] {
  const file = join(dir, `config-${++fileCount}.yaml`)
  writeFileSync(file, yamlText)
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError, the configuration loaded')
}

t.test('no rules configured: authenticated users may do everything, anonymous callers nothing', async (t) => {
  const open = acl([])
  t.same(open.granted(alice, repo('any/thing', 'pull', 'push'), ip), ['pull', 'push'])
  t.same(open.granted(bob, repo('x', 'delete'), ip), ['delete'])
  t.same(open.granted(alice, catalog, ip), ['*'])
  t.same(open.granted(nobody, repo('any/thing', 'pull'), ip), [])
  t.same(open.granted(nobody, catalog, ip), [])
  t.same(open.allows(nobody, [repo('x', 'pull')], ip), { ok: false, missing: [repo('x', 'pull')] })
})

t.test('no rules with auth.mode none: everyone (all anonymous) keeps full access', async (t) => {
  const open = acl([], [], 'none')
  t.same(open.granted(nobody, repo('x', 'pull', 'push'), ip), ['pull', 'push'])
  t.same(open.granted(nobody, catalog, ip), ['*'])
})

t.test('configured rules replace the default, and a scope no rule matches is denied', async (t) => {
  const rules = acl([{ match: { account: 'alice', name: 'team/*' }, actions: ['pull'] }])
  t.same(rules.granted(alice, repo('team/app', 'pull'), ip), ['pull'])
  t.same(rules.granted(alice, repo('other/app', 'pull'), ip), [], 'no rule for other/app')
  t.same(rules.granted(bob, repo('team/app', 'pull'), ip), [], 'no rule for bob')
  t.same(rules.granted(alice, catalog, ip), [], 'no rule grants the catalog')
})

t.test('first matching rule wins, even when a later rule would grant more', async (t) => {
  const rules = acl([
    { match: { name: 'prod/**' }, actions: ['pull'] },
    { match: { account: 'alice' }, actions: ['*'] },
  ])
  t.same(rules.granted(alice, repo('prod/api', 'pull', 'push'), ip), ['pull'], 'the prod rule decides for alice too')
  t.same(rules.granted(alice, repo('dev/api', 'pull', 'push'), ip), ['pull', 'push'], 'the second rule decides elsewhere')
  const denyFirst = acl([
    { match: { account: 'bob' }, actions: [] },
    { match: {}, actions: ['*'] },
  ])
  t.same(denyFirst.granted(bob, repo('x', 'pull'), ip), [], 'an empty action list is a deny rule')
  t.same(denyFirst.granted(alice, repo('x', 'pull'), ip), ['pull'])
})

t.test('personal namespaces: ${account}/* lets alice push alice/x but not bob/x', async (t) => {
  const rules = acl([
    { match: { name: '${account}/*' }, actions: ['*'] },
    { match: {}, actions: ['pull'] },
  ])
  t.same(rules.granted(alice, repo('alice/x', 'pull', 'push'), ip), ['pull', 'push'])
  t.same(rules.granted(alice, repo('bob/x', 'pull', 'push'), ip), ['pull'], 'only pull in bob\'s namespace')
  t.same(rules.granted(bob, repo('bob/x', 'push'), ip), ['push'])
  t.same(rules.granted(alice, repo('alice2/x', 'push'), ip), [], 'a prefix of another name is not the namespace')
  t.same(rules.granted(alice, repo('alice/x/y', 'push'), ip), [], '* stays within one path component')
  t.same(rules.granted(alice, repo('alice', 'push'), ip), [], 'the bare account is not inside its namespace')
  t.same(rules.granted(nobody, repo('alice/x', 'pull'), ip), [], 'anonymous callers have no namespace')
})

t.test('${account} is literal: glob and regex characters in a user name match only themselves', async (t) => {
  const rules = acl([{ match: { name: 'home/${account}/**' }, actions: ['*'] }])
  const star: Caller = { user: '*', anonymous: false }
  const dot: Caller = { user: 'a.b', anonymous: false }
  const regex: Caller = { user: '.*', anonymous: false }
  t.same(rules.granted(star, repo('home/alice/app', 'push'), ip), [], 'user "*" is no wildcard')
  t.same(rules.granted(dot, repo('home/a.b/app', 'push'), ip), ['push'])
  t.same(rules.granted(dot, repo('home/axb/app', 'push'), ip), [], '"." in a user name is not "any character"')
  t.same(rules.granted(regex, repo('home/alice/app', 'push'), ip), [], 'user ".*" is no regex')
  const parens: Caller = { user: 'a(b', anonymous: false }
  t.same(rules.granted(parens, repo('home/ab/app', 'push'), ip), [], 'a user name that is no valid regex does not throw')
})

t.test('globs: * within a component, ** across, ? one character, a/**/b includes a/b', async (t) => {
  const rules = acl([
    { match: { name: 'lib/*' }, actions: ['pull'] },
    { match: { name: 'deep/**' }, actions: ['push'] },
    { match: { name: 'a/**/b' }, actions: ['delete'] },
    { match: { name: 'v?' }, actions: ['*'] },
  ])
  const all = (name: string) => rules.granted(alice, repo(name, 'pull', 'push', 'delete'), ip)
  t.same(all('lib/x'), ['pull'])
  t.same(all('lib/x/y'), [])
  t.same(all('deep/x/y/z'), ['push'])
  t.same(all('a/b'), ['delete'])
  t.same(all('a/x/y/b'), ['delete'])
  t.same(all('a/xb'), [])
  t.same(all('v1'), ['pull', 'push', 'delete'])
  t.same(all('v10'), [])
})

t.test('groups: a rule for a group matches its members only', async (t) => {
  const rules = acl(
    [
      { match: { group: 'admins' }, actions: ['*'] },
      { match: { group: 'ci', name: 'builds/**' }, actions: ['pull', 'push'] },
    ],
    [
      { name: 'admins', members: ['alice'] },
      { name: 'ci', members: ['bob', 'alice'] },
    ],
  )
  t.same(rules.granted(alice, repo('anything', 'delete'), ip), ['delete'])
  t.same(rules.granted(alice, catalog, ip), ['*'])
  t.same(rules.granted(bob, repo('builds/app', 'pull', 'push', 'delete'), ip), ['pull', 'push'])
  t.same(rules.granted(bob, repo('anything', 'pull'), ip), [])
  t.same(rules.granted(nobody, repo('builds/app', 'pull'), ip), [], 'anonymous callers belong to no group')
  t.same(rules.granted({ user: 'carol', anonymous: false }, repo('builds/app', 'pull'), ip), [])
})

t.test('groups a credential source vouches for count like listed members, for signed-in callers only', async (t) => {
  const rules = acl([{ match: { group: 'ci', name: 'builds/**' }, actions: ['pull', 'push'] }], [{ name: 'ci', members: [] }])
  t.same(rules.granted({ user: 'dora', anonymous: false, groups: ['ci'] }, repo('builds/app', 'push'), ip), ['push'])
  t.same(rules.granted({ user: 'dora', anonymous: false, groups: ['other'] }, repo('builds/app', 'push'), ip), [])
  t.same(rules.granted({ user: 'dora', anonymous: false }, repo('builds/app', 'push'), ip), [])
  t.same(rules.granted({ user: '', anonymous: true, groups: ['ci'] }, repo('builds/app', 'pull'), ip), [], 'never for anonymous callers')
})

t.test('account globs match authenticated names, never anonymous callers', async (t) => {
  const rules = acl([
    { match: { account: 'ci-*' }, actions: ['push'] },
    { match: { account: '*' }, actions: ['pull'] },
  ])
  t.same(rules.granted({ user: 'ci-runner', anonymous: false }, repo('x', 'push'), ip), ['push'])
  t.same(rules.granted(alice, repo('x', 'pull', 'push'), ip), ['pull'])
  t.same(rules.granted(nobody, repo('x', 'pull'), ip), [], '"*" does not include anonymous')
  t.same(rules.granted({ user: '', anonymous: false }, repo('x', 'pull'), ip), [], 'an empty user name counts as anonymous')
})

t.test('IP CIDR: IPv4, IPv6, IPv4-mapped addresses, bare addresses and unparsable client addresses', async (t) => {
  const rules = acl([
    { match: { ip: '10.0.0.0/8' }, actions: ['*'] },
    { match: { ip: 'fd00::/8' }, actions: ['push'] },
    { match: { ip: '198.51.100.7' }, actions: ['delete'] },
    { match: {}, actions: ['pull'] },
  ])
  const from = (address: string) => rules.granted(alice, repo('x', 'pull', 'push', 'delete'), address)
  t.same(from('10.1.2.3'), ['pull', 'push', 'delete'])
  t.same(from('::ffff:10.1.2.3'), ['pull', 'push', 'delete'], 'IPv4-mapped IPv6 counts as IPv4')
  t.same(from('11.1.2.3'), ['pull'])
  t.same(from('fd12:3456::1'), ['push'])
  t.same(from('fe80::1'), ['pull'])
  t.same(from('198.51.100.7'), ['delete'])
  t.same(from('198.51.100.8'), ['pull'])
  t.same(from('not-an-ip'), ['pull'], 'an unparsable address fits no ip rule')
  t.same(from(''), ['pull'])
})

t.test('anonymous pull is enabled per pattern with account ""', async (t) => {
  const rules = acl([
    { match: { account: '', name: 'public/**' }, actions: ['pull'] },
    { match: { name: '${account}/**' }, actions: ['*'] },
    { match: {}, actions: ['pull'] },
  ])
  t.same(rules.granted(nobody, repo('public/base', 'pull'), ip), ['pull'])
  t.same(rules.granted(nobody, repo('public/base', 'pull', 'push'), ip), ['pull'], 'pull only')
  t.same(rules.granted(nobody, repo('private/app', 'pull'), ip), [])
  t.same(rules.canPull(nobody, 'public/base', ip), true)
  t.same(rules.canPull(nobody, 'alice/app', ip), false)
  t.same(rules.granted(alice, repo('public/base', 'pull', 'push'), ip), ['pull'], 'account "" rules do not match users')
  t.same(rules.granted(alice, repo('alice/app', 'push'), ip), ['push'])
})

t.test('catalog: needs a rule granting * on registry:catalog; name globs do not shadow it', async (t) => {
  const rules = acl([
    { match: { name: '**' }, actions: ['pull'] },
    { match: { account: 'alice', type: 'registry', name: 'catalog' }, actions: ['*'] },
    { match: { account: 'bob', type: 'registry' }, actions: ['pull'] },
  ])
  t.same(rules.granted(alice, catalog, ip), ['*'], 'the name-only rule applies to repositories, not the catalog')
  t.same(rules.granted(bob, catalog, ip), [], 'pull on the registry is not *')
  t.same(rules.allows(bob, [catalog], ip), { ok: false, missing: [catalog] })
  t.same(rules.granted(alice, { type: 'registry', name: 'other', actions: ['*'] }, ip), [])
  t.equal(rules.canPull(bob, 'team/app', ip), true, 'the catalog filter asks about pull on each repository')
  const unknownType = { type: 'plugin', name: 'x', actions: ['pull'] } as unknown as Scope
  t.same(acl([]).granted(alice, unknownType, ip), [], 'unknown scope types are granted nothing')
})

t.test('* semantics: a rule with * grants any requested action; a requested * needs a rule with *', async (t) => {
  const rules = acl([
    { match: { name: 'all/*' }, actions: ['*'] },
    { match: { name: 'three/*' }, actions: ['pull', 'push', 'delete'] },
  ])
  t.same(rules.granted(alice, repo('all/x', 'pull', 'push', 'delete'), ip), ['pull', 'push', 'delete'])
  t.same(rules.granted(alice, repo('all/x', '*'), ip), ['*'])
  t.same(rules.granted(alice, repo('three/x', '*'), ip), [], 'pull+push+delete is not *')
  t.same(rules.granted(alice, repo('three/x', 'pull', '*'), ip), ['pull'])
  t.same(rules.granted(alice, repo('three/x', 'pull', 'pull'), ip), ['pull'], 'duplicates collapse')
})

t.test('allows: ok when every action of every scope is granted, otherwise the missing actions per scope', async (t) => {
  const rules = acl([
    { match: { name: 'team/*' }, actions: ['pull', 'push'] },
    { match: { name: 'base/*' }, actions: ['pull'] },
  ])
  t.same(rules.allows(alice, [], ip), { ok: true }, 'no scopes (GET /v2/) needs nothing')
  t.same(rules.allows(alice, [repo('team/app', 'pull', 'push')], ip), { ok: true })
  // A cross-mount: push on the target, pull on the source.
  t.same(rules.allows(alice, [repo('team/app', 'pull', 'push'), repo('base/os', 'pull')], ip), { ok: true })
  t.same(rules.allows(alice, [repo('base/os', 'pull', 'push'), repo('team/app', 'delete'), repo('team/x', 'pull')], ip), {
    ok: false,
    missing: [repo('base/os', 'push'), repo('team/app', 'delete')],
  })
})

t.test('canPull matches granted pull', async (t) => {
  const rules = acl([
    { match: { name: 'ro/*' }, actions: ['pull'] },
    { match: { name: 'wo/*' }, actions: ['push'] },
  ])
  t.equal(rules.canPull(alice, 'ro/a', ip), true)
  t.equal(rules.canPull(alice, 'wo/a', ip), false)
  t.equal(rules.canPull(alice, 'zz/a', ip), false)
})

t.test('createAcl refuses rules that loading would refuse', async (t) => {
  t.throws(() => acl([{ match: { ip: '10.0.0.0/33' }, actions: ['pull'] }]), /auth\.acl\[0\]\.match\.ip/)
  t.throws(() => acl([{ match: { group: 'ghosts' }, actions: ['pull'] }]), /auth\.acl\[0\]\.match\.group/)
})

t.test('config: ACL and groups load from YAML, with defaults of empty lists', async (t) => {
  t.same(loadConfig({ env: {} }).config.auth.acl, [])
  t.same(loadConfig({ env: {} }).config.auth.groups, [])
  const file = join(dir, 'good.yaml')
  writeFileSync(file, [
    'auth:',
    '  groups:',
    '    - name: admins',
    '      members: [alice]',
    '  acl:',
    '    - match: { group: admins }',
    '      actions: ["*"]',
    '    - match: { name: "${account}/**", ip: "10.0.0.0/8" }',
    '      actions: [pull, push]',
    '      comment: personal namespaces from the office',
    '    - match: { account: "", name: "public/**", type: repository }',
    '      actions: [pull]',
    '',
  ].join('\n'))
  const { config } = loadConfig({ file, env: {} })
  t.same(config.auth.acl[1], { match: { name: '${account}/**', ip: '10.0.0.0/8' }, actions: ['pull', 'push'], comment: 'personal namespaces from the office' })
  const rules = createAcl(config.auth)
  t.same(rules.granted(alice, repo('bob/app', 'delete'), ip), ['delete'])
  t.same(rules.granted(bob, repo('bob/app', 'push'), '10.9.8.7'), ['push'])
  t.same(rules.granted(bob, repo('bob/app', 'push'), ip), [])
  t.same(rules.granted(nobody, repo('public/a', 'pull'), ip), ['pull'])
  const fromEnv = loadConfig({ env: { PORTIER_AUTH_ACL: '[{match: {account: ""}, actions: [pull]}]' } }).config
  t.same(fromEnv.auth.acl, [{ match: { account: '' }, actions: ['pull'] }])
})

t.test('config: invalid globs, CIDRs, actions and groups are load errors naming the key', async (t) => {
  const problems = problemsOf([
    'auth:',
    '  groups:',
    '    - name: ops',
    '      members: [a]',
    '    - name: ops',
    '      members: [b]',
    '  acl:',
    '    - match: { name: "Team/*" }',
    '      actions: [pull]',
    '    - match: { name: "x/${labels:group}" }',
    '      actions: [pull]',
    '    - match: { ip: "10.0.0.0/33" }',
    '      actions: [pull]',
    '    - match: { ip: "not-an-ip" }',
    '      actions: [pull]',
    '    - match: { group: devs }',
    '      actions: [pull]',
    '    - match: { account: "" , name: "${account}/*" }',
    '      actions: [pull]',
    '    - match: {}',
    '      actions: [pull, write]',
    '    - match: { type: manifest }',
    '      actions: [pull]',
    '    - match: { name: "a/***" }',
    '      actions: [pull]',
    '    - match: { name: "" }',
    '      actions: [pull]',
    '    - match: { account: "" , group: ops }',
    '      actions: [pull]',
    '    - match: { account: "${account}" }',
    '      actions: [pull]',
    '    - match: {}',
    '      comment: no actions',
    '',
  ].join('\n'))
  const keys = problems.map((p) => p.key)
  t.same(keys.sort(), [
    'auth.acl[0].match.name',
    'auth.acl[10].match.group',
    'auth.acl[11].match.account',
    'auth.acl[12].actions',
    'auth.acl[1].match.name',
    'auth.acl[2].match.ip',
    'auth.acl[3].match.ip',
    'auth.acl[4].match.group',
    'auth.acl[5].match.name',
    'auth.acl[6].actions[1]',
    'auth.acl[7].match.type',
    'auth.acl[8].match.name',
    'auth.acl[9].match.name',
    'auth.groups[1].name',
  ])
  const ipProblem = problems.find((p) => p.key === 'auth.acl[2].match.ip')
  t.match(ipProblem, { expected: /CIDR/, found: '"10.0.0.0/33"' })
  t.ok(problems.every((p) => p.source.endsWith('.yaml')), 'each problem names the file')
})

t.test('config: a rule that is not a mapping is reported without breaking the other checks', async (t) => {
  const problems = problemsOf('auth:\n  acl:\n    - just-a-string\n    - match: { ip: "1.2.3.4/40" }\n      actions: [pull]\n')
  t.same(problems.map((p) => p.key).sort(), ['auth.acl[0]', 'auth.acl[1].match.ip'])
})

t.test('the commented examples in config/portier.yaml load and mean what they say', async (t) => {
  const lines = readFileSync(resolve(import.meta.dirname, '../../config/portier.yaml'), 'utf8').split('\n')
  // The example block under each key: the "  #  " lines right after it, uncommented.
  const example = (key: string): string[] => {
    const start = lines.indexOf(`  ${key}: []`)
    t.ok(start >= 0, `auth.${key} is in the file`)
    const block: string[] = []
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith('  #  ')) break
      block.push(`  ${line.slice(3)}`)
    }
    return [`  ${key}:`, ...block]
  }
  const file = join(dir, 'examples.yaml')
  writeFileSync(file, ['auth:', ...example('acl'), ...example('groups'), ''].join('\n'))
  const { config } = loadConfig({ file, env: {} })
  t.equal(config.auth.acl.length, 5)
  const rules = createAcl(config.auth)
  t.same(rules.granted(alice, repo('bob/app', 'delete'), ip), ['delete'], 'alice is an admin')
  t.same(rules.granted(bob, repo('bob/app', 'push'), ip), ['push'], 'bob is an admin too')
  const carol: Caller = { user: 'carol', anonymous: false }
  t.same(rules.granted(carol, repo('carol/app', 'push'), ip), ['push'])
  t.same(rules.granted(carol, repo('alice/app', 'pull'), ip), [], 'not from outside 10.0.0.0/8')
  t.same(rules.granted(carol, repo('alice/app', 'pull'), '10.0.0.5'), ['pull'])
  t.same(rules.granted(nobody, repo('public/base', 'pull'), ip), ['pull'])
  t.same(rules.granted(carol, catalog, ip), ['*'])
})
