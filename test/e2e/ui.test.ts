// The web UI in a real headless Chromium against a real registry: sign-in, repositories, tags, image details,
// deletes checked through the registry API, the status panel, per-user visibility, CSRF refusals, sign-out;
// and without a browser: routing of / and /ui/, token mode, ui.enabled false, a registry verifying Portier's tokens,
// several upstreams (by-repository catalog, mirrored deletes).
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { buildLayout, type BuiltLayout } from '../helpers/oci-build.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { generateTokenKey } from '../../src/auth/token/index.js'

const KiB = 1024
const PASSWORDS = { alice: 'alice-secret-pw', bob: 'bob-secret-pw' }
const MANIFEST_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

async function tagsOf(registryUrl: string, repository: string): Promise<string[]> {
  const response = await fetch(`${registryUrl}/v2/${repository}/tags/list`)
  const body = (await response.json()) as { tags?: string[] | null }
  return [...(body.tags ?? [])].sort()
}

async function manifestStatus(registryUrl: string, repository: string, reference: string): Promise<number> {
  const response = await fetch(`${registryUrl}/v2/${repository}/manifests/${reference}`, { method: 'HEAD', headers: { accept: MANIFEST_ACCEPT } })
  return response.status
}

/** The visible text of each row header (the tag names) of the tags table, in page order. */
async function tagRows(page: Page): Promise<string[]> {
  return page.locator('table.tags tbody tr').evaluateAll((rows) => rows.map((row) => row.getAttribute('data-tag') ?? ''))
}

async function signIn(page: Page, user: string, password: string): Promise<void> {
  await page.getByLabel('User name').fill(user)
  await page.getByLabel('Password').fill(password)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
}

