// Single sign-on to the web UI against a real OpenID provider (oidc-provider on loopback, its login form driven in
// Chromium): sign-in, groups into the ACL, sign-out at both ends, tampered state, replayed callback, wrong nonce,
// and the provider down at sign-in and at start.
import t from 'tap'
import { createHash } from 'node:crypto'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, ROOT, type GatewayHandle } from '../helpers/gateway.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'
import { keepOnLoopback, oidcProviderFixture, signInAtProvider } from '../helpers/oidc-provider.js'
import { refusedOrigin } from '../helpers/ports.js'
import { hashPassword } from '../../src/auth/hashes.js'

const ALICE_PASSWORD = 'alice-secret-pw'
const FLOW_COOKIE = '__Host-portier-oidc'
const SESSION_COOKIE = '__Host-portier-ui'
const insecure = new Agent({ connect: { rejectUnauthorized: false } })

/** A one-config-blob image pushed straight to the registry: enough for the catalog and the tag list. */
async function pushTiny(registryUrl: string, repository: string, tag: string): Promise<void> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const digest = `sha256:${createHash('sha256').update(config).digest('hex')}`
  const started = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registryUrl)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`blob upload: ${put.status}`)
  const manifest = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: config.length }, layers: [] }
  const answer = await fetch(`${registryUrl}/v2/${repository}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': manifest.mediaType } })
  if (answer.status !== 201) throw new Error(`manifest put: ${answer.status}`)
}

/** The repositories the UI API lists for the session of `context`. */
async function listed(context: BrowserContext, gateway: GatewayHandle): Promise<string[]> {
  const response = await context.request.get(`${gateway.url}/ui/api/repositories`)
  if (response.status() !== 200) throw new Error(`repositories: ${response.status()} ${await response.text()}`)
  return ((await response.json()) as { repositories: Array<{ name: string }> }).repositories.map((entry) => entry.name)
}

/** A sign-in started outside the browser: the provider URL Portier redirects to and the flow cookie it sets. */
async function startFlow(gateway: GatewayHandle): Promise<{ authorization: URL; flowCookie: string }> {
  const response = await request(`${gateway.url}/ui/oidc/login`, { dispatcher: insecure })
  await response.body.dump()
  if (response.statusCode !== 302) throw new Error(`/ui/oidc/login answered ${response.statusCode}`)
  const setCookie = [response.headers['set-cookie'] ?? []].flat()
  const flow = setCookie.find((line) => line.startsWith(`${FLOW_COOKIE}=`))
  if (!flow) throw new Error('no flow cookie')
  return { authorization: new URL(String(response.headers.location)), flowCookie: flow.slice(FLOW_COOKIE.length + 1).split(';')[0] ?? '' }
}

/** A fresh browser context holding a flow cookie, as the browser that started the sign-in would. */
async function contextWithFlow(browser: Browser, gateway: GatewayHandle, flowCookie: string): Promise<{ context: BrowserContext; page: Page }> {
  const opened = await openPage(browser)
  await keepOnLoopback(opened.context)
  await opened.context.addCookies([{ name: FLOW_COOKIE, value: flowCookie, url: `${gateway.url}/`, secure: true, httpOnly: true, sameSite: 'Lax' }])
  return opened
}

async function sessionStatus(context: BrowserContext, gateway: GatewayHandle): Promise<number> {
  return (await context.request.get(`${gateway.url}/ui/api/session`)).status()
}

async function readiness(gateway: GatewayHandle): Promise<{ status: number; sso: { ready: boolean; detail: string } | undefined }> {
  const response = await fetch(`${gateway.adminUrl as string}/readyz`)
  const body = (await response.json()) as { checks: Array<{ name: string; ready: boolean; detail: string }> }
  return { status: response.status, sso: body.checks.find((check) => check.name === 'sso') }
}

t.test('web UI single sign-on through a real OpenID provider in Chromium', async (t) => {
  const registry = await registryFixture(t)
  await pushTiny(registry.url, 'builds/app', 'v1')
  await pushTiny(registry.url, 'other/thing', 'v1')
  const work = await mkdtemp(join(tmpdir(), 'portier-oidc-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(ALICE_PASSWORD, 5)}\n`)
  const idp = await oidcProviderFixture(t, {
    dir: work,
    accounts: {
      // "staff" is no group of Portier's: it is left out of the session.
      carol: { groups: ['ci', 'staff'] },
      dave: { groups: ['qa'] },
    },
  })
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        groups: [
          { name: 'admins', members: ['alice'] },
          // Filled by the provider's groups claim only.
          { name: 'ci', members: [] },
        ],
        acl: [
          { match: { group: 'admins' }, actions: ['*'] },
          { match: { group: 'ci', name: 'builds/**' }, actions: ['pull', 'push'] },
        ],
      },
      ui: {
        oidc: {
          enabled: true,
          issuer: idp.issuer,
          client_id: idp.clientId,
          client_secret_file: idp.clientSecretFile,
          ca_file: idp.caFile,
          label: 'Example ID',
        },
      },
    },
  })
  await idp.registerClient([`${gateway.url}/ui/oidc/callback`], [`${gateway.url}/ui/`])
  await gateway.waitForLog((line) => line.msg === 'single sign-on ready')

  const browser = await browserFixture(t)
  const carol = await openPage(browser)
  await keepOnLoopback(carol.context)
  let carolCookie = ''

  await t.test('the login page offers single sign-on beside the password form; /readyz says it is ready', async (t) => {
    await carol.page.goto(`${gateway.url}/ui/`)
    const button = carol.page.getByRole('link', { name: 'Sign in with Example ID' })
    await button.waitFor()
    t.equal(await button.getAttribute('href'), '/ui/oidc/login')
    t.equal(await carol.page.getByLabel('Password').count(), 1, 'the password form stays (allow_password_login defaults to true)')
    const shot = await screenshot(carol.page, 'oidc-login')
    // The README's picture: refreshed on request only, so a test run leaves the work tree as it was.
    if (process.env.PORTIER_UPDATE_DOCS === '1') {
      await mkdir(join(ROOT, 'docs'), { recursive: true })
      await copyFile(shot, join(ROOT, 'docs', 'oidc-login.png'))
    }
    const ready = await readiness(gateway)
    t.equal(ready.status, 200)
    t.match(ready.sso, { ready: true, detail: /^single sign-on ready/ })
  })

  await t.test('carol (group ci at the provider) signs in there, lands in the UI as carol and sees builds/*', async (t) => {
    await carol.page.getByRole('link', { name: 'Sign in with Example ID' }).click()
    await carol.page.waitForURL((url) => url.origin === idp.issuer)
    await signInAtProvider(carol.page, 'carol', idp.issuer)
    await carol.page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
    t.equal(new URL(carol.page.url()).pathname, '/ui/', 'back at the UI')
    t.match(await carol.page.locator('.who').textContent(), 'Signed in as carol')
    await carol.page.locator('ul.repositories li').first().waitFor()
    t.same(await carol.page.locator('ul.repositories a').allTextContents(), ['builds/app'], 'the page lists builds/app only')
    t.same(await listed(carol.context, gateway), ['builds/app'], 'the API agrees: other/thing is not carol\'s')
    t.equal((await carol.context.request.get(`${gateway.url}/ui/api/tags?repository=builds/app`)).status(), 200)
    t.equal((await carol.context.request.get(`${gateway.url}/ui/api/tags?repository=other/thing`)).status(), 403)
    const cookies = await carol.context.cookies(gateway.url)
    carolCookie = cookies.find((cookie) => cookie.name === SESSION_COOKIE)?.value ?? ''
    t.ok(carolCookie, 'a Portier session cookie')
    t.notOk(cookies.some((cookie) => cookie.name === FLOW_COOKIE), 'the sign-in cookie is gone')
    await gateway.logsSettled()
    const signIn = gateway.logs.find((line) => line.msg === 'ui sign-in' && line.user === 'carol')
    t.match(signIn, { via: 'oidc', groups: ['ci'] }, 'the session holds ci, not staff (no group of Portier\'s)')
  })

  await t.test('a token carol makes on the tokens page carries her group: Basic with it reaches builds/* as she does, nothing else', async (t) => {
    const made = await carol.page.evaluate(async () => {
      const session = (await (await fetch('/ui/api/session')).json()) as { csrfToken: string }
      const headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrfToken }
      const response = await fetch('/ui/api/tokens', { method: 'POST', headers, body: JSON.stringify({ name: 'laptop', scopes: ['repository:**:pull,push'] }) })
      return { status: response.status, body: (await response.json()) as { token: string; owner: string; groups: string[] } }
    })
    t.equal(made.status, 201, 'created from the single sign-on session')
    t.equal(made.body.owner, 'carol')
    t.same(made.body.groups, ['ci'], 'with the groups the ACL saw for the session (ci; not staff)')
    const auth = `Basic ${Buffer.from(`carol:${made.body.token}`).toString('base64')}`
    const status = async (method: 'GET' | 'POST', path: string): Promise<number> => {
      const response = await request(`${gateway.url}${path}`, { method, dispatcher: insecure, headers: { authorization: auth, accept: 'application/vnd.oci.image.manifest.v1+json' } })
      await response.body.dump()
      return response.statusCode
    }
    t.equal(await status('GET', '/v2/builds/app/manifests/v1'), 200, 'pull builds/app (group ci)')
    t.equal(await status('POST', '/v2/builds/new/blobs/uploads/'), 202, 'push to builds/* (group ci)')
    t.equal(await status('GET', '/v2/other/thing/manifests/v1'), 403, 'other/thing: the token\'s scopes allow it, carol\'s groups do not')
  })

  await t.test('dave, whom the provider puts in no group Portier knows, sees no builds/*', async (t) => {
    const dave = await openPage(browser)
    await keepOnLoopback(dave.context)
    await dave.page.goto(`${gateway.url}/ui/oidc/login`)
    await signInAtProvider(dave.page, 'dave', idp.issuer)
    await dave.page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
    t.match(await dave.page.locator('.who').textContent(), 'Signed in as dave')
    t.same(await listed(dave.context, gateway), [], 'nothing listed')
    t.equal((await dave.context.request.get(`${gateway.url}/ui/api/tags?repository=builds/app`)).status(), 403, 'builds/app refused')
    await dave.context.close()
  })

  await t.test('sign-out ends Portier\'s session (the cookie is refused after) and the provider\'s', async (t) => {
    await carol.page.getByRole('button', { name: 'Sign out' }).click()
    await carol.page.waitForURL((url) => url.origin === idp.issuer)
    await carol.page.getByRole('button', { name: 'Yes, sign me out' }).click()
    await carol.page.waitForURL((url) => url.origin === gateway.url)
    await carol.page.getByRole('heading', { name: 'Sign in to Portier' }).waitFor()
    t.equal(new URL(carol.page.url()).pathname, '/ui/', 'the provider sent the browser back to the UI (post_logout_redirect_uri)')
    t.equal(await sessionStatus(carol.context, gateway), 401, 'signed out')
    await carol.context.addCookies([{ name: SESSION_COOKIE, value: carolCookie, url: `${gateway.url}/`, secure: true, httpOnly: true, sameSite: 'Strict' }])
    t.equal(await sessionStatus(carol.context, gateway), 401, 'the old cookie put back by hand is refused')
    // The provider's session is gone too: signing in again asks for the login again.
    await carol.page.goto(`${gateway.url}/ui/oidc/login`)
    await carol.page.locator('input[name="login"]').waitFor()
    t.equal(new URL(carol.page.url()).origin, idp.issuer, 'the provider shows its login form again')
  })

  await t.test('a sign-in started outside the browser works once; its callback replayed is refused', async (t) => {
    const { authorization, flowCookie } = await startFlow(gateway)
    t.equal(authorization.origin, idp.issuer)
    t.equal(authorization.searchParams.get('code_challenge_method'), 'S256', 'PKCE')
    t.equal(authorization.searchParams.get('scope'), 'openid profile email groups')
    const { context, page } = await contextWithFlow(browser, gateway, flowCookie)
    let callback = ''
    page.on('request', (sent) => {
      if (sent.url().startsWith(`${gateway.url}/ui/oidc/callback`)) callback = sent.url()
    })
    await page.goto(authorization.href)
    await signInAtProvider(page, 'carol', idp.issuer)
    await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
    t.equal(await sessionStatus(context, gateway), 200, 'signed in')
    t.ok(callback, 'the provider came back to the callback')
    const replay = await request(callback, { dispatcher: insecure, headers: { cookie: `${FLOW_COOKIE}=${flowCookie}` } })
    await replay.body.dump()
    t.equal(replay.statusCode, 302)
    t.equal(replay.headers.location, '/ui/?sso_error=state', 'the same state, code and cookie a second time: refused')
    t.notOk([replay.headers['set-cookie'] ?? []].flat().some((line) => line.startsWith(`${SESSION_COOKIE}=v1`)), 'no session for the replay')
    await context.close()
  })

  await t.test('a tampered state is refused', async (t) => {
    const { authorization, flowCookie } = await startFlow(gateway)
    authorization.searchParams.set('state', 'tampered-state-value')
    const { context, page } = await contextWithFlow(browser, gateway, flowCookie)
    await page.goto(authorization.href)
    await signInAtProvider(page, 'carol', idp.issuer)
    const alert = page.locator('#sso-error')
    await alert.waitFor()
    t.match(await alert.textContent(), 'did not belong to the sign-in this browser started')
    t.equal(new URL(page.url()).search, '', 'the error code is taken out of the address')
    t.equal(await sessionStatus(context, gateway), 401, 'no session')
    await gateway.logsSettled()
    t.ok(gateway.logs.some((line) => line.msg.startsWith('ui single sign-on refused: the state')), 'logged')
    await context.close()
  })

  await t.test('an ID token with another nonce than the one Portier sent is refused', async (t) => {
    const { authorization, flowCookie } = await startFlow(gateway)
    authorization.searchParams.set('nonce', 'a-nonce-portier-never-made')
    const { context, page } = await contextWithFlow(browser, gateway, flowCookie)
    await page.goto(authorization.href)
    await signInAtProvider(page, 'carol', idp.issuer)
    const alert = page.locator('#sso-error')
    await alert.waitFor()
    t.match(await alert.textContent(), "failed Portier's checks")
    t.equal(await sessionStatus(context, gateway), 401, 'no session')
    await gateway.logsSettled()
    const refused = gateway.logs.find((line) => line.msg.startsWith("ui single sign-on refused: the provider's answer failed validation"))
    t.match(refused?.reason, /nonce/, 'the log names the nonce')
    await context.close()
  })

  await t.test('provider down at sign-in: back at the login page with a clear message; password sign-in still works', async (t) => {
    await idp.stop()
    const { context, page } = await openPage(browser)
    await page.goto(`${gateway.url}/ui/`)
    await page.getByRole('link', { name: 'Sign in with Example ID' }).click()
    const alert = page.locator('#sso-error')
    await alert.waitFor()
    const text = (await alert.textContent()) ?? ''
    t.match(text, /^Single sign-on unavailable: cannot reach https:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/, 'the reason is in the page')
    await screenshot(page, 'oidc-unavailable')
    const ready = await readiness(gateway)
    t.equal(ready.status, 200, 'the gateway stays ready: registry clients do not need the provider')
    t.match(ready.sso?.detail, /^single sign-on unavailable: cannot reach/)
    await page.getByLabel('User name').fill('alice')
    await page.getByLabel('Password').fill(ALICE_PASSWORD)
    await page.getByRole('button', { name: 'Sign in', exact: true }).click()
    await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
    t.same((await listed(context, gateway)).sort(), ['builds/app', 'other/thing'], 'alice (admins) sees everything')
    await context.close()
  })
  await carol.context.close()
})

