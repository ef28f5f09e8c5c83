// The store end to end: a writer SIGKILLed mid-write leaves a sound file with every committed row; push/pull times and the audit trail survive a real gateway's restart; the start-up scan finds tags pushed around Portier.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { DatabaseSync } from 'node:sqlite'
import { registryFixture, startRegistry } from '../helpers/registry.js'
import { CLI, ROOT, startGateway, type GatewayHandle } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { Agent, request } from 'undici'
import { readFileSync } from 'node:fs'
import { hashPassword } from '../../src/auth/hashes.js'
import { browserFixture, openPage } from '../helpers/browser.js'

async function tempDir(t: Test, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Waits (bounded in count and time) until `done` holds. */
async function until(done: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

// The child: the built Store, writing rows of 300 bytes in batches as fast as it can, and printing the
// number of rows committed after each batch that committed (flush() returns only after COMMIT).
const WRITER = `
import { Store } from ${JSON.stringify(join(ROOT, 'dist', 'store', 'store.js'))}
const store = Store.open(process.argv[1], { flushIntervalMs: 1_000_000, maxPending: 1_000_000 })
store.migrate('crash', ['CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)'])
let committed = store.db.prepare('SELECT count(*) AS n FROM rows').get().n
const payload = 'x'.repeat(300)
const batch = () => {
  for (let i = 0; i < 500; i++) store.enqueue((s) => s.statement('INSERT INTO rows (payload) VALUES (?)').run(payload))
  committed += store.flush()
  process.stdout.write(committed + '\\n')
  setImmediate(batch)
}
batch()
`

t.test('a writer SIGKILLed mid-write: integrity_check ok and every committed row there', async (t) => {
  const dir = await tempDir(t, 'portier-store-crash-')
  const path = join(dir, 'portier.db')
  // Three rounds on the same file, each killed after a different number of batches (bounded: at most 20 s each).
  for (const batches of [5, 40, 120]) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', WRITER, path], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const exited = new Promise<NodeJS.Signals | null>((done) => child.once('exit', (_code, signal) => done(signal)))
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    })
    let lastReported = 0
    let seen = 0
    const killed = new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`the writer reported ${seen} batches in 20 s; stderr: ${stderr}`)), 20_000)
      createInterface({ input: child.stdout }).on('line', (line) => {
        lastReported = Number(line)
        if (++seen === batches) {
          clearTimeout(timer)
          // Mid-write: the writer is already building the next batch, or committing it.
          child.kill('SIGKILL')
          done()
        }
      })
    })
    await killed
    t.equal(await exited, 'SIGKILL', `round of ${batches} batches: killed`)

    const db = new DatabaseSync(path)
    try {
      t.same({ ...db.prepare('PRAGMA integrity_check').get() }, { integrity_check: 'ok' }, 'the file is sound')
      const { n, top, bytes } = db.prepare('SELECT count(*) AS n, max(id) AS top, sum(length(payload)) AS bytes FROM rows').get() as { n: number; top: number; bytes: number }
      t.ok(n >= lastReported, `every committed row is there (${n} rows, ${lastReported} reported committed)`)
      t.ok(n <= lastReported + 500, 'at most the batch in flight more')
      t.equal(top, n, 'ids are contiguous: no batch half-written')
      t.equal(bytes, n * 300, 'every row whole')
    } finally {
      db.close()
    }
  }
})

interface TimesLine { repository: string; tag: string; digest?: string; firstSeenAt: string; pushedAt?: string; pulledAt?: string; tagPulledAt?: string; pulls: number }
interface AuditLine { action: string; outcome: string; repository?: string; tag?: string; digest?: string; size?: number; user?: string; client: string; userAgent?: string }

async function cli(gateway: GatewayHandle, args: string[]): Promise<string> {
  const result = await run(process.execPath, [CLI, ...args, '--config', join(gateway.cwd, 'portier.yaml')], { cwd: gateway.cwd, timeoutMs: 30_000 })
  if (result.code !== 0) throw new Error(`portier ${args.join(' ')}: exit ${result.code}: ${result.stderr}`)
  return result.stdout
}

const jsonLines = <T>(text: string): T[] => text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as T)

