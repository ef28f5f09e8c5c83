// "Users & access" in Chromium as an administrator with a real registry:2 and skopeo: a user added and given a new password,
// put in a group, the group granted team/* → skopeo push works; the grant removed → 403 at the next push; the user removed → 401.
// Every change is in the audit trail; a user who is no administrator gets 403 from the page's API and the admin API.
import t from 'tap'
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { ROOT, gatewayFixture } from '../helpers/gateway.js'
import { auditOf } from '../helpers/audit.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'

const PASSWORDS = { admin: 'admin-password', alice: 'alice-password' }
const DAVE = { first: 'dave-first-pass', second: 'dave-second-pass' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('browser: an administrator manages users, groups and grants; pushes follow at once; every change is audited; others get 403', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-access-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'auth', 'htpasswd')
  mkdirSync(join(work, 'auth'))
  await writeFile(htpasswd, `admin:${await hashPassword(PASSWORDS.admin, 5)}\nalice:${await hashPassword(PASSWORDS.alice, 5)}\n`, { mode: 0o600 })
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'admin' }, actions: ['*'], comment: 'administrators' },
          { match: { group: 'readers', name: 'public/*' }, actions: ['pull'] },
        ],
        groups: [{ name: 'readers', members: ['alice'] }],
      },
      ui: { admin_users: ['admin'] },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const call = async (method: 'GET' | 'POST', path: string, authorization?: string) => {
    const response = await request(`${gateway.url}${path}`, {
      dispatcher,
      method,
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json', ...(authorization ? { authorization } : {}) },
    })
    const text = await response.body.text()
    return { status: response.statusCode, text }
  }
  const image = await buildLayout(join(work, 'image'), 'latest', [{ layers: [2048], tar: true }])
  const push = (repository: string, creds: string) =>
    skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}`, { destCertDir: gateway.certDir, destCreds: creds, allowFailure: true })

  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser, { width: 1280, height: 900 })
  await page.goto(`${gateway.url}/ui/#/access`)
  await page.getByLabel('User name').fill('admin')
  await page.getByLabel('Password').fill(PASSWORDS.admin)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Users & access', level: 1 }).waitFor()
  t.match(await page.locator('tr[data-rule="1"]').textContent(), /account admin.*\*.*auth\.acl\[0\]/s, 'the rules of the configuration are listed with where they come from')
  t.match(await page.locator('tr[data-config-group="readers"]').textContent(), /alice.*auth\.groups/s, 'so are its groups')

  // A user, then a new password.
  await page.getByLabel('New user name', { exact: true }).fill('dave')
  await page.getByLabel('Initial password', { exact: true }).fill(DAVE.first)
  await page.getByRole('button', { name: 'Add user' }).click()
  await page.locator('tr[data-user="dave"]').waitFor()
  t.match(readFileSync(htpasswd, 'utf8'), /^dave:\$2y\$10\$/m, 'dave is written to the htpasswd file with bcrypt')
  t.equal(readFileSync(htpasswd, 'utf8').split('\n').filter((line) => line !== '').length, 3, 'beside the users already there')
  await page.getByLabel('User to reset', { exact: true }).selectOption('dave')
  await page.getByLabel('New password', { exact: true }).fill(DAVE.second)
  await page.getByRole('button', { name: 'Set password' }).click()
  await page.getByText('New password set for dave.').waitFor()
  t.equal((await call('GET', '/v2/', basic('dave', DAVE.first))).status, 401, 'the first password no longer works')
  t.equal((await call('GET', '/v2/', basic('dave', DAVE.second))).status, 200, 'the new one does, at once')
  t.not((await push('team/app:v1', `dave:${DAVE.second}`)).code, 0, 'no rule or grant gives dave team/app yet: the push fails')

  // A group with dave, granted pull and push on team/*.
  await page.getByLabel('Group name', { exact: true }).fill('ci')
  await page.getByLabel('Group members', { exact: true }).fill('dave')
  await page.getByRole('button', { name: 'Create group' }).click()
  await page.locator('tr[data-group="ci"]').waitFor()
  await page.getByLabel('Grant to', { exact: true }).selectOption('group')
  await page.getByLabel('User or group name', { exact: true }).fill('ci')
  await page.getByLabel('Repositories', { exact: true }).fill('team/*')
  await page.getByLabel('push', { exact: true }).check()
  await page.getByRole('button', { name: 'Add grant' }).click()
  const grantRow = page.locator('tr[data-grant]')
  await grantRow.waitFor()
  const grantId = (await grantRow.getAttribute('data-grant')) ?? ''
  t.match(await grantRow.textContent(), /group ci.*team\/\*.*pull, push/s, 'the grant is listed')

  // Explain: why dave may push there.
  await page.getByLabel('Explain for user', { exact: true }).fill('dave')
  await page.getByLabel('On repository', { exact: true }).fill('team/app')
  await page.getByRole('button', { name: 'Explain', exact: true }).click()
  await page.locator('li[data-action="push"]').waitFor()
  t.match(await page.locator('li[data-action="push"]').textContent(), new RegExp(`push: yes\\s*via group ci, grant ${grantId} \\(UI\\)`), 'push via group ci, grant N (UI)')
  t.match(await page.locator('li[data-action="delete"]').textContent(), /delete: no.*no rule of auth\.acl matches/s, 'delete: nothing gives it')
  await screenshot(page, 'users-access')
  const shot = join(work, 'users-access.png')
  await page.screenshot({ path: shot, fullPage: true })

  const pushed = await push('team/app:v1', `dave:${DAVE.second}`)
  t.equal(pushed.code, 0, `skopeo push as dave through the group's grant (${pushed.stderr.trim()})`)
  t.equal((await call('GET', '/v2/team/app/manifests/v1', basic('dave', DAVE.second))).status, 200, 'and a pull')
  t.equal((await call('POST', '/v2/other/app/blobs/uploads/', basic('dave', DAVE.second))).status, 403, 'outside team/*: 403')

  // The admin API explains the same.
  const explained = await request(`${gateway.adminUrl as string}/admin/api/access/explain?user=dave&repository=team/app`, { headers: { authorization: basic('admin', PASSWORDS.admin) } })
  const explanation = (await explained.body.json()) as { actions: Array<{ action: string; granted: boolean; via: string[] }> }
  t.equal(explained.statusCode, 200)
  t.same(explanation.actions.map((entry) => [entry.action, entry.granted, entry.via]), [
    ['pull', true, [`group ci, grant ${grantId} (UI)`]],
    ['push', true, [`group ci, grant ${grantId} (UI)`]],
    ['delete', false, []],
  ], 'GET /admin/api/access/explain')

  // The grant removed: the next push is refused.
  await page.getByRole('button', { name: `Remove grant ${grantId}` }).click()
  await page.getByRole('button', { name: `Confirm remove grant ${grantId}` }).click()
  await page.getByText(`Grant ${grantId} removed.`).waitFor()
  t.equal((await call('POST', '/v2/team/app/blobs/uploads/', basic('dave', DAVE.second))).status, 403, 'grant removed: POST upload 403 at once')
  t.not((await push('team/app:v2', `dave:${DAVE.second}`)).code, 0, 'and skopeo push fails')

  // The user removed: 401.
  await page.getByRole('button', { name: 'Remove user dave' }).click()
  await page.getByRole('button', { name: 'Confirm remove user dave' }).click()
  await page.getByText('User dave removed').waitFor()
  t.equal((await call('GET', '/v2/', basic('dave', DAVE.second))).status, 401, 'a removed user gets 401')
  t.notMatch(readFileSync(htpasswd, 'utf8'), /^dave:/m, 'and is gone from the file')
  t.equal(await page.locator('tr[data-group="ci"] input').inputValue(), '', 'and from the group')
  t.equal(await page.getByRole('button', { name: 'Remove user admin' }).count(), 1, 'the admin row has its button')
  await page.getByRole('button', { name: 'Remove user admin' }).click()
  await page.getByRole('button', { name: 'Confirm remove user admin' }).click()
  await page.getByText(/cannot remove your own account/).waitFor()
  t.match(readFileSync(htpasswd, 'utf8'), /^admin:/m, 'an administrator cannot remove the account they are signed in with')
  t.same(problems.errors, [], 'no page errors')

  // Every change is an audit event.
  for (const [action, subject] of [['user.create', /^dave$/], ['user.password', /^dave$/], ['group.create', /group ci: dave/], ['grant.create', /group ci team\/\* pull,push/], ['grant.delete', /group ci team\/\*/], ['user.delete', /^dave$/]] as const) {
    const entries = await auditOf(gateway, action)
    t.equal(entries.length, 1, `one ${action} entry`)
    t.equal(entries[0]?.user, 'admin', `${action}: by admin`)
    t.match(String(entries[0]?.subject), subject, `${action}: names what changed`)
  }

  // Someone who is no administrator: 403 from the page, its API and the admin API.
  const other = await openPage(browser)
  await other.page.goto(`${gateway.url}/ui/#/access`)
  await other.page.getByLabel('User name').fill('alice')
  await other.page.getByLabel('Password').fill(PASSWORDS.alice)
  await other.page.getByRole('button', { name: 'Sign in' }).click()
  await other.page.getByText('Users and access are for administrators.').waitFor()
  t.equal(await other.page.getByRole('link', { name: 'Users & access' }).count(), 0, 'no link in the menu')
  const statuses = await other.page.evaluate(async () => {
    const session = (await (await fetch('/ui/api/session')).json()) as { csrfToken: string }
    const headers = { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrfToken }
    return [
      (await fetch('/ui/api/access')).status,
      (await fetch('/ui/api/explain?user=alice&repository=team/app')).status,
      (await fetch('/ui/api/users', { method: 'POST', headers, body: JSON.stringify({ user: 'mallory', password: 'mallory-password' }) })).status,
      (await fetch('/ui/api/grants', { method: 'POST', headers, body: JSON.stringify({ kind: 'user', subject: 'alice', repository: '**', actions: ['push'] }) })).status,
      (await fetch('/ui/api/groups?name=ci', { method: 'DELETE', headers })).status,
    ]
  })
  t.same(statuses, [403, 403, 403, 403, 403], 'the page\'s API refuses a user who is no administrator')
  t.notMatch(readFileSync(htpasswd, 'utf8'), /^mallory:/m, 'nothing was added')
  const denied = await request(`${gateway.adminUrl as string}/admin/api/access/explain?user=alice&repository=team/app`, { headers: { authorization: basic('alice', PASSWORDS.alice) } })
  await denied.body.dump()
  t.equal(denied.statusCode, 403, 'the admin API refuses her too')
  const unsigned = await request(`${gateway.url}/ui/api/access`, { dispatcher })
  await unsigned.body.dump()
  t.equal(unsigned.statusCode, 401, 'and without a session: 401')

  if (process.env.PORTIER_DOCS_SCREENSHOTS === '1') {
    const docs = join(ROOT, 'docs', 'screenshots')
    mkdirSync(docs, { recursive: true })
    copyFileSync(shot, join(docs, 'users-access.png'))
  }
})
