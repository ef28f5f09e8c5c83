// Access tokens through the gateway with a real registry:2: made by `portier token`, used by skopeo and podman as passwords,
// held to their scopes, refused at once when revoked or expired, robot accounts, and the token endpoint's JWT limited to them.
import t, { type Test } from 'tap'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { DatabaseSync } from 'node:sqlite'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { CLI, gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { auditOf, type AuditEntry } from '../helpers/audit.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'

const PASSWORDS = { admin: 'admin-password', alice: 'alice-password' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

interface MadeToken {
  token: string
  id: string
  owner: string
  scopes: string[]
  state: string
}

async function setup(t: Test, mode: 'htpasswd' | 'token') {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-tokens-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `admin:${await hashPassword(PASSWORDS.admin, 5)}\nalice:${await hashPassword(PASSWORDS.alice, 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode,
        htpasswd: { path: htpasswd },
        ...(mode === 'token' ? { token: { key: join(work, 'keys', 'token.key'), cert: join(work, 'keys', 'token.crt') } } : {}),
        throttle: { max_failures: 5, window: '1m', lockout: '1m' },
        acl: [
          { match: { account: 'admin' }, actions: ['*'] },
          // alice may do everything under team/, at any depth; her tokens get less.
          { match: { account: 'alice', name: 'team/**' }, actions: ['pull', 'push', 'delete'] },
        ],
      },
      ui: { admin_users: ['admin'] },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const call = async (method: 'GET' | 'POST' | 'DELETE' | 'HEAD', path: string, authorization?: string, userAgent?: string) => {
    const response = await request(`${gateway.url}${path}`, {
      dispatcher,
      method,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...(authorization ? { authorization } : {}), ...(userAgent ? { 'user-agent': userAgent } : {}) },
    })
    const text = method === 'HEAD' ? '' : await response.body.text()
    return { status: response.statusCode, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }
  /** A POST of an OAuth2 form to the token endpoint (what docker login sends to a token server that takes one). */
  const grant = async (fields: Record<string, string>, userAgent: string) => {
    const response = await request(`${gateway.url}/auth/token`, {
      dispatcher,
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': userAgent },
      body: new URLSearchParams({ service: 'portier-registry', client_id: 'docker', ...fields }).toString(),
    })
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
  }
  const portier = (args: string[], password = PASSWORDS.admin) =>
    run(process.execPath, [CLI, ...args, '--admin-url', gateway.adminUrl as string, '--user', 'admin'], {
      cwd: gateway.cwd,
      env: { ...process.env, PORTIER_ADMIN_PASSWORD: password },
      timeoutMs: 30_000,
    })
  const create = async (args: string[]): Promise<MadeToken> => {
    const made = await portier(['token', 'create', ...args, '--json'])
    t.equal(made.code, 0, `portier token create ${args.join(' ')} (${made.stderr.trim()})`)
    return JSON.parse(made.stdout) as MadeToken
  }
  const image = await buildLayout(join(work, 'image'), 'latest', [{ layers: [4096], tar: true }])
  const push = (repository: string, creds: string) =>
    skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}`, { destCertDir: gateway.certDir, destCreds: creds, allowFailure: true })
  return { gateway, call, grant, portier, create, push, work, image }
}

/** portier_audit_logins_coalesced_total{action="login"} from one scrape of the admin listener (0 before the first). */
async function coalescedLogins(gateway: GatewayHandle): Promise<number> {
  if (gateway.adminUrl === undefined) throw new Error('the gateway has no admin listener to scrape')
  const text = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  const found = text.split('\n').find((line) => line.startsWith('portier_audit_logins_coalesced_total{action="login"} '))
  return found === undefined ? 0 : Number(found.split(' ')[1])
}

t.test('Basic auth: a token made by the CLI pushes within its scope, 403 outside; revoked or expired it is refused at the next request', async (t) => {
  const { gateway, call, portier, create, push, image } = await setup(t, 'htpasswd')
  const made = await create(['--name', 'ci', '--scope', 'repository:team/*:pull,push', '--expires', '90d', '--owner', 'alice'])
  t.match(made.token, /^portier_[0-9A-Za-z]{46}$/, 'the token is shown once, recognisably')
  t.equal(made.owner, 'alice')
  t.same(made.scopes, ['repository:team/*:pull,push'])
  const alice = basic('alice', made.token)

  const pushed = await push('team/app:v1', `alice:${made.token}`)
  t.equal(pushed.code, 0, `skopeo push with the token as password (${pushed.stderr.trim()})`)
  t.equal((await call('GET', '/v2/team/app/manifests/v1', alice)).status, 200, 'and a pull by manifest')

  // The ACL grants alice team/** and delete; the token only team/* and pull,push.
  const deeper = await push('team/deep/app:v1', `alice:${made.token}`)
  t.not(deeper.code, 0, 'skopeo push to team/deep/app (the ACL allows it, the token does not) fails')
  const deeperPost = await call('POST', '/v2/team/deep/app/blobs/uploads/', alice)
  t.equal(deeperPost.status, 403, 'POST outside the token\'s scope: 403')
  t.equal((deeperPost.body.errors as Array<{ code: string }>)[0]?.code, 'DENIED')
  const digest = image.digest
  t.equal((await call('DELETE', `/v2/team/app/manifests/${digest}`, alice)).status, 403, 'delete is the ACL\'s to give, not the token\'s: 403')
  t.equal((await call('GET', '/v2/team/app/manifests/v1', basic('alice', PASSWORDS.alice))).status, 200, 'alice\'s password still has all her rights')
  t.equal((await call('GET', '/v2/', basic('bob', made.token))).status, 401, 'the token with another user name: 401')

  // podman: login with the token, then pull.
  const podman = await run('podman', ['--version']).catch(() => undefined)
  if (podman === undefined || podman.code !== 0) {
    t.comment('podman is not installed: login and pull with podman not checked')
  } else {
    const dir = join(tmpdir(), `pt-${randomBytes(4).toString('hex')}`)
    await mkdir(join(dir, 'xdg-run'), { recursive: true })
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'auth.json'), '{}')
    const env = { ...process.env, REGISTRY_AUTH_FILE: join(dir, 'auth.json'), HOME: dir, XDG_CONFIG_HOME: join(dir, 'xdg-config'), XDG_DATA_HOME: join(dir, 'xdg-data'), XDG_RUNTIME_DIR: join(dir, 'xdg-run') }
    const base = ['--root', join(dir, 'root'), '--runroot', join(dir, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
    const login = await run('podman', [...base, 'login', '--cert-dir', gateway.certDir, '-u', 'alice', '--password-stdin', gateway.host], { env, input: `${made.token}\n`, timeoutMs: 60_000 })
    t.equal(login.code, 0, `podman login with the token (${login.stderr.trim()})`)
    const pulled = await run('podman', [...base, 'pull', '--cert-dir', gateway.certDir, `${gateway.host}/team/app:v1`], { env, timeoutMs: 120_000 })
    t.equal(pulled.code, 0, `podman pull after the login (${pulled.stderr.trim()})`)
  }

  // The audit trail names the token a login used (never its secret), and coalesces a token's logins apart from the
  // password's: here three GET /v2/ from one client, token, password, token again, make two rows and one left out.
  const coalescedBefore = await coalescedLogins(gateway)
  for (const authorization of [alice, basic('alice', PASSWORDS.alice), alice]) t.equal((await call('GET', '/v2/', authorization, 'audit-probe/1')).status, 200)
  const probes = (entries: AuditEntry[]): AuditEntry[] => entries.filter((entry) => entry.userAgent === 'audit-probe/1')
  const logins = probes(await auditOf(gateway, 'login', (entries) => probes(entries).length >= 2))
  t.same(logins.map((entry) => [entry.outcome, entry.user, entry.subject ?? null]).sort(), [['success', 'alice', null], ['success', 'alice', made.id]], 'one row for the token (named), one for the password')
  t.equal(await coalescedLogins(gateway) - coalescedBefore, 1, 'the token\'s second login left out, and counted in portier_audit_logins_coalesced_total')
  // skopeo and podman send containers/image's user agent.
  const clientLogins = (await auditOf(gateway, 'login')).filter((entry) => String(entry.userAgent).startsWith('containers/') && entry.outcome === 'success')
  t.ok(clientLogins.length > 0 && clientLogins.every((entry) => entry.subject === made.id), `skopeo's and podman's logins with the token name it (${clientLogins.length} rows)`)
  t.notMatch(JSON.stringify(await auditOf(gateway, 'login')), made.token, 'the secret is never in the audit trail')

  const listed = await portier(['token', 'list', '--json'])
  const tokens = (JSON.parse(listed.stdout) as { tokens: Array<Record<string, unknown>> }).tokens
  const entry = tokens.find((token) => token.id === made.id)
  t.equal(entry?.state, 'active')
  t.ok(entry?.lastUsedAt, 'the last use is listed')
  t.equal(entry?.lastUsedFrom, '127.0.0.1', 'with its address')
  t.notMatch(listed.stdout, made.token, 'the list never shows the secret')

  // Revocation: the very next request is refused (the token was just used, so it is in the cache).
  t.equal((await call('GET', '/v2/', alice)).status, 200)
  const revoked = await portier(['token', 'revoke', made.id])
  t.equal(revoked.code, 0, revoked.stderr)
  t.match(revoked.stdout, `revoked ${made.id}`)
  const after = await call('GET', '/v2/', alice)
  t.equal(after.status, 401, 'the next request after the revocation: 401')
  t.match(after.headers['www-authenticate'], /^Basic realm=/)

  // Expiry: a token whose time has come (its row moved to the past, as time would) is refused.
  const soon = await create(['--name', 'short', '--scope', 'repository:team/*:pull', '--expires', '1h', '--owner', 'alice'])
  const db = new DatabaseSync(join(gateway.cwd, 'data', 'portier.db'))
  db.exec('PRAGMA busy_timeout = 5000')
  db.prepare('UPDATE access_tokens SET expires_at = ? WHERE id = ?').run(Date.now() - 1000, soon.id)
  db.close()
  t.equal((await call('GET', '/v2/team/app/manifests/v1', basic('alice', soon.token))).status, 401, 'an expired token: 401')

  // Every create, revoke and refusal is in the audit trail.
  const creates = await auditOf(gateway, 'token.create', (entries) => entries.length >= 2)
  t.same(creates.map((entry) => entry.user).sort(), ['admin', 'admin'], 'both creates, by the administrator')
  t.match(String(creates.find((entry) => String(entry.subject).startsWith(made.id))?.subject), `${made.id} (ci, alice)`)
  const revokes = await auditOf(gateway, 'token.revoke')
  t.equal(revokes[0]?.subject, `${made.id} (ci, alice)`)
  const refusedFor = ['revoked', 'expired', 'wrong_user']
  const refusals = (await auditOf(gateway, 'token.refused', (entries) => refusedFor.every((reason) => entries.some((entry) => entry.outcome === reason)))).map((entry) => entry.outcome)
  for (const reason of refusedFor) t.ok(refusals.includes(reason), `a refusal for ${reason} is audited`)
})

t.test('robot accounts get exactly their scopes; wrong tokens are throttled like passwords', async (t) => {
  const { call, create, push } = await setup(t, 'htpasswd')
  const robot = await create(['--robot', '--name', 'ci-bot', '--scope', 'repository:bots/*:pull,push', '--expires', '7d'])
  t.equal(robot.owner, 'robot$ci-bot')
  const pushed = await push('bots/app:v1', `robot$ci-bot:${robot.token}`)
  t.equal(pushed.code, 0, `the robot pushes to bots/app though no ACL rule names it (${pushed.stderr.trim()})`)
  const auth = basic('robot$ci-bot', robot.token)
  t.equal((await call('GET', '/v2/bots/app/manifests/v1', auth)).status, 200)
  t.equal((await call('POST', '/v2/team/app/blobs/uploads/', auth)).status, 403, 'nothing outside its scopes')
  t.equal((await call('GET', '/v2/_catalog', auth)).status, 403, 'not even the catalog')

  // Failed token logins count like failed passwords: the sixth wrong one locks alice at this address.
  const statuses: number[] = []
  for (let i = 0; i < 7; i++) statuses.push((await call('GET', '/v2/', basic('alice', `portier_${'x'.repeat(46)}`))).status)
  t.same(statuses.slice(0, 5), [401, 401, 401, 401, 401])
  t.equal(statuses.at(-1), 429, 'then 429 (locked out)')
  const valid = await create(['--name', 'late', '--scope', 'repository:team/*:pull', '--owner', 'alice'])
  t.equal((await call('GET', '/v2/', basic('alice', valid.token))).status, 429, 'a right token is refused too while locked out')
})

t.test('token mode: the token endpoint takes an access token and signs only its scopes; skopeo pushes with it', async (t) => {
  const { gateway, call, grant, create, push, portier } = await setup(t, 'token')
  const made = await create(['--name', 'deploy', '--scope', 'repository:team/*:pull,push', '--owner', 'alice'])
  const scopes = ['repository:team/app:pull,push,delete', 'repository:team/deep/app:pull', 'repository:other/x:pull']
  const answer = await call('GET', `/auth/token?service=portier-registry&offline_token=true&${scopes.map((scope) => `scope=${encodeURIComponent(scope)}`).join('&')}`, basic('alice', made.token))
  t.equal(answer.status, 200)
  const claims = JSON.parse(Buffer.from(String(answer.body.token).split('.')[1] as string, 'base64url').toString('utf8')) as { sub: string; access: unknown }
  t.equal(claims.sub, 'alice')
  t.same(claims.access, [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }], 'only what the token and the ACL both allow')
  t.equal(answer.body.refresh_token, undefined, 'no refresh token: it would outlive the token\'s limits')
  const full = await call('GET', `/auth/token?service=portier-registry&scope=${encodeURIComponent(scopes[0] as string)}`, basic('alice', PASSWORDS.alice))
  const fullClaims = JSON.parse(Buffer.from(String(full.body.token).split('.')[1] as string, 'base64url').toString('utf8')) as { access: unknown }
  t.same(fullClaims.access, [{ type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] }], 'her password gets all the ACL gives')
  const bearer = `Bearer ${String(answer.body.token)}`
  t.equal((await call('GET', '/v2/team/app/tags/list', bearer)).status, 404, 'the JWT works at the registry API (no such repository yet)')

  const pushed = await push('team/app:v1', `alice:${made.token}`)
  t.equal(pushed.code, 0, `skopeo's bearer flow with the token as password (${pushed.stderr.trim()})`)
  const outside = await push('other/app:v1', `alice:${made.token}`)
  t.not(outside.code, 0, 'outside its scope the push fails')

  // The token endpoint's logins: the one with the access token names it, the password's names none.
  const tokenLogins = await auditOf(gateway, 'login.token', (entries) => entries.filter((entry) => entry.outcome === 'success').length >= 2)
  // This test's own requests send no User-Agent; skopeo's token requests send skopeo/VERSION.
  const accepted = tokenLogins.filter((entry) => entry.outcome === 'success')
  t.same(accepted.filter((entry) => entry.userAgent === undefined).map((entry) => entry.subject ?? null).sort(), [null, made.id], 'login.token: the access token named, the password not')
  const skopeos = accepted.filter((entry) => String(entry.userAgent).startsWith('skopeo/'))
  t.ok(skopeos.length > 0 && skopeos.every((entry) => entry.subject === made.id), `skopeo's token requests name the access token (${skopeos.length} rows)`)
  // And the GET /v2/ that follows with the JWT (a login in the trail) names the token the JWT was issued on.
  t.equal((await call('GET', '/v2/', bearer, 'audit-probe/2')).status, 200)
  t.equal((await call('GET', '/v2/', `Bearer ${String(full.body.token)}`, 'audit-probe/2')).status, 200)
  const probed = (entries: AuditEntry[]): AuditEntry[] => entries.filter((entry) => entry.userAgent === 'audit-probe/2' && entry.outcome === 'success')
  const bearerLogins = probed(await auditOf(gateway, 'login', (entries) => probed(entries).length >= 2))
  t.same(bearerLogins.map((entry) => entry.subject ?? null).sort(), [null, made.id], 'login with a JWT: the access token it was issued on named, the password\'s none (rows of their own)')

  // POSTed grants (docker login's OAuth2 form): the account is in the form, not in a header; a refresh grant names its refresh token.
  const ua = 'audit-probe/3'
  const passwordGrant = await grant({ grant_type: 'password', username: 'alice', password: PASSWORDS.alice, access_type: 'offline' }, ua)
  t.equal(passwordGrant.status, 200)
  const refreshToken = String(passwordGrant.body.refresh_token)
  const refreshId = (JSON.parse(Buffer.from(refreshToken.split('.')[1] as string, 'base64url').toString('utf8')) as { jti: string }).jti
  for (let i = 0; i < 2; i++) t.equal((await grant({ grant_type: 'refresh_token', refresh_token: refreshToken }, ua)).status, 200, 'a refresh grant')
  t.equal((await grant({ grant_type: 'password', username: 'alice', password: 'wrong' }, ua)).status, 401, 'a wrong password in the form')
  const formRows = (entries: AuditEntry[]): AuditEntry[] => entries.filter((entry) => entry.userAgent === ua)
  const posted = formRows(await auditOf(gateway, 'login.token', (entries) => formRows(entries).length >= 3))
  t.same(posted.map((entry) => [entry.outcome, entry.user ?? null, entry.subject ?? null]).sort(), [
    ['HTTP_401', 'alice', null],
    ['success', 'alice', null],
    ['success', 'alice', `refresh-token:${refreshId}`],
  ].sort(), 'the password grant and the refusal name alice; the refresh grants one row naming their refresh token (the second coalesced)')
  t.notMatch(JSON.stringify(posted), refreshToken, 'the refresh token itself is never in the audit trail')

  t.equal((await portier(['token', 'revoke', made.id])).code, 0)
  const afterRevoke = await call('GET', '/v2/team/app/tags/list', bearer)
  t.equal(afterRevoke.status, 401, 'a JWT signed for the token before its revocation is refused at the next request')
  t.match(afterRevoke.headers['www-authenticate'], /error="invalid_token"/)
  t.equal((await call('GET', '/v2/team/app/tags/list', `Bearer ${String(full.body.token)}`)).status, 200, 'a JWT from her password is not affected')
  t.equal((await call('GET', `/auth/token?service=portier-registry&scope=${encodeURIComponent(scopes[0] as string)}`, basic('alice', made.token))).status, 401, 'revoked: the token endpoint refuses it')
})