t.test('a registry not up when the gateway starts: the scan runs again after store.scan_retry and records its tags', async (t) => {
  const work = await tempDir(t, 'portier-store-retry-')
  const storageDir = join(work, 'storage')
  const secret = 'scan-retry-registry-secret'
  const image = await makeOciLayout(join(work, 'image'), { layers: [30_000] })
  // The registry holds a tag pushed before Portier, then is down when the gateway starts (a compose project starting).
  const first = await startRegistry({ storageDir, secret })
  t.teardown(() => first.stop())
  const port = first.port
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://127.0.0.1:${port}/old/app:before`, { destTlsVerify: false })
  await first.stop()
  const cwd = join(work, 'gateway')
  await mkdir(cwd)
  const gateway = await startGateway({ cwd, config: { upstreams: [{ url: `http://127.0.0.1:${port}` }], store: { scan_retry: '1s' } } })
  t.teardown(() => gateway.stop())
  const retrying = await gateway.waitForLog((line) => line.msg === 'store scan: not every repository was read; scanning again later', 20_000)
  t.equal(retrying.attempt, 1, 'the first attempt could not read the catalog')
  t.equal(retrying.retry_in_ms, 1000, 'and the next comes after store.scan_retry')
  const registry = await registryFixture(t, { storageDir, secret, port })
  t.ok(registry.port === port, 'the registry is up where the gateway expects it')
  const done = await gateway.waitForLog((line) => line.msg === 'store scan: done' && line.failed === 0, 30_000)
  t.equal(done.new_tags, 1, 'a later attempt read everything: one tag new to the store')
  let times: TimesLine[] = []
  await until(async () => {
    times = jsonLines<TimesLine>(await cli(gateway, ['times', '--json', '--repo', 'old/app']))
    return times.length > 0
  }, 'the scanned tag in the store')
  t.match(times, [{ repository: 'old/app', tag: 'before', digest: image.manifestDigest }], 'the tag pushed before Portier has its first-seen time')
  t.ok(times[0]?.firstSeenAt, 'first seen at the retried scan')
  const attempts = gateway.logs.filter((line) => line.msg === 'store scan: reading every repository\'s tags for first-seen times (serving goes on)').length
  t.ok(attempts >= 2 && attempts <= 4, `a few attempts, bounded (${attempts})`)
})