t.test('web UI in Chromium: sign in, browse, inspect, delete, status, sign out', async (t) => {
  const registry = await registryFixture(t, { deleteEnabled: true })
  const work = await mkdtemp(join(tmpdir(), 'portier-ui-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(PASSWORDS.alice, 5)}\nbob:${await hashPassword(PASSWORDS.bob, 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        groups: [{ name: 'admins', members: ['alice'] }],
        acl: [
          { match: { group: 'admins' }, actions: ['*'] },
          { match: { account: 'bob', name: 'team/**' }, actions: ['pull'] },
        ],
      },
    },
  })

  // Images pushed through Portier by alice: three tags of team/app (v1 and also-v1 share a digest),
  // a two-platform index, and a repository bob may not pull.
  const push = async (layout: BuiltLayout, reference: string, all = false): Promise<void> => {
    await skopeoCopy(`oci:${layout.dir}:${layout.tag}`, `docker://${gateway.host}/${reference}`, {
      destCertDir: gateway.certDir,
      destCreds: `alice:${PASSWORDS.alice}`,
      ...(all ? { extraArgs: ['--all'] } : {}),
    })
  }
  const v1 = await buildLayout(join(work, 'v1'), 'v1', [
    {
      layers: [300 * KiB, 120 * KiB, 7 * KiB],
      env: ['PATH=/usr/bin:/bin', 'APP_MODE=test'],
      entrypoint: ['/usr/bin/app', '--serve'],
      cmd: ['--port', '8080'],
      labels: { 'org.opencontainers.image.source': 'https://example.invalid/app', maintainer: 'ui-test' },
      created: '2026-01-02T03:04:05Z',
    },
  ])
  const v2 = await buildLayout(join(work, 'v2'), 'v2', [{ layers: [64 * KiB], created: '2026-02-03T04:05:06Z' }])
  const multi = await buildLayout(join(work, 'multi'), 'latest', [
    { platform: { os: 'linux', architecture: 'amd64' }, layers: [50 * KiB, 5 * KiB] },
    { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [40 * KiB] },
  ])
  const secret = await buildLayout(join(work, 'secret'), 'v1', [{ layers: [10 * KiB] }])
  await push(v1, 'team/app:v1')
  await push(v1, 'team/app:also-v1')
  await push(v2, 'team/app:v2')
  await push(multi, 'team/multi:latest', true)
  await push(secret, 'private/secret:v1')
  t.same(await tagsOf(registry.url, 'team/app'), ['also-v1', 'v1', 'v2'], 'the registry holds the pushed tags')

  const browser = await browserFixture(t)
  const { context, page, problems } = await openPage(browser)

  await t.test('a browser opening the registry address lands on the sign-in page', async (t) => {
    const response = await page.goto(`${gateway.url}/`)
    t.equal(response?.status(), 200)
    t.equal(new URL(page.url()).pathname, '/ui/', 'redirected to /ui/')
    await page.getByRole('heading', { name: 'Sign in to Portier' }).waitFor()
    const headers = (await page.request.get(`${gateway.url}/ui/`)).headers()
    t.match(headers['content-security-policy'], /default-src 'none'; script-src 'self'/, 'a strict CSP')
    t.equal(headers['x-frame-options'], 'DENY')
    await screenshot(page, 'login')
  })

  await t.test('a wrong password shows an error in the page, not a blank page', async (t) => {
    await page.getByLabel('User name').fill('alice')
    await page.getByLabel('Password').fill('not-the-password')
    await page.getByRole('button', { name: 'Sign in' }).click()
    const alert = page.getByRole('alert')
    await alert.waitFor()
    t.equal((await alert.textContent())?.trim(), 'Wrong user name or password.')
    t.ok(await page.getByRole('heading', { name: 'Sign in to Portier' }).isVisible(), 'the sign-in form is still there')
    t.same(await context.cookies(), [], 'no session cookie')
    await screenshot(page, 'login-error')
  })

  let sessionCookie = ''
  await t.test('alice signs in with the keyboard and sees the pushed repositories', async (t) => {
    await page.getByLabel('User name').focus()
    await page.keyboard.press('Control+A')
    await page.keyboard.type('alice')
    await page.keyboard.press('Tab')
    await page.keyboard.type(PASSWORDS.alice)
    await page.keyboard.press('Enter')
    await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
    await page.locator('ul.repositories li').first().waitFor()
    const names = await page.locator('ul.repositories a').allTextContents()
    t.same(names, ['private/secret', 'team/app', 'team/multi'])

    const cookies = await context.cookies()
    t.equal(cookies.length, 1, 'one cookie')
    const cookie = cookies[0]
    t.equal(cookie?.name, '__Host-portier-ui')
    t.equal(cookie?.httpOnly, true, 'HttpOnly')
    t.equal(cookie?.secure, true, 'Secure')
    t.equal(cookie?.sameSite, 'Strict', 'SameSite=Strict')
    t.equal(cookie?.path, '/')
    t.ok((cookie?.expires ?? 0) > Date.now() / 1000, 'expires')
    sessionCookie = cookie?.value ?? ''
    t.notOk(problems.urls.some((url) => url.includes(PASSWORDS.alice) || url.includes('password')), 'no credentials in any URL')
    t.notOk(page.url().includes(PASSWORDS.alice))
    await screenshot(page, 'repositories')

    await page.getByLabel('Filter repositories').fill('multi')
    await page.waitForFunction(() => document.querySelectorAll('ul.repositories li').length === 1)
    t.same(await page.locator('ul.repositories a').allTextContents(), ['team/multi'], 'the filter narrows the list')
    t.match(page.url(), /#\/\?q=multi$/)
    await page.getByLabel('Filter repositories').fill('')
    await page.waitForFunction(() => document.querySelectorAll('ul.repositories li').length === 3)
  })

  await t.test('the tags of team/app: sorted, with digest, size, created date and platform', async (t) => {
    await page.getByRole('link', { name: 'team/app' }).click()
    await page.getByRole('heading', { name: 'team/app', level: 1 }).waitFor()
    await page.locator('table.tags tbody tr').first().waitFor()
    t.same(await tagRows(page), ['also-v1', 'v1', 'v2'], 'natural order')
    const v1Row = page.locator('tr[data-tag="v1"]')
    const v1Bytes = v1.images[0]!.layerSizes.reduce((sum, size) => sum + size, 0)
    t.equal(await v1Row.locator('td[data-label="Size"]').getAttribute('data-bytes'), String(v1Bytes), 'compressed size = sum of the layers')
    t.equal(await v1Row.locator('td[data-label="Digest"] code').getAttribute('title'), v1.digest)
    t.equal((await v1Row.locator('td[data-label="Created"]').textContent())?.trim(), '2026-01-02 03:04 UTC')
    t.equal((await v1Row.locator('td[data-label="Platforms"]').textContent())?.trim(), 'linux/amd64')
    t.equal((await page.locator('copy-line code').textContent())?.trim(), `docker pull ${gateway.host}/team/app:v2`, 'the pull line names the newest tag')
    await screenshot(page, 'tags')

    // Phone width: nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 })
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    t.ok(overflow <= 0, `no horizontal scrolling at 390 px (overflow ${overflow} px)`)
    await screenshot(page, 'tags-phone')
    await page.setViewportSize({ width: 1200, height: 800 })
  })

  await t.test('a tag in detail: media type, the right layers and sizes, env, entrypoint, labels, history', async (t) => {
    await page.getByRole('link', { name: 'v1', exact: true }).click()
    await page.getByRole('heading', { name: 'team/app:v1', level: 1 }).waitFor()
    await page.locator('tr.layer').first().waitFor()
    const image = v1.images[0]!
    t.equal(await page.locator('tr.layer').count(), 3, 'three layers')
    const sizes = await page.locator('tr.layer td[data-label="Size"]').evaluateAll((cells) => cells.map((cell) => Number(cell.getAttribute('data-bytes'))))
    t.same(sizes, image.layerSizes, 'layer sizes in order')
    const digests = await page.locator('tr.layer td[data-label="Digest"] code').evaluateAll((cells) => cells.map((cell) => cell.getAttribute('title')))
    t.same(digests, image.layerDigests, 'layer digests in order')
    t.equal((await page.locator('code.media-type').textContent())?.trim(), 'application/vnd.oci.image.manifest.v1+json')
    t.equal(await page.locator('dd code.digest').getAttribute('data-digest'), v1.digest)
    t.same(await page.locator('ul.env code').allTextContents(), ['PATH=/usr/bin:/bin', 'APP_MODE=test'])
    const body = await page.locator('main').textContent()
    t.match(body, '["/usr/bin/app","--serve"]', 'entrypoint')
    t.match(body, '["--port","8080"]', 'command')
    t.match(body, 'org.opencontainers.image.source')
    t.equal(await page.locator('ol.history li').count(), 3, 'one history entry per build step')
    t.equal((await page.locator('copy-line code').textContent())?.trim(), `docker pull ${gateway.host}/team/app:v1`)
    await screenshot(page, 'manifest')
  })

  await t.test('a multi-arch index lists its platforms', async (t) => {
    await page.goto(`${gateway.url}/ui/#/r/team/multi`)
    await page.locator('tr[data-tag="latest"]').waitFor()
    const row = page.locator('tr[data-tag="latest"]')
    t.equal((await row.locator('td[data-label="Platforms"]').textContent())?.trim(), 'linux/amd64, linux/arm64/v8')
    const total = multi.images.flatMap((image) => image.layerSizes).reduce((sum, size) => sum + size, 0)
    t.equal(await row.locator('td[data-label="Size"]').getAttribute('data-bytes'), String(total), 'size of every platform image')
    await row.getByRole('link', { name: 'latest' }).click()
    await page.getByRole('heading', { name: 'Platforms' }).waitFor()
    t.same(await page.locator('table.platforms-table tbody th').allTextContents(), ['linux/amd64', 'linux/arm64/v8'])
    t.equal((await page.locator('code.media-type').textContent())?.trim(), 'application/vnd.oci.image.index.v1+json')
    await screenshot(page, 'index')
  })

  await t.test('the status panel shows the upstream, the certificate and recent pushes', async (t) => {
    await page.getByRole('link', { name: 'Status' }).click()
    await page.getByRole('heading', { name: 'Recent pushes' }).waitFor()
    const main = (await page.locator('main').textContent()) ?? ''
    t.match(main, registry.url, 'the upstream URL')
    t.match(main, /self-signed/, 'the self-signed certificate')
    t.match(main, /team\/app:v2/, 'a recent push')
    t.match(main, /alice/, 'who pushed')
    await screenshot(page, 'status')
  })

  await t.test('cross-site and token-less deletes are refused', async (t) => {
    const api = `${gateway.url}/ui/api/manifest?repository=team/app&digest=${v1.digest}`
    const session = (await (await context.request.get(`${gateway.url}/ui/api/session`)).json()) as { csrfToken: string }
    const noToken = await context.request.fetch(api, { method: 'DELETE', headers: { origin: gateway.url } })
    t.equal(noToken.status(), 403, 'no CSRF token: 403')
    t.equal(((await noToken.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'DENIED')
    const foreign = await context.request.fetch(api, { method: 'DELETE', headers: { origin: 'https://evil.example', 'x-csrf-token': session.csrfToken } })
    t.equal(foreign.status(), 403, 'another origin: 403')
    const noOrigin = await context.request.fetch(api, { method: 'DELETE', headers: { 'x-csrf-token': session.csrfToken } })
    t.equal(noOrigin.status(), 403, 'no Origin: 403')
    t.same(await tagsOf(registry.url, 'team/app'), ['also-v1', 'v1', 'v2'], 'nothing was deleted')
  })

  await t.test('deleting v1 names its digest and both tags, and removes them from the registry', async (t) => {
    await page.goto(`${gateway.url}/ui/#/r/team/app`)
    await page.locator('tr[data-tag="v1"]').waitFor()
    await page.getByRole('button', { name: 'Delete tag v1' }).click()
    const dialog = page.getByRole('dialog')
    await dialog.locator('ul.doomed').waitFor()
    t.equal(await dialog.locator('code.digest').getAttribute('data-digest'), v1.digest, 'the dialog names the digest')
    t.same(await dialog.locator('ul.doomed code').allTextContents(), ['also-v1', 'v1'], 'and every tag that goes with it')
    await screenshot(page, 'delete-confirm')
    await dialog.getByRole('button', { name: 'Delete manifest and 2 tags' }).click()
    await page.locator('p.notice').waitFor()
    t.match(await page.locator('p.notice').textContent(), /Deleted sha256:[0-9a-f]{12} and tags also-v1, v1/)
    await page.waitForFunction(() => document.querySelectorAll('table.tags tbody tr').length === 1)
    t.same(await tagRows(page), ['v2'], 'the page shows what is left')
    t.same(await tagsOf(registry.url, 'team/app'), ['v2'], 'the registry API agrees')
    t.equal(await manifestStatus(registry.url, 'team/app', v1.digest), 404, 'the manifest is gone')
    t.equal(await manifestStatus(registry.url, 'team/app', 'v2'), 200, 'v2 stays')
    await screenshot(page, 'deleted')
  })

  await t.test('sign-out ends the session, in the browser and on the server', async (t) => {
    await page.getByRole('button', { name: 'Sign out' }).click()
    await page.getByRole('heading', { name: 'Sign in to Portier' }).waitFor()
    t.match(await page.getByRole('status').first().textContent(), 'You have signed out.')
    t.same(await context.cookies(), [], 'the cookie is gone')
    const stillOut = await page.evaluate(async () => (await fetch('/ui/api/session')).status)
    t.equal(stillOut, 401)
    // The old cookie put back by hand is refused too (revoked on this instance).
    await context.addCookies([{ name: '__Host-portier-ui', value: sessionCookie, url: `${gateway.url}/`, secure: true, httpOnly: true, sameSite: 'Strict' }])
    t.equal((await context.request.get(`${gateway.url}/ui/api/session`)).status(), 401, 'a revoked cookie is refused')
    await context.clearCookies()
  })

  await t.test('bob, who may pull only team/**, sees neither private/secret nor delete buttons nor the status panel', async (t) => {
    const bob = await openPage(browser)
    await bob.page.goto(`${gateway.url}/ui/`)
    await signIn(bob.page, 'bob', PASSWORDS.bob)
    await bob.page.locator('ul.repositories li').first().waitFor()
    t.same(await bob.page.locator('ul.repositories a').allTextContents(), ['team/app', 'team/multi'])
    t.equal(await bob.page.getByRole('link', { name: 'Status' }).count(), 0, 'no status link')
    await bob.page.getByRole('link', { name: 'team/app' }).click()
    await bob.page.locator('tr[data-tag="v2"]').waitFor()
    t.equal(await bob.page.getByRole('button', { name: /^Delete/ }).count(), 0, 'no delete button')
    await bob.page.goto(`${gateway.url}/ui/#/r/private/secret`)
    await bob.page.getByRole('alert').waitFor()
    t.equal((await bob.page.getByRole('alert').textContent())?.trim(), 'You may not pull from this repository.')
    t.equal((await bob.context.request.get(`${gateway.url}/ui/api/tags?repository=private/secret`)).status(), 403, 'the API refuses too')
    t.equal((await bob.context.request.get(`${gateway.url}/ui/api/status`)).status(), 403, 'no status for bob')
    await screenshot(bob.page, 'repositories-bob')
    t.same(bob.problems.errors, [], 'no page errors')
    await bob.context.close()
  })

  t.same(problems.errors, [], 'no page errors or CSP violations')
})

t.test('with deletes turned off in the registry, the page says so and says how to allow them', async (t) => {
  const registry = await registryFixture(t, { deleteEnabled: false })
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const work = await mkdtemp(join(tmpdir(), 'portier-ui-nodelete-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const image = await buildLayout(join(work, 'image'), 'v1', [{ layers: [8 * KiB] }])
  await skopeoCopy(`oci:${image.dir}:v1`, `docker://${gateway.host}/library/kept:v1`, { destCertDir: gateway.certDir })

  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser)
  // auth.mode none: no sign-in, the page opens on the repositories.
  await page.goto(`${gateway.url}/ui/#/r/library/kept`)
  await page.locator('tr[data-tag="v1"]').waitFor()
  await page.getByRole('button', { name: 'Delete tag v1' }).click()
  const dialog = page.getByRole('dialog')
  await dialog.locator('ul.doomed').waitFor()
  await dialog.getByRole('button', { name: 'Delete manifest and 1 tag' }).click()
  const alert = dialog.getByRole('alert')
  await alert.waitFor()
  const text = (await alert.textContent()) ?? ''
  t.match(text, /deleting turned off/, 'says deletes are off')
  t.match(text, /storage\.delete\.enabled: true/, 'says which setting allows them')
  t.ok(await dialog.getByRole('button', { name: 'Delete manifest and 1 tag' }).isDisabled(), 'no point trying again')
  await screenshot(page, 'delete-disabled')
  t.same(await tagsOf(registry.url, 'library/kept'), ['v1'], 'the tag is still there')
  t.same(problems.errors, [], 'no page errors')
})

t.test('routing: browsers at / go to /ui/, registry clients do not; token mode signs in with htpasswd users; ui.enabled false serves no UI', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-ui-token-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(PASSWORDS.alice, 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'token', htpasswd: { path: htpasswd }, token: { key: join(work, 'token.key'), cert: join(work, 'token.crt') } },
      ui: { session_secret_file: join(work, 'ui-secret') },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const send = async (method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}, body?: string) => {
    const answer = await request(`${gateway.url}${path}`, { dispatcher, method, headers, ...(body ? { body } : {}) })
    const text = await answer.body.text()
    return { status: answer.statusCode, headers: answer.headers, text }
  }

  const browserRoot = await send('GET', '/', { accept: 'text/html,application/xhtml+xml' })
  t.equal(browserRoot.status, 302)
  t.equal(browserRoot.headers.location, '/ui/')
  const clientRoot = await send('GET', '/', { accept: 'application/json' })
  t.equal(clientRoot.status, 404, 'a registry client asking for / gets the registry answer')
  t.match(clientRoot.text, /"code":"NOT_FOUND"/)
  const base = await send('GET', '/v2/', { accept: 'text/html' })
  t.equal(base.status, 401, '/v2/ is untouched, even for browsers')
  t.match(String(base.headers['www-authenticate']), /^Bearer /)
  const page = await send('GET', '/ui/', { 'accept-encoding': 'gzip, br' })
  t.equal(page.status, 200)
  t.match(String(page.headers['content-type']), /^text\/html/)
  const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(page.text)?.[1] ?? ''
  const asset = await send('GET', script, { 'accept-encoding': 'br' })
  t.equal(asset.status, 200, 'the bundle is served from the package')
  t.equal(asset.headers['content-encoding'], 'br')
  t.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable', 'hashed assets are cached for good')
  t.match(String(asset.headers['content-type']), /^text\/javascript/)

  // Token mode: the UI signs in with the htpasswd users, as the token server does.
  const origin = gateway.url
  const login = (password: string) => send('POST', '/ui/api/login', { origin, 'content-type': 'application/json' }, JSON.stringify({ username: 'alice', password }))
  const wrong = await login('wrong')
  t.equal(wrong.status, 401)
  t.match(wrong.text, /"code":"UNAUTHORIZED"/)
  t.equal(wrong.headers['www-authenticate'], undefined, 'no Basic challenge: the browser must not pop up its own dialog')
  const right = await login(PASSWORDS.alice)
  t.equal(right.status, 200)
  const cookie = String(right.headers['set-cookie']).split(';')[0] ?? ''
  t.match(cookie, /^__Host-portier-ui=v1\./)
  const list = await send('GET', '/ui/api/repositories', { cookie })
  t.equal(list.status, 200)
  t.same(JSON.parse(list.text), { repositories: [] })
  const formPost = await send('POST', '/ui/api/login', { origin, 'content-type': 'application/x-www-form-urlencoded' }, `username=alice&password=${PASSWORDS.alice}`)
  t.equal(formPost.status, 405, 'an HTML form post (what a cross-site page could send) is refused')
  for (const body of ['{bad', '[1,2]', '"alice"']) {
    const notJson = await send('POST', '/ui/api/login', { origin, 'content-type': 'application/json' }, body)
    t.equal(notJson.status, 400, `${body}: not a JSON object, 400`)
    t.match(notJson.text, /"code":"UNSUPPORTED"/)
  }
  const crossSite = await send('POST', '/ui/api/login', { origin: 'https://evil.example', 'content-type': 'application/json' }, JSON.stringify({ username: 'alice', password: PASSWORDS.alice }))
  t.equal(crossSite.status, 403, 'login from another origin is refused')

  const off = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], ui: { enabled: false } } })
  const offDispatcher = new Agent({ connect: { ca: readFileSync(off.caFile) } })
  t.teardown(() => offDispatcher.close())
  const offPage = await request(`${off.url}/ui/`, { dispatcher: offDispatcher })
  t.equal(offPage.statusCode, 404, 'ui.enabled false: no UI')
  await offPage.body.dump()
  const offRoot = await request(`${off.url}/`, { dispatcher: offDispatcher, headers: { accept: 'text/html' } })
  t.equal(offRoot.statusCode, 404, 'and no redirect')
  await offRoot.body.dump()
})