t.test('browser: a user makes a token on the "Access tokens" page, sees it once, uses it, revokes it; an administrator sees all and makes a robot', async (t) => {
  const { gateway, call } = await setup(t, 'htpasswd')
  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser)
  await page.goto(`${gateway.url}/ui/#/tokens`)
  await page.getByLabel('User name').fill('alice')
  await page.getByLabel('Password').fill(PASSWORDS.alice)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Access tokens', level: 1 }).waitFor()
  t.equal(await page.getByLabel(/Robot account/).count(), 0, 'no robot accounts for a user who is no administrator')
  await page.getByLabel('Name', { exact: true }).fill('laptop')
  await page.getByLabel('Scopes').fill('repository:team/*:pull')
  await page.getByLabel('Expires in').fill('30d')
  await page.getByRole('button', { name: 'Create token' }).click()
  const once = page.locator('.token-once')
  await once.waitFor()
  const secret = (await once.locator('copy-line code').first().textContent())?.trim() ?? ''
  t.match(secret, /^portier_[0-9A-Za-z]{46}$/, 'the new token is shown')
  t.match(await once.textContent(), /shown only this once/)
  t.match(await once.textContent(), /docker login -u 'alice'/, 'with the login command')
  const row = page.locator('tr', { hasText: 'laptop' })
  t.match(await row.textContent(), /repository:team\/\*:pull/)
  t.match(await row.textContent(), /active/)
  await screenshot(page, 'access-tokens')

  t.equal((await call('GET', '/v2/', basic('alice', secret))).status, 200, 'the token from the page logs in')
  t.equal((await call('POST', '/v2/team/app/blobs/uploads/', basic('alice', secret))).status, 403, 'pull only, as chosen')

  await page.reload()
  await page.getByRole('heading', { name: 'Access tokens', level: 1 }).waitFor()
  await page.locator('tr', { hasText: 'laptop' }).waitFor()
  t.notMatch(await page.content(), secret, 'after a reload the secret is gone for good')
  t.match(await page.locator('tr', { hasText: 'laptop' }).textContent(), /from 127\.0\.0\.1/, 'the last use and its address are listed')

  await page.getByRole('button', { name: 'Revoke laptop' }).click()
  await page.getByRole('button', { name: 'Confirm revoking laptop' }).click()
  await page.locator('tr', { hasText: 'laptop' }).getByText('revoked').waitFor()
  t.equal((await call('GET', '/v2/', basic('alice', secret))).status, 401, 'revoked on the page: refused at the next request')

  const admin = await openPage(browser)
  await admin.page.goto(`${gateway.url}/ui/#/tokens`)
  await admin.page.getByLabel('User name').fill('admin')
  await admin.page.getByLabel('Password').fill(PASSWORDS.admin)
  await admin.page.getByRole('button', { name: 'Sign in' }).click()
  await admin.page.getByRole('heading', { name: 'Access tokens', level: 1 }).waitFor()
  await admin.page.getByLabel(/Show every user's tokens/).check()
  await admin.page.locator('tr', { hasText: 'laptop' }).waitFor()
  t.match(await admin.page.locator('tr', { hasText: 'laptop' }).textContent(), /alice/, 'the administrator sees alice\'s token')
  await admin.page.getByLabel('Name', { exact: true }).fill('ui-bot')
  await admin.page.getByLabel('Scopes').fill('repository:bots/*:pull,push')
  await admin.page.getByLabel(/Robot account/).check()
  await admin.page.getByRole('button', { name: 'Create token' }).click()
  await admin.page.locator('.token-once').waitFor()
  t.match(await admin.page.locator('.token-once').textContent(), /docker login -u 'robot\$ui-bot'/, 'a robot account logs in as robot$NAME')
  const robotSecret = (await admin.page.locator('.token-once copy-line code').first().textContent())?.trim() ?? ''
  t.equal((await call('POST', '/v2/bots/app/blobs/uploads/', basic('robot$ui-bot', robotSecret))).status, 202, 'the robot may push to bots/*')
  // The API behind the page holds a user who is no administrator to their own tokens.
  const robotId = (await admin.page.locator('tr', { hasText: 'ui-bot' }).getAttribute('data-token')) ?? ''
  t.match(robotId, /^tok_/)
  const refused = await page.evaluate(async (id) => {
    const session = (await (await fetch('/ui/api/session')).json()) as { csrfToken: string }
    const headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrfToken }
    const post = (body: unknown) => fetch('/ui/api/tokens', { method: 'POST', headers, body: JSON.stringify(body) }).then((response) => response.status)
    return [
      await post({ name: 'sneaky', scopes: ['repository:**:*'], robot: true }),
      await post({ name: 'for-admin', scopes: ['repository:team/*:pull'], owner: 'admin' }),
      await fetch(`/ui/api/tokens?id=${encodeURIComponent(id)}`, { method: 'DELETE', headers }).then((response) => response.status),
      await fetch('/ui/api/tokens?all=1').then(async (response) => ((await response.json()) as { tokens: Array<{ owner: string }> }).tokens.map((token) => token.owner).join(',')),
    ]
  }, robotId)
  t.same(refused, [403, 403, 404, 'alice'], 'no robots, no tokens for others, no revoking others\' tokens, and only her own listed')
  t.same(problems.errors, [], 'no script errors on the page')
  t.same(admin.problems.errors, [])
})