t.test('push/pull times and the audit trail survive a gateway restart; the scan finds a tag pushed around Portier', async (t) => {
  const registry = await registryFixture(t)
  const work = await tempDir(t, 'portier-store-e2e-')
  const cwd = join(work, 'gateway')
  await mkdir(cwd)
  const config = { upstreams: [{ url: registry.url }] }
  let gateway = await startGateway({ cwd, config })
  t.teardown(() => gateway.stop())
  const image = await makeOciLayout(join(work, 'image'), { layers: [120_000, 40_000] })

  const started = Date.now()
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/team/app:v1`, { destCertDir: gateway.certDir })
  await skopeoCopy(`docker://${gateway.host}/team/app:v1`, `oci:${join(work, 'pulled')}:v1`, { srcCertDir: gateway.certDir })

  // Read beside the running gateway (read-only, WAL) once the batch is committed.
  let before: TimesLine | undefined
  await until(async () => {
    before = jsonLines<TimesLine>(await cli(gateway, ['times', '--json'])).find((line) => line.repository === 'team/app' && line.tag === 'v1')
    return before?.pulledAt !== undefined
  }, 'the pull time in the store')
  t.equal(before?.digest, image.manifestDigest)
  t.ok(Date.parse(before?.pushedAt ?? '') >= started - 1000 && before?.pushedAt !== undefined, 'pushed at about now')
  t.ok(Date.parse(before?.pulledAt ?? '') >= Date.parse(before?.pushedAt ?? ''), 'pulled after pushed')
  t.equal(before?.pulls, 1, 'one pull by tag')

  // A tag pushed to the registry directly, around Portier: nothing recorded for it yet.
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://127.0.0.1:${registry.port}/team/app:around`, { destTlsVerify: false })
  await gateway.stop()
  gateway = await startGateway({ cwd, config })
  await gateway.waitForLog((line) => line.msg === 'store scan: done', 30_000)
  t.notMatch(gateway.stderr(), /ExperimentalWarning|SQLite is an experimental/, 'node:sqlite prints no warning on the project\'s Node')
  const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  t.match(metrics, /^portier_store_writes_total \d+/m, 'store metrics are exported')
  t.match(metrics, /^portier_store_queued_writes \d+/m)
  t.match(metrics, /^portier_store_writes_dropped_total 0$/m, 'no write lost')

  // "done" means scanned: its writes reach the file with the writer's next batch (store.flush_interval).
  let after: TimesLine[] = []
  await until(async () => {
    after = jsonLines<TimesLine>(await cli(gateway, ['times', '--json', '--repo', 'team/app']))
    return after.some((line) => line.tag === 'around')
  }, 'the scanned tag in the store')
  t.same(after.find((line) => line.tag === 'v1'), before, 'the times of team/app:v1 are unchanged after the restart')
  const around = after.find((line) => line.tag === 'around')
  t.ok(around, 'the scan recorded the tag pushed around Portier')
  t.equal(around?.digest, image.manifestDigest)
  t.equal(around?.pushedAt, undefined, 'never pushed through Portier')
  t.ok(Date.parse(around?.firstSeenAt ?? '') > Date.parse(before?.pulledAt ?? ''), 'first seen at the scan')

  const audit = jsonLines<AuditLine>(await cli(gateway, ['audit', '--json', '--repo', 'team/*']))
  const manifestPush = audit.filter((entry) => entry.action === 'manifest.push')
  t.equal(manifestPush.length, 1, 'one manifest push audited (the one around Portier is not Portier\'s to see)')
  t.match(manifestPush[0], { outcome: 'success', repository: 'team/app', tag: 'v1', digest: image.manifestDigest, client: '127.0.0.1' })
  t.match(manifestPush[0]?.userAgent ?? '', /skopeo|containers/i, 'the client\'s user agent')
  const blobPushes = audit.filter((entry) => entry.action === 'blob.push' && entry.outcome === 'success')
  const expected = new Map(image.layerDigests.map((digest, index) => [digest, image.layerSizes[index]]))
  for (const [digest, size] of expected) t.ok(blobPushes.some((entry) => entry.digest === digest && entry.size === size), `blob ${digest.slice(0, 19)} audited with its size ${size}`)
  t.equal(audit.filter((entry) => entry.action.startsWith('manifest.') || entry.action.startsWith('blob.')).every((entry) => entry.repository === 'team/app'), true)

  // The same through the admin API (auth.mode none: the admin listener's callers are administrators).
  const viaApi = await fetch(`${gateway.adminUrl}/admin/api/audit?repo=team/app&action=manifest.push`)
  t.equal(viaApi.status, 200)
  const body = (await viaApi.json()) as { enabled: boolean; entries: AuditLine[] }
  t.same(body.entries.map((entry) => [entry.action, entry.tag, entry.digest]), [['manifest.push', 'v1', image.manifestDigest]])
  const bad = await fetch(`${gateway.adminUrl}/admin/api/audit?since=yesterday`)
  t.equal(bad.status, 400, 'a since that is neither a duration nor a time is a 400')
  const timesApi = (await (await fetch(`${gateway.adminUrl}/admin/api/times?repo=team/app`)).json()) as { tags: TimesLine[]; daily_pulls: Array<{ day: string; pulls: number }> }
  t.same(timesApi.tags.find((tag) => tag.tag === 'v1'), Object.fromEntries(Object.entries(before ?? {}).filter(([key]) => key !== 'repository')), 'times through the admin API')
  t.same(timesApi.daily_pulls, [{ day: new Date(Date.parse(before?.pulledAt ?? '')).toISOString().slice(0, 10), pulls: 1 }])
})