t.test('a registry that verifies Portier\'s tokens (forward_authorization) gets a token for each UI call', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-ui-verifying-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const keys = generateTokenKey(join(work, 'keys'), { bits: 2048, commonName: 'portier' })
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword(PASSWORDS.alice, 5)}\n`)
  const registry = await registryFixture(t, {
    tokenAuth: { realm: 'https://127.0.0.1/auth/token', service: 'portier-registry', issuer: 'portier', rootcertbundle: keys.certPath },
  })
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, forward_authorization: true }],
      auth: { mode: 'token', htpasswd: { path: htpasswd }, token: { key: keys.keyPath, cert: keys.certPath } },
    },
  })
  const image = await buildLayout(join(work, 'image'), 'v1', [{ layers: [4 * KiB, 2 * KiB] }])
  await skopeoCopy(`oci:${image.dir}:v1`, `docker://${gateway.host}/verified/app:v1`, { destCertDir: gateway.certDir, destCreds: `alice:${PASSWORDS.alice}` })

  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const login = await request(`${gateway.url}/ui/api/login`, {
    dispatcher,
    method: 'POST',
    headers: { origin: gateway.url, 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
  })
  await login.body.dump()
  t.equal(login.statusCode, 200)
  const cookie = String(login.headers['set-cookie']).split(';')[0] ?? ''
  const api = async (path: string) => {
    const answer = await request(`${gateway.url}/ui/api/${path}`, { dispatcher, headers: { cookie } })
    return { status: answer.statusCode, body: (await answer.body.json()) as Record<string, unknown> }
  }
  const list = await api('repositories')
  t.equal(list.status, 200, 'the catalog through a token')
  t.same(list.body, { repositories: [{ name: 'verified/app', canPush: true, canDelete: true }] })
  const tags = await api('tags?repository=verified/app')
  t.equal(tags.status, 200)
  const summaries = tags.body.tags as Array<{ tag: string; digest: string; size: number }>
  t.same(summaries.map(({ tag, digest, size }) => ({ tag, digest, size })), [{ tag: 'v1', digest: image.digest, size: 6 * KiB }], 'manifest and config read with a token')
  t.match(await registry.log(), /GET \/v2\/verified\/app\/tags\/list HTTP\/1.1" 200/, 'the registry itself accepted the UI\'s token')
})