t.test('provider down at start: Portier starts; the login page and /readyz say single sign-on is unavailable and why', async (t) => {
  const refused = await refusedOrigin()
  t.teardown(() => refused.release())
  const issuer = refused.url.replace('http://', 'https://')
  const work = await mkdtemp(join(tmpdir(), 'portier-oidc-down-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(ALICE_PASSWORD, 5)}\n`)
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } },
      ui: { oidc: { enabled: true, issuer, client_id: 'portier', allow_password_login: false } },
    },
  })
  const warned = await gateway.waitForLog((line) => line.msg.startsWith('single sign-on unavailable'))
  t.match(warned.msg, `cannot reach ${issuer}`)
  const session = await request(`${gateway.url}/ui/api/session`, { dispatcher: insecure })
  t.equal(session.statusCode, 401)
  const body = (await session.body.json()) as { errors: Array<{ detail: { loginAvailable: boolean; sso: { available: boolean; reason: string } } }> }
  t.match(body.errors[0]?.detail, { loginAvailable: false, sso: { available: false, reason: /^cannot reach https:\/\/127\.0\.0\.2:\d+/ } })
  const login = await request(`${gateway.url}/ui/api/login`, {
    method: 'POST',
    dispatcher: insecure,
    headers: { 'content-type': 'application/json', origin: gateway.url },
    body: JSON.stringify({ username: 'alice', password: ALICE_PASSWORD }),
  })
  await login.body.dump()
  t.equal(login.statusCode, 405, 'the password form is off (allow_password_login: false): refused even with the right password')
  const ready = await readiness(gateway)
  t.match(ready.sso, { ready: true, detail: /^single sign-on unavailable: cannot reach/ })

  const browser = await browserFixture(t)
  const { page } = await openPage(browser)
  await page.goto(`${gateway.url}/ui/`)
  const alert = page.locator('#sso-error')
  await alert.waitFor()
  t.match(await alert.textContent(), /^Single sign-on unavailable: cannot reach https:\/\/127\.0\.0\.2/)
  t.equal(await page.getByLabel('Password').count(), 0, 'no password form')
})