t.test('check-config names store.path when the file is no database; serve refuses a store from a newer Portier', async (t) => {
  const dir = await tempDir(t, 'portier-store-check-')
  const configFile = join(dir, 'portier.yaml')
  await writeFile(join(dir, 'not.db'), 'plain text, not SQLite '.repeat(50))
  await writeFile(configFile, `auth: { mode: none }\nstore: { path: ${JSON.stringify(join(dir, 'not.db'))} }\nupstreams: [{ url: "http://127.0.0.1:9" }]\n`)
  const checked = await run(process.execPath, [CLI, 'check-config', '--config', configFile], { cwd: dir, timeoutMs: 30_000 })
  t.equal(checked.code, 2, 'exit 2: the configuration has a problem')
  t.match(checked.stderr, /store\.path/)
  t.match(checked.stderr, /not\.db/)

  const newer = join(dir, 'newer.db')
  const db = new DatabaseSync(newer)
  db.exec("CREATE TABLE schema_migrations (module TEXT NOT NULL, version INTEGER NOT NULL, applied_at TEXT NOT NULL, PRIMARY KEY (module, version)); INSERT INTO schema_migrations VALUES ('times', 99, '2030-01-01')")
  db.close()
  await writeFile(configFile, `auth: { mode: none }\nstore: { path: ${JSON.stringify(newer)}, scan: false }\nserver: { listen: "127.0.0.1:0" }\nadmin: { listen: "" }\nupstreams: [{ url: "http://127.0.0.1:9" }]\n`)
  const served = await run(process.execPath, [CLI, 'serve', '--config', configFile], { cwd: dir, timeoutMs: 30_000 })
  t.not(served.code, 0, 'serve does not start')
  t.equal(served.timedOut, false)
  t.match(served.stdout + served.stderr, /times schema version 99, written by a newer Portier/)
  const ok = await run(process.execPath, [CLI, 'check-config', '--config', configFile], { cwd: dir, timeoutMs: 30_000 })
  t.equal(ok.code, 0, 'the file itself is sound: check-config passes (the version is checked when the module opens it)')
})