t.test('several upstreams: the list merges repositories spread by-repository; a mirror delete reaches every copy', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-ui-routing-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const image = await buildLayout(join(work, 'image'), 'v1', [{ layers: [3 * KiB] }])
  const secret = 'ui routing test secret, at least 32 characters long'
  const names = ['spread/a', 'spread/b', 'spread/c', 'spread/d', 'spread/e', 'spread/f']

  const a = await registryFixture(t)
  const b = await registryFixture(t)
  const spread = await gatewayFixture(t, { config: { upstreams: [{ url: a.url, name: 'a' }, { url: b.url, name: 'b' }], routing: { strategy: 'by-repository', secret } } })
  for (const name of names) await skopeoCopy(`oci:${image.dir}:v1`, `docker://${spread.host}/${name}:v1`, { destCertDir: spread.certDir })
  const held = async (url: string): Promise<string[]> => ((await (await fetch(`${url}/v2/_catalog`)).json()) as { repositories: string[] }).repositories
  const onA = await held(a.url)
  const onB = await held(b.url)
  t.ok(onA.length > 0 && onB.length > 0, `the repositories are spread (a: ${onA.length}, b: ${onB.length})`)

  const uiApi = async (gateway: typeof spread, method: 'GET' | 'DELETE', path: string) => {
    const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
    try {
      const session = await request(`${gateway.url}/ui/api/session`, { dispatcher })
      const cookie = String(session.headers['set-cookie']).split(';')[0] ?? ''
      const { csrfToken } = (await session.body.json()) as { csrfToken: string }
      const answer = await request(`${gateway.url}/ui/api/${path}`, { dispatcher, method, headers: { cookie, origin: gateway.url, 'x-csrf-token': csrfToken } })
      return { status: answer.statusCode, body: (await answer.body.json()) as Record<string, unknown> }
    } finally {
      await dispatcher.close()
    }
  }
  const listed = await uiApi(spread, 'GET', 'repositories')
  t.equal(listed.status, 200)
  t.same((listed.body.repositories as Array<{ name: string }>).map((entry) => entry.name), names, 'every repository, whichever upstream owns it')
  const paged = await uiApi(spread, 'GET', 'repositories?n=4')
  t.same((paged.body.repositories as Array<{ name: string }>).map((entry) => entry.name), names.slice(0, 4))
  t.equal(paged.body.next, 'spread/d', 'pages across upstreams')
  const rest = await uiApi(spread, 'GET', 'repositories?n=4&last=spread/d')
  t.same((rest.body.repositories as Array<{ name: string }>).map((entry) => entry.name), names.slice(4))

  const c = await registryFixture(t, { deleteEnabled: true })
  const d = await registryFixture(t, { deleteEnabled: true })
  const mirror = await gatewayFixture(t, { config: { upstreams: [{ url: c.url, name: 'c' }, { url: d.url, name: 'd' }], routing: { strategy: 'mirror', secret } } })
  await skopeoCopy(`oci:${image.dir}:v1`, `docker://${mirror.host}/mirrored/app:v1`, { destCertDir: mirror.certDir })
  t.same([await tagsOf(c.url, 'mirrored/app'), await tagsOf(d.url, 'mirrored/app')], [['v1'], ['v1']], 'both mirrors hold the tag')
  const deleted = await uiApi(mirror, 'DELETE', `manifest?repository=mirrored/app&digest=${image.digest}`)
  t.equal(deleted.status, 200)
  t.same(deleted.body.tags, ['v1'])
  t.equal(await manifestStatus(c.url, 'mirrored/app', image.digest), 404, 'gone from the first mirror')
  t.equal(await manifestStatus(d.url, 'mirrored/app', image.digest), 404, 'and from the second')
})
