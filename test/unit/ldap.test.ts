// auth/ldap: filter escaping (RFC 4515), config and check-config errors, and logins against a real slapd (cache,
// empty passwords, groups, a filter that finds several entries, the login throttle).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { fileProblems } from '../../src/app/config-files.js'
import { createLdapLogins, escapeFilterValue, fillFilter, filterProblem, type LdapConfig } from '../../src/auth/ldap/index.js'
import { HtpasswdStore } from '../../src/auth/htpasswd.js'
import { createThrottle } from '../../src/auth/throttle.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { slapdFixture, PEOPLE } from '../helpers/slapd.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-ldap-unit-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const file = (text: string): string => {
  const path = join(dir, `file-${++files}`)
  writeFileSync(path, text)
  return path
}

t.test('filter values are escaped as RFC 4515 says', async (t) => {
  t.equal(escapeFilterValue('alice'), 'alice', 'plain names are kept')
  t.equal(escapeFilterValue('a*b(c)d\\e\0f'), 'a\\2ab\\28c\\29d\\5ce\\00f', '* ( ) \\ and NUL become hex escapes')
  t.equal(escapeFilterValue('jürgen ßé'), 'jürgen ßé', 'UTF-8 is a value like any other')
  t.equal(fillFilter('(uid={user})', { user: '*' }), '(uid=\\2a)', 'a lone * is no presence filter')
  t.equal(fillFilter('(uid={user})', { user: 'x)(|(uid=*' }), '(uid=x\\29\\28|\\28uid=\\2a)', 'a name cannot close the filter and open another')
  t.equal(fillFilter('(&(uid={user})(mail={user}))', { user: 'a*' }), '(&(uid=a\\2a)(mail=a\\2a))', 'every {user} is filled')
  t.equal(fillFilter('(member={dn})', { dn: 'cn=x (y)\\,ou=p' }), '(member=cn=x \\28y\\29\\5c,ou=p)', '{dn} is escaped too')
  t.equal(fillFilter('(uid={user})', { user: '{dn}' }, ), '(uid={dn})', 'a filled value is not filled again')
  t.equal(filterProblem('(uid={user})'), undefined)
  t.match(filterProblem('(uid={user}'), /./, 'unbalanced parentheses are a problem')
  t.equal(filterProblem('uid={user}'), 'a filter in parentheses')
})