t.test('the web UI\'s sign-ins and deletes are in the audit trail; a UI delete takes the tag\'s times', async (t) => {
  const registry = await registryFixture(t)
  const work = await tempDir(t, 'portier-store-ui-')
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-secret-pw', 5)}\n`)
  const gateway = await startGateway({ config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } }, store: { scan: false } } })
  t.teardown(() => gateway.stop())
  const image = await makeOciLayout(join(work, 'image'), { layers: [10_000] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/team/ui:v1`, { destCertDir: gateway.certDir, destCreds: 'alice:alice-secret-pw' })

  // skopeo login is an authenticated GET /v2/, as docker sends before every push and pull: three accepted ones from
  // this client make one row (audit.login_interval, 5m by default); refused ones make a row each.
  const authfile = join(work, 'auth.json')
  const skopeoLogin = (password: string) => run('skopeo', ['login', '--authfile', authfile, '--cert-dir', gateway.certDir, '-u', 'alice', '--password-stdin', gateway.host], { input: `${password}\n` })
  for (const password of ['alice-secret-pw', 'alice-secret-pw', 'wrong-password', 'alice-secret-pw', 'wrong-password']) {
    const login = await skopeoLogin(password)
    t.equal(login.code === 0, password === 'alice-secret-pw', `skopeo login with ${password === 'alice-secret-pw' ? 'the right' : 'a wrong'} password: exit ${String(login.code)}`)
  }
  let logins: AuditLine[] = []
  await until(async () => {
    logins = jsonLines<AuditLine>(await cli(gateway, ['audit', '--json', '--action', 'login'])).filter((entry) => entry.userAgent?.startsWith('skopeo/') === true)
    return logins.length >= 3
  }, 'the skopeo logins in the audit trail')
  t.same(logins.map((entry) => [entry.outcome, entry.user]).sort(), [['invalid_credentials', 'alice'], ['invalid_credentials', 'alice'], ['success', 'alice']], 'one row for three accepted logins, one for each refused one')

  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const login = async (password: string) => {
    const answer = await request(`${gateway.url}/ui/api/login`, {
      dispatcher, method: 'POST', headers: { origin: gateway.url, 'content-type': 'application/json', 'user-agent': 'store-e2e-browser' },
      body: JSON.stringify({ username: 'alice', password }),
    })
    const body = (await answer.body.json()) as { csrfToken?: string }
    return { status: answer.statusCode, cookie: String(answer.headers['set-cookie']).split(';')[0] ?? '', csrfToken: body.csrfToken ?? '' }
  }
  t.equal((await login('wrong-password')).status, 401)
  const session = await login('alice-secret-pw')
  t.equal(session.status, 200)
  const deleted = await request(`${gateway.url}/ui/api/manifest?repository=team/ui&digest=${image.manifestDigest}`, {
    dispatcher, method: 'DELETE', headers: { cookie: session.cookie, origin: gateway.url, 'x-csrf-token': session.csrfToken, 'user-agent': 'store-e2e-browser' },
  })
  t.equal(deleted.statusCode, 200, await deleted.body.text())

  let entries: AuditLine[] = []
  await until(async () => {
    entries = jsonLines<AuditLine>(await cli(gateway, ['audit', '--json', '--user', 'alice']))
    return entries.some((entry) => entry.action === 'manifest.delete')
  }, 'the UI delete in the audit trail')
  const ui = entries.filter((entry) => entry.userAgent === 'store-e2e-browser').map((entry) => [entry.action, entry.outcome, entry.repository ?? '', entry.digest ?? ''])
  t.same(ui, [
    ['manifest.delete', 'success', 'team/ui', image.manifestDigest],
    ['login.ui', 'success', '', ''],
    ['login.ui', 'invalid_credentials', '', ''],
  ], 'newest first: the failed sign-in, the sign-in, the delete, each by alice from the browser')
  t.notMatch(JSON.stringify(entries), /alice-secret-pw|wrong-password/, 'no password stored')
  const left = jsonLines<TimesLine>(await cli(gateway, ['times', '--json', '--repo', 'team/ui']))
  t.same(left, [], 'the deleted tag has no times left')

  // The UI's audit page reads the same entries (administrators: with no ACL rules, every signed-in user).
  const auditApi = async (search: string) => {
    const answer = await request(`${gateway.url}/ui/api/audit${search}`, { dispatcher, headers: { cookie: session.cookie } })
    return { status: answer.statusCode, body: (await answer.body.json()) as { entries?: Array<{ action: string; digest?: string; at: string }> } }
  }
  const shown = await auditApi('?user=alice&action=manifest.delete')
  t.equal(shown.status, 200)
  t.same(shown.body.entries?.map((entry) => [entry.action, entry.digest]), [['manifest.delete', image.manifestDigest]])
  t.match(shown.body.entries?.[0]?.at ?? '', /^\d{4}-\d\d-\d\dT/, 'times as ISO 8601')
  t.equal((await auditApi('?since=yesterday')).status, 400, 'a since that is neither a duration nor a time is a 400')
  t.equal((await request(`${gateway.url}/ui/api/audit`, { dispatcher })).statusCode, 401, 'signed out: 401')

  // In Chromium: the Audit page lists the entries, filters them, and exports what it shows as JSON lines.
  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser)
  await page.goto(`${gateway.url}/ui/`)
  await page.getByLabel('User name').fill('alice')
  await page.getByLabel('Password').fill('alice-secret-pw')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Repositories', level: 1 }).waitFor()
  await page.getByRole('link', { name: 'Audit' }).click()
  await page.getByRole('heading', { name: 'Audit trail', level: 1 }).waitFor()
  await page.locator('table.audit tbody tr').first().waitFor()
  const actions = await page.locator('table.audit tbody tr td[data-label="Action"]').allTextContents()
  t.ok(actions.includes('manifest.delete') && actions.includes('login.ui') && actions.includes('manifest.push'), `the page lists the trail (${actions.join(', ')})`)
  await page.getByLabel('Action').selectOption('manifest.delete')
  await page.getByRole('button', { name: 'Show' }).click()
  await page.waitForURL(/#\/audit\?action=manifest.delete/)
  await page.locator('table.audit tbody tr').first().waitFor()
  await page.waitForFunction(() => document.querySelectorAll('table.audit tbody tr').length === 1)
  t.same(await page.locator('table.audit tbody tr td[data-label="Action"]').allTextContents(), ['manifest.delete'], 'filtered by action')
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON lines' }).click()])
  const exported = readFileSync(await download.path(), 'utf8').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as { action: string; digest?: string })
  t.same(exported.map((entry) => [entry.action, entry.digest]), [['manifest.delete', image.manifestDigest]], 'the export is the entries shown, as JSON lines')
  t.same(problems.errors, [], 'no page errors or CSP violations')
})
