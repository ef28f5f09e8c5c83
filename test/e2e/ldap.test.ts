// LDAP logins against a real slapd (OpenLDAP): skopeo pushes with a directory password, directory groups in the ACL,
// wrong passwords throttled, a disabled account refused, StartTLS and ldaps with the test's CA, the directory going
// away (503 and /readyz) and coming back, the token server and the web UI's sign-in.
import t, { type Test } from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { slapdFixture, PEOPLE, type SlapdHandle } from '../helpers/slapd.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MiB = 1024 * 1024
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const password = (user: keyof typeof PEOPLE): string => PEOPLE[user].password

const work = await mkdtemp(join(tmpdir(), 'portier-ldap-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const slapd = await slapdFixture(t)
const registry = await registryFixture(t)
const htpasswd = join(work, 'htpasswd')
await writeFile(htpasswd, `operator:${await hashPassword('operator-password', 5)}\n`)

/** auth.ldap for this slapd: StartTLS or ldaps, with the test's CA. */
function ldapConfig(directory: SlapdHandle, transport: 'start_tls' | 'ldaps', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    enabled: true,
    url: transport === 'ldaps' ? directory.ldapsUrl : directory.url,
    start_tls: transport === 'start_tls',
    ca_file: directory.caFile,
    bind_dn: directory.serviceDn,
    bind_password_file: directory.servicePasswordFile,
    user_base: directory.userBase,
    user_filter: '(&(objectClass=inetOrgPerson)(uid={user}))',
    group_base: directory.groupBase,
    group_filter: '(&(objectClass=groupOfNames)(member={dn}))',
    health_interval: '1s',
    ...extra,
  }
}

const acl = [
  { match: { group: 'admins' }, actions: ['*'] },
  { match: { group: 'ci', name: 'builds/**' }, actions: ['pull', 'push'] },
  { match: { account: '*', name: 'builds/**' }, actions: ['pull'] },
  { match: { account: 'operator' }, actions: ['*'] },
]
// Groups only the directory fills: declared with no members so match.group may name them.
const groups = [{ name: 'ci', members: [] }, { name: 'admins', members: [] }]

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

function client(t: Test, gateway: GatewayHandle, localAddress = '127.0.0.1') {
  const dispatcher = new Agent({ localAddress, connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  return async (method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> => {
    const answer = await request(`${gateway.url}${path}`, { dispatcher, method, headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...headers }, ...(body ? { body } : {}) })
    return { status: answer.statusCode, headers: answer.headers, text: await answer.body.text() }
  }
}

const code = (answer: Answer): string | undefined => (JSON.parse(answer.text) as { errors?: Array<{ code: string }> }).errors?.[0]?.code

t.test('registry API with Basic: directory users push by group, are throttled, disabled ones refused, and an outage is a 503', async (t) => {
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        groups,
        acl,
        throttle: { max_failures: 3, window: '1m', lockout: '1m' },
        ldap: ldapConfig(slapd, 'start_tls'),
      },
      ui: { session_secret_file: join(work, 'ui-secret-basic') },
    },
  })
  const call = client(t, gateway)

  // alice is in ci (and admins): skopeo pushes with her directory password.
  const image = await makeOciLayout(join(work, 'img'), { layers: [2 * MiB] })
  const pushed = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/builds/app:v1`, { destCertDir: gateway.certDir, destCreds: `alice:${password('alice')}` })
  t.equal(pushed.code, 0, 'skopeo push as the LDAP user alice')
  await skopeoCopy(`docker://${gateway.host}/builds/app:v1`, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: `bob:${password('bob')}` })
  t.equal((await readOciLayout(join(work, 'back'), 'latest')).manifestDigest, image.manifestDigest, 'bob (in no group) pulls what alice pushed: same digest')

  const bobPush = await call('POST', '/v2/builds/app/blobs/uploads/', { authorization: basic('bob', password('bob')) })
  t.equal(bobPush.status, 403, 'bob is not in ci: his push to builds/ is denied')
  t.equal(code(bobPush), 'DENIED')
  const davePush = await call('POST', '/v2/builds/app/blobs/uploads/', { authorization: basic('dave*', password('dave*')) })
  t.equal(davePush.status, 202, 'dave* (a name with a filter metacharacter, in ci) may push: the escaped filter found his entry')
  t.equal((await call('GET', '/v2/', { authorization: basic('operator', 'operator-password') })).status, 200, 'the htpasswd user signs in beside the directory')

  // Filter injection: unescaped, "al*" would find alice's entry, and her password would let it in.
  const injected = await call('GET', '/v2/', { authorization: basic('al*', password('alice')) })
  t.equal(injected.status, 401, '"al*" with alice\'s password is refused: * is a character of the name, not a wildcard')
  const closing = await call('GET', '/v2/', { authorization: basic('alice)(uid=*', password('alice')) })
  t.equal(closing.status, 401, 'a name that closes the filter is refused too')

  const carol = await call('GET', '/v2/', { authorization: basic('carol', password('carol')) })
  t.equal(carol.status, 401, 'carol (pwdAccountLockedTime set) is refused with her right password')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'LDAP user refused: the account is disabled' && line.user === 'carol'), 'the refusal is logged as a disabled account')

  // Wrong passwords: max_failures 3, so the fourth failure locks and the fifth try gets 429.
  const bobFrom2 = client(t, gateway, '127.0.0.2')
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await bobFrom2('GET', '/v2/', { authorization: basic('bob', `guess-${i}`) })).status)
  t.same(statuses, [401, 401, 401, 401], 'wrong directory passwords are 401s')
  const locked = await bobFrom2('GET', '/v2/', { authorization: basic('bob', password('bob')) })
  t.equal(locked.status, 429, 'then 429, even with the right password')
  t.ok(Number(locked.headers['retry-after']) > 0, 'with Retry-After')
  t.equal((await call('GET', '/v2/', { authorization: basic('bob', password('bob')) })).status, 200, 'bob from another address still signs in')

  // The web UI signs directory users in through the same login.
  const origin = gateway.url
  const signIn = await call('POST', '/ui/api/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ username: 'alice', password: password('alice') }))
  t.equal(signIn.status, 200, 'UI sign-in as alice')
  const cookie = String(signIn.headers['set-cookie']).split(';')[0] ?? ''
  const session = await call('GET', '/ui/api/session', { cookie })
  t.equal(session.status, 200, 'her session is valid on the next call')
  const aliceSession = JSON.parse(session.text) as { user?: string; admin?: boolean }
  t.equal(aliceSession.user, 'alice')
  t.equal(aliceSession.admin, true, 'her directory group admins makes her a UI administrator (the ACL grants admins the catalog)')
  // A token alice makes on the tokens page records her directory groups: with it, Basic gets what her groups give (within its scopes).
  const csrf = (JSON.parse(session.text) as { csrfToken: string }).csrfToken
  const made = await call('POST', '/ui/api/tokens', { origin, cookie, 'content-type': 'application/json', 'x-csrf-token': csrf }, JSON.stringify({ name: 'laptop', scopes: ['repository:builds/**:pull,push'] }))
  t.equal(made.status, 201, 'alice makes a token from her directory session')
  const aliceToken = JSON.parse(made.text) as { token: string; groups: string[] }
  t.same([...aliceToken.groups].sort(), ['admins', 'ci'], 'it records her directory groups')
  t.equal((await call('POST', '/v2/builds/tokened/blobs/uploads/', { authorization: basic('alice', aliceToken.token) })).status, 202, 'Basic with the token pushes to builds/ (her group ci)')
  t.equal((await call('POST', '/v2/other/app/blobs/uploads/', { authorization: basic('alice', aliceToken.token) })).status, 403, 'outside its scopes: 403, though her group admins may')
  const bobSignIn = await call('POST', '/ui/api/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ username: 'bob', password: password('bob') }))
  t.equal(bobSignIn.status, 200, 'UI sign-in as bob')
  t.equal((JSON.parse(bobSignIn.text) as { admin?: boolean }).admin, false, 'bob, in no group, is not')
  const wrongUi = await call('POST', '/ui/api/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ username: 'carol', password: password('carol') }))
  t.equal(wrongUi.status, 401, 'the disabled carol cannot sign in to the UI')

  // The directory goes away: a login it must answer is 503 (not 401), /readyz says why, and it recovers.
  const admin = client(t, { ...gateway, url: gateway.adminUrl ?? '' })
  t.equal((await admin('GET', '/readyz')).status, 200, 'ready while the directory answers')
  await slapd.pause()
  const down = await call('GET', '/v2/', { authorization: basic('dave*', 'not-cached-password') })
  t.equal(down.status, 503, 'a login the directory must answer gets 503 while it is down')
  t.equal(code(down), 'UNAVAILABLE')
  t.ok(Number(down.headers['retry-after']) > 0, 'with Retry-After')
  t.equal((await call('GET', '/v2/', { authorization: basic('alice', password('alice')) })).status, 200, "alice's verified password is cached (auth.ldap.cache_ttl): she goes on")
  t.equal((await call('GET', '/v2/', { authorization: basic('operator', 'operator-password') })).status, 200, 'htpasswd users are not touched by the outage')
  const notReady = await admin('GET', '/readyz')
  t.equal(notReady.status, 503, '/readyz is 503 while the directory is down')
  const ldapCheck = (JSON.parse(notReady.text) as { checks: Array<{ name: string; ready: boolean; detail?: { status?: string } }> }).checks.find((check) => check.name === 'ldap')
  t.equal(ldapCheck?.ready, false, 'the ldap check says so')
  t.equal(ldapCheck?.detail?.status, 'down')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'LDAP directory unreachable: its users get 503 (not 401) until it answers again' && line.level === 50), 'one error line says the directory is unreachable')

  await slapd.start()
  let ready = 0
  for (let i = 0; i < 50 && ready !== 200; i++) {
    ready = (await admin('GET', '/readyz')).status
    if (ready !== 200) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(ready, 200, '/readyz is ready again once the directory answers (auth.ldap.health_interval)')
  const back = await call('GET', '/v2/', { authorization: basic('dave*', password('dave*')) })
  t.equal(back.status, 200, 'directory logins work again')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'LDAP directory reachable again'), 'and the recovery is logged')
})