function problemsOf(tree: string): ConfigProblem[] {
  try {
    loadConfig({ file: file(tree), env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

t.test('config errors name the key and what was expected', async (t) => {
  const keys = (tree: string): string[] => problemsOf(tree).map((problem) => problem.key)
  t.same(keys('auth:\n  ldap:\n    enabled: false\n    url: ""\n'), [], 'off needs nothing')
  t.same(keys('auth:\n  ldap:\n    enabled: true\n').sort(), ['auth.ldap.url', 'auth.ldap.user_base'], 'on needs a URL and a user base')
  t.same(keys('auth:\n  ldap:\n    url: http://ldap.example.org\n'), ['auth.ldap.url'], 'only ldap:// and ldaps://')
  const base = 'auth:\n  ldap:\n    enabled: true\n    url: ldaps://ldap.example.org\n    user_base: ou=people,dc=example,dc=org\n'
  t.same(keys(base), [], 'a minimal directory loads')
  t.same(keys(`${base}    start_tls: true\n`), ['auth.ldap.start_tls'], 'StartTLS over ldaps:// is refused')
  t.same(keys(`${base}    user_filter: (uid=alice)\n`), ['auth.ldap.user_filter'], 'a user filter without {user}')
  const unbalanced = problemsOf(`${base}    user_filter: "(&(uid={user})"\n`)
  t.equal(unbalanced[0]?.key, 'auth.ldap.user_filter', 'an unbalanced filter')
  t.match(unbalanced[0]?.expected, /RFC 4515/)
  t.same(keys(`${base}    group_base: ou=groups,dc=example,dc=org\n    group_filter: (objectClass=groupOfNames)\n`), ['auth.ldap.group_filter'], 'a group filter without {dn} or {user}')
  t.same(keys(`${base}    bind_dn: cn=portier,dc=example,dc=org\n`), ['auth.ldap.bind_password_file'], 'a bind DN without its password file')
  t.same(keys(`${base.replace('ldaps://', 'ldap://')}    ca_file: /etc/ssl/ca.pem\n`), ['auth.ldap.ca_file'], 'a CA on a connection that is not TLS')
  t.same(keys(`${base}    search_timeout: 0s\n`), ['auth.ldap.search_timeout'])
  t.same(keys(base.replace('auth:\n', 'auth:\n  mode: none\n')), ['auth.ldap.enabled'], 'auth.mode none has nobody to sign in')
  t.same(keys(`${base}    order: directory_first\n`), ['auth.ldap.order'])
})

t.test('check-config reads the password file and the CA', async (t) => {
  const htpasswd = file(`someone:${await hashPassword('x', 4)}\n`)
  const tree = (extra: string): string =>
    `auth:\n  htpasswd:\n    path: ${htpasswd}\n  ldap:\n    enabled: true\n    url: ldaps://ldap.example.org\n    user_base: ou=people,dc=example,dc=org\n    bind_dn: cn=portier,dc=example,dc=org\n${extra}`
  const problems = async (extra: string) => {
    const { config } = loadConfig({ file: file(tree(extra)), env: {} })
    return (await fileProblems(config, 'portier.yaml')).filter((problem) => problem.key.startsWith('auth.ldap'))
  }
  const missing = await problems(`    bind_password_file: ${join(dir, 'nope')}\n`)
  t.same(missing.map((p) => [p.key, p.found]), [['auth.ldap.bind_password_file', `${JSON.stringify(join(dir, 'nope'))}: no such file`]])
  const empty = await problems(`    bind_password_file: ${file('\n')}\n`)
  t.match(empty[0]?.found, /an empty file/)
  const notCa = await problems(`    bind_password_file: ${file('secret\n')}\n    ca_file: ${file('not a certificate')}\n`)
  t.same(notCa.map((p) => p.key), ['auth.ldap.ca_file'])
  t.match(notCa[0]?.found, /not a certificate/)
  t.same(await problems(`    bind_password_file: ${file('secret\n')}\n`), [], 'a readable password file is fine')
})

t.test('logins against slapd: groups, cache, empty passwords, ambiguous filters, throttle', async (t) => {
  const slapd = await slapdFixture(t)
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const htpasswd = file(`local:${await hashPassword('local-password', 4)}\nalice:${await hashPassword('file-password', 4)}\n`)
  const store = new HtpasswdStore(htpasswd, 60_000, { onLoad: () => undefined, onError: () => undefined })
  t.teardown(() => store.close())
  const config = (extra: Partial<LdapConfig> = {}): LdapConfig => ({
    ...loadConfig({ env: {} }).config.auth.ldap,
    enabled: true,
    url: slapd.ldapsUrl,
    ca_file: slapd.caFile,
    bind_dn: slapd.serviceDn,
    bind_password_file: slapd.servicePasswordFile,
    user_base: slapd.userBase,
    group_base: slapd.groupBase,
    health_interval: 0,
    ...extra,
  })
  const throttle = createThrottle({ max_failures: 2, window: 60_000, lockout: 60_000 })
  const ldap = createLdapLogins(config({ order: 'ldap_first' }), { store, throttle, log })
  t.teardown(() => ldap.close())

  t.same(await ldap.login('bob', PEOPLE.bob.password, '10.0.0.1'), { via: 'ldap', groups: [] }, 'bob signs in with no groups')
  t.same(await ldap.login('alice', PEOPLE.alice.password, '10.0.0.1'), { via: 'ldap', groups: ['admins', 'ci'] }, 'ldap_first: alice is the directory\'s alice, with her groups')
  t.equal(await ldap.login('alice', 'file-password', '10.0.0.1'), false, "ldap_first: the file's password for a directory name is wrong")
  t.same(await ldap.login('local', 'local-password', '10.0.0.1'), { via: 'htpasswd' }, 'a name the directory does not know goes on to the file')
  t.equal(await ldap.login('bob', '', '10.0.0.9'), false, 'an empty password is refused (no unauthenticated bind)')
  t.ok(ldap.accountActive('alice'), 'a verified directory user is active')
  t.notOk(ldap.accountActive('carol'), 'a user never verified is not')

  const account = await ldap.account('dave*')
  t.same(account, { active: true, groups: ['ci'] }, 'a lookup without password (refresh tokens) finds the entry and its groups')
  t.same(await ldap.account('carol'), { active: false, groups: [] }, 'the locked carol is not active')

  // Cached: with slapd stopped, the verified credential still passes; any other needs the directory.
  await slapd.pause()
  t.same(await ldap.login('bob', PEOPLE.bob.password, '10.0.0.1'), { via: 'ldap', groups: [] }, 'a verified credential is served from the cache')
  t.equal(await ldap.login('bob', 'another-password', '10.0.0.1'), 'unavailable', 'another password needs the directory: unavailable')
  t.same(await ldap.login('local', 'local-password', '10.0.0.1'), { via: 'htpasswd' }, 'ldap_first: file users sign in while the directory is down')
  t.equal(ldap.readiness().ready, false, 'readiness says the directory is down')
  t.equal((ldap.readiness().detail as { status: string }).status, 'down')
  await slapd.start()

  // The throttle: max_failures 2, so the third failure locks.
  const outcomes = []
  for (let i = 0; i < 4; i++) outcomes.push(await ldap.login('bob', `wrong-${i}`, '10.0.0.2'))
  t.same(outcomes, [false, false, false, 'locked'], 'wrong directory passwords lock like htpasswd ones')
  t.equal(await ldap.login('bob', PEOPLE.bob.password, '10.0.0.2'), 'locked', 'even the right password, while locked (it is not served from the cache)')

  // A filter that finds more than one entry identifies nobody.
  const loose = createLdapLogins(config({ user_filter: '(|(uid={user})(objectClass=inetOrgPerson))' }), { store, throttle, log })
  t.teardown(() => loose.close())
  t.equal(await loose.login('bob', PEOPLE.bob.password, '10.0.0.3'), false, 'an ambiguous filter refuses')
  t.ok(lines.some((line) => line.msg === 'LDAP user refused: auth.ldap.user_filter finds more than one entry for this name'), 'and says why')

  // A wrong service password makes the directory unavailable (503), never a wrong user password (401).
  const wrongService = createLdapLogins(config({ bind_password_file: file('not-the-password\n') }), { store, throttle, log })
  t.teardown(() => wrongService.close())
  t.equal(await wrongService.login('dave*', PEOPLE['dave*'].password, '10.0.0.4'), 'unavailable')
  t.ok(lines.some((line) => typeof line.err === 'string' && line.err.includes('(auth.ldap.bind_dn) was refused')), 'the log names the refused service account')

  // Without the test's CA, the directory's certificate is not trusted: unavailable, and the log says why.
  const noCa = createLdapLogins(config({ ca_file: '' }), { store, throttle, log })
  t.teardown(() => noCa.close())
  t.equal(await noCa.login('dave*', PEOPLE['dave*'].password, '10.0.0.5'), 'unavailable', 'an untrusted certificate is unavailable')
  t.ok(lines.some((line) => typeof line.err === 'string' && /certificate/i.test(line.err)), 'the log names the certificate problem')
})