t.test('token server over ldaps: a directory user gets the grants of their groups, and skopeo pushes with tokens', async (t) => {
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'token',
        htpasswd: { path: htpasswd },
        token: { key: join(work, 'token.key'), cert: join(work, 'token.crt') },
        groups,
        acl,
        ldap: ldapConfig(slapd, 'ldaps'),
      },
    },
  })
  const call = client(t, gateway)
  const token = async (user: string, secret: string, scope: string) => {
    const answer = await call('GET', `/auth/token?service=portier-registry&scope=${encodeURIComponent(scope)}`, { authorization: basic(user, secret) })
    const body = answer.status === 200 ? (JSON.parse(answer.text) as { token: string }) : undefined
    const claims = body ? (JSON.parse(Buffer.from(body.token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { access: Array<{ actions: string[] }> }) : undefined
    return { status: answer.status, actions: claims?.access.flatMap((entry) => entry.actions).sort() }
  }
  t.same(await token('alice', password('alice'), 'repository:builds/tool:pull,push'), { status: 200, actions: ['pull', 'push'] }, "alice's token grants push on builds/ (group ci)")
  t.same(await token('bob', password('bob'), 'repository:builds/tool:pull,push'), { status: 200, actions: ['pull'] }, "bob's grants pull only")
  t.equal((await token('bob', 'wrong', 'repository:builds/tool:pull')).status, 401, 'a wrong directory password gets no token')
  t.equal((await token('carol', password('carol'), 'repository:builds/tool:pull')).status, 401, 'the disabled carol gets no token')

  // Refresh tokens: the refresh grant looks alice up again (no password) and grants by her groups now.
  const form = (fields: Record<string, string>) => call('POST', '/auth/token', { 'content-type': 'application/x-www-form-urlencoded' }, new URLSearchParams(fields).toString())
  const offline = await form({ grant_type: 'password', username: 'alice', password: password('alice'), service: 'portier-registry', access_type: 'offline', scope: 'repository:builds/tool:pull' })
  t.equal(offline.status, 200, 'password grant with access_type=offline')
  const refreshToken = (JSON.parse(offline.text) as { refresh_token?: string }).refresh_token ?? ''
  const refreshed = await form({ grant_type: 'refresh_token', refresh_token: refreshToken, service: 'portier-registry', scope: 'repository:builds/tool:pull,push' })
  t.equal(refreshed.status, 200, `the refresh grant works for a directory user: ${refreshed.text}`)
  t.equal((JSON.parse(refreshed.text) as { scope?: string }).scope, 'repository:builds/tool:pull,push', 'and grants push by her group ci, found again in the directory')

  const image = await makeOciLayout(join(work, 'img-token'), { layers: [1 * MiB] })
  const pushed = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/builds/tool:v1`, { destCertDir: gateway.certDir, destCreds: `alice:${password('alice')}` })
  t.equal(pushed.code, 0, 'skopeo pushes through the token server with a directory password')
  const bobPush = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/builds/tool:v2`, { destCertDir: gateway.certDir, destCreds: `bob:${password('bob')}`, allowFailure: true })
  t.not(bobPush.code, 0, "bob's push fails: his token grants pull only")

  await slapd.pause()
  t.teardown(() => slapd.start())
  t.equal((await token('dave*', password('dave*'), 'repository:builds/tool:pull')).status, 503, 'the token server answers 503 while the directory is down')
  await slapd.start()
})
