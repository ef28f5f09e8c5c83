// Maintenance mode against a real registry: pushes refused cleanly while on and accepted after, uploads begun before finishing intact, reads going on; switched by the admin API, the CLI and the web UI's API.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { CLI, gatewayFixture, withoutPortierVariables, type GatewayHandle } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { run } from '../helpers/exec.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'
import { sleep } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MiB = 1024 * 1024
const PASSWORDS = { root: 'root-password-1', alice: 'alice-password-1' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json(): Record<string, unknown>
}

/** One HTTP exchange with the gateway (main or admin listener) or the registry; the whole body read. */
async function send(dispatcher: Agent | undefined, url: string, method: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Answer> {
  const answer = await request(url, { method: method as 'GET', headers, ...(dispatcher ? { dispatcher } : {}), ...(body === undefined ? {} : { body }) })
  const text = await answer.body.text()
  return { status: answer.statusCode, headers: answer.headers, text, json: () => JSON.parse(text) as Record<string, unknown> }
}

/** The registry's JSON error format: exactly one error, as docker, podman and skopeo parse it. */
function firstError(answer: Answer): { code: string; message: string; detail?: Record<string, unknown> } {
  const body = answer.json() as { errors?: Array<{ code: string; message: string; detail?: Record<string, unknown> }> }
  return body.errors?.[0] ?? { code: '', message: '' }
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.split(' ')[1])
}

interface Setup {
  registry: RegistryHandle
  gateway: GatewayHandle
  work: string
  dispatcher: Agent
  admin: (method: string, body?: unknown, who?: [string, string]) => Promise<Answer>
}

/** A real registry behind Portier with htpasswd users: root (an administrator) and alice (may push, no administrator). */
async function setup(t: Test, extra: Record<string, unknown> = {}): Promise<Setup> {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-maint-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, (await Promise.all(Object.entries(PASSWORDS).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))).join(''))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'root' }, actions: ['*'] }, { match: { account: 'alice' }, actions: ['*'] }] },
      ui: { admin_users: ['root'] },
      ...extra,
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const admin = (method: string, body?: unknown, who?: [string, string]): Promise<Answer> => {
    const headers: Record<string, string> = {}
    if (who) headers.authorization = basic(...who)
    if (body !== undefined) headers['content-type'] = 'application/json'
    return send(undefined, `${gateway.adminUrl}/admin/api/maintenance`, method, headers, body === undefined ? undefined : JSON.stringify(body))
  }
  return { registry, gateway, work, dispatcher, admin }
}

const root: [string, string] = ['root', PASSWORDS.root]
const alice: [string, string] = ['alice', PASSWORDS.alice]

t.test('admin API: an administrator switches it; a push is refused cleanly while on, pulls go on, and the push succeeds after', async (t) => {
  const { registry, gateway, work, dispatcher, admin } = await setup(t)
  const image = await makeOciLayout(join(work, 'src'), { layers: [2 * MiB, 64 * 1024] })
  const creds = { destCertDir: gateway.certDir, destCreds: `alice:${PASSWORDS.alice}` }
  // Pushed before, to another repository: e2e/app has no push in flight whose manifest could still come in.
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/e2e/base:v1`, creds)

  const before = await admin('GET')
  t.equal(before.status, 200, 'reading the state needs no credentials')
  t.same(before.json(), { on: false, message: 'the registry is in maintenance: pushes and deletes are paused, pulls work', inFlight: { uploads: 0, writes: 0 } })

  const anonymous = await admin('PUT', { on: true })
  t.equal(anonymous.status, 401, 'switching needs credentials')
  t.match(String(anonymous.headers['www-authenticate']), /^Basic realm="Portier admin"/)
  t.equal(anonymous.json().code, 'ADMIN_UNAUTHORIZED')
  const wrongPassword = await admin('PUT', { on: true }, ['root', 'not-the-password'])
  t.equal(wrongPassword.status, 401)
  const notAdmin = await admin('PUT', { on: true }, alice)
  t.equal(notAdmin.status, 403, 'a user outside ui.admin_users may not switch it')
  t.equal(notAdmin.json().code, 'ADMIN_DENIED')
  const badBody = await admin('PUT', { on: 'yes' }, root)
  t.equal(badBody.status, 400)
  t.equal(badBody.json().code, 'ADMIN_BAD_REQUEST')
  const badDuration = await admin('PUT', { on: true, retry_after: 'soon' }, root)
  t.equal(badDuration.status, 400)
  t.equal((await admin('GET')).json().on, false, 'refused switches changed nothing')
  const wrongMethod = await send(undefined, `${gateway.adminUrl}/admin/api/maintenance`, 'DELETE', { authorization: basic(...root) })
  t.equal(wrongMethod.status, 405)
  t.match(String(wrongMethod.headers.allow), /GET/)

  const on = await admin('PUT', { on: true, message: 'moving the disks', retry_after: '10m' }, root)
  t.equal(on.status, 200)
  const state = on.json()
  t.equal(state.on, true)
  t.equal(state.by, 'root')
  t.equal(state.message, 'moving the disks')
  t.ok(typeof state.until === 'string' && typeof state.since === 'string')

  // skopeo (containers/image, as podman) prints the registry's message for a 4xx.
  const refused = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/e2e/app:v2`, { ...creds, allowFailure: true })
  t.not(refused.code, 0, 'the push fails')
  t.match(refused.stderr, /registry is in read-only mode \(maintenance\): moving the disks/, `skopeo says why: ${refused.stderr.trim()}`)

  const headers = { authorization: basic(...alice) }
  const post = await send(dispatcher, `${gateway.url}/v2/e2e/app/blobs/uploads/`, 'POST', headers)
  t.equal(post.status, 405, 'upload start: 405 as distribution in read-only mode')
  t.equal(post.headers['docker-distribution-api-version'], 'registry/2.0')
  t.match(String(post.headers['content-type']), /^application\/json/)
  const error = firstError(post)
  t.equal(error.code, 'UNSUPPORTED')
  t.match(error.message, /read-only mode/)
  t.equal(error.detail?.reason, 'moving the disks')
  const retryAfter = Number(post.headers['retry-after'])
  t.ok(retryAfter > 500 && retryAfter <= 600, `Retry-After ${String(post.headers['retry-after'])} is the time left of the 10 minutes`)
  const manifestPut = await send(dispatcher, `${gateway.url}/v2/e2e/app/manifests/v3`, 'PUT', { ...headers, 'content-type': OCI_MANIFEST }, readFileSync(join(image.dir, 'blobs', 'sha256', image.manifestDigest.slice(7))))
  t.equal(manifestPut.status, 405, 'manifest PUT refused')
  t.equal(firstError(manifestPut).code, 'UNSUPPORTED')
  const manifestDelete = await send(dispatcher, `${gateway.url}/v2/e2e/app/manifests/${image.manifestDigest}`, 'DELETE', headers)
  t.equal(manifestDelete.status, 405, 'manifest DELETE refused')
  const mount = await send(dispatcher, `${gateway.url}/v2/e2e/other/blobs/uploads/?mount=${image.layerDigests[0] ?? ''}&from=e2e/base`, 'POST', headers)
  t.equal(mount.status, 405, 'a cross-repository mount is a write too')
  t.equal((await send(undefined, `${registry.url}/v2/e2e/app/manifests/v2`, 'HEAD', { accept: OCI_MANIFEST })).status, 404, 'nothing of the refused push reached the registry')
  t.equal((await send(undefined, `${registry.url}/v2/e2e/app/manifests/v3`, 'HEAD', { accept: OCI_MANIFEST })).status, 404)

  const pulled = await skopeoCopy(`docker://${gateway.host}/e2e/base:v1`, `oci:${join(work, 'pulled')}:v1`, { srcCertDir: gateway.certDir, srcCreds: `alice:${PASSWORDS.alice}` })
  t.equal(pulled.code, 0, 'pulls go on during maintenance')
  const back = await readOciLayout(join(work, 'pulled'), 'v1')
  t.equal(back.manifestDigest, image.manifestDigest)
  t.same(back.layerDigests, image.layerDigests)
  const tags = await send(dispatcher, `${gateway.url}/v2/e2e/base/tags/list`, 'GET', headers)
  t.equal(tags.status, 200)
  t.same(tags.json().tags, ['v1'])

  const ready = await send(undefined, `${gateway.adminUrl}/readyz`, 'GET')
  t.equal(ready.status, 200, 'still ready: reads go on, a load balancer must keep sending them')
  const checks = ready.json().checks as Array<{ name: string; ready: boolean; detail: { on: boolean; message: string } }>
  const maintenanceCheck = checks.find((check) => check.name === 'maintenance')
  t.equal(maintenanceCheck?.ready, true)
  t.equal(maintenanceCheck?.detail.on, true, '/readyz detail says maintenance is on')
  t.equal(maintenanceCheck?.detail.message, 'moving the disks')
  const metricsOn = (await send(undefined, `${gateway.adminUrl}/metrics`, 'GET')).text
  t.equal(metric(metricsOn, 'portier_maintenance'), 1)
  t.equal(metric(metricsOn, 'portier_writes_in_flight{kind="upload"}'), 0)

  await gateway.logsSettled()
  const refusalLines = gateway.logs.filter((line) => line.error === 'READ_ONLY' && line.status === 405 && line.op === 'upload.start')
  t.ok(refusalLines.length >= 1, 'each refusal has its access-log line')
  t.ok(gateway.logs.some((line) => line.msg.startsWith('maintenance on') && line.by === 'root'), 'who switched it on is logged')

  const off = await admin('PUT', { on: false }, root)
  t.equal(off.status, 200)
  t.equal(off.json().on, false)
  const pushed = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/e2e/app:v2`, creds)
  t.equal(pushed.code, 0, 'the same push succeeds once maintenance is off')
  const stored = await send(undefined, `${registry.url}/v2/e2e/app/manifests/v2`, 'HEAD', { accept: image.manifestMediaType })
  t.equal(stored.headers['docker-content-digest'], image.manifestDigest, 'the registry holds it')
  t.equal(metric((await send(undefined, `${gateway.adminUrl}/metrics`, 'GET')).text, 'portier_maintenance'), 0)
})

t.test('a push begun before maintenance finishes (uploads and manifest) and pulls intact; other sessions are refused, old ones after the drain timeout', async (t) => {
  const { registry, gateway, work, dispatcher, admin } = await setup(t, { maintenance: { drain_timeout: '6s' } })
  const headers = { authorization: basic(...alice) }
  const blob = Buffer.alloc(3 * MiB)
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 31 + (i >> 11)) & 0xff
  const digest = sha256(blob)
  const half = blob.length / 2

  const start = async (): Promise<string> => {
    const started = await send(dispatcher, `${gateway.url}/v2/e2e/drain/blobs/uploads/`, 'POST', headers)
    t.equal(started.status, 202)
    return String(started.headers.location)
  }
  const patch = (location: string, bytes: Buffer, from: number): Promise<Answer> =>
    send(dispatcher, new URL(location, gateway.url).href, 'PATCH', { ...headers, 'content-type': 'application/octet-stream', 'content-range': `${from}-${from + bytes.length - 1}` }, bytes)

  // The push's config blob, in one request, before maintenance.
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } }))
  const configDigest = sha256(config)
  const configPut = await send(dispatcher, `${gateway.url}/v2/e2e/drain/blobs/uploads/?digest=${configDigest}`, 'POST', { ...headers, 'content-type': 'application/octet-stream' }, config)
  t.equal(configPut.status, 201)
  const first = await patch(await start(), blob.subarray(0, half), 0)
  t.equal(first.status, 202, 'first half of the upload sent before maintenance')
  let location = String(first.headers.location)
  const lingering = await start()
  t.same((await admin('GET')).json().inFlight, { uploads: 2, writes: 0 }, 'two upload sessions in flight')

  t.equal((await admin('PUT', { on: true }, root)).status, 200)
  const newUpload = await send(dispatcher, `${gateway.url}/v2/e2e/other/blobs/uploads/`, 'POST', headers)
  t.equal(newUpload.status, 405, 'a new upload is refused where no push is in flight')
  // Clients push an image's config blob after its layers, and layers a few at a time: the push in flight may begin more.
  const nextUpload = await send(dispatcher, `${gateway.url}/v2/e2e/drain/blobs/uploads/`, 'POST', headers)
  t.equal(nextUpload.status, 202, 'a new upload of the push in flight is admitted during the drain')
  const cancelled = await send(dispatcher, new URL(String(nextUpload.headers.location), gateway.url).href, 'DELETE', headers)
  t.equal(cancelled.status, 204, 'and cancelled again (it no longer counts as in flight)')
  t.equal(newUpload.headers['retry-after'], undefined, 'no expected end, no Retry-After')
  const stranger = await send(dispatcher, `${gateway.url}/v2/e2e/drain/blobs/uploads/0d6bb7f5-0000-4000-8000-000000000000?_state=x`, 'PATCH', { ...headers, 'content-type': 'application/octet-stream' }, Buffer.from('x'))
  t.equal(stranger.status, 405, 'a chunk for a session this gateway did not see begin is refused')
  t.equal(firstError(stranger).code, 'UNSUPPORTED')

  const second = await patch(location, blob.subarray(half), half)
  t.equal(second.status, 202, 'the upload begun before goes on')
  location = String(second.headers.location)
  const done = new URL(location, gateway.url)
  done.searchParams.set('digest', digest)
  const finished = await send(dispatcher, done.href, 'PUT', { ...headers, 'content-length': '0' })
  t.equal(finished.status, 201, 'and finishes')
  t.equal(finished.headers['docker-content-digest'], digest)
  t.same((await admin('GET')).json().inFlight, { uploads: 1, writes: 0 }, 'the finished session no longer counts')
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: blob.length }],
  }))
  const manifestPut = await send(dispatcher, `${gateway.url}/v2/e2e/drain/manifests/v1`, 'PUT', { ...headers, 'content-type': OCI_MANIFEST }, manifest)
  t.equal(manifestPut.status, 201, 'the push in flight stores its image too')
  const otherManifest = await send(dispatcher, `${gateway.url}/v2/e2e/elsewhere/manifests/v1`, 'PUT', { ...headers, 'content-type': OCI_MANIFEST }, manifest)
  t.equal(otherManifest.status, 405, 'a manifest PUT that is no push in flight is refused')
  const pulled = await skopeoCopy(`docker://${gateway.host}/e2e/drain:v1`, `oci:${join(work, 'drained')}:v1`, { srcCertDir: gateway.certDir, srcCreds: `alice:${PASSWORDS.alice}` })
  t.equal(pulled.code, 0, 'the image pulls during maintenance')
  const back = await readOciLayout(join(work, 'drained'), 'v1')
  t.equal(back.manifestDigest, sha256(manifest), 'manifest digest')
  t.equal(back.configDigest, configDigest, 'config digest')
  t.same(back.layerDigests, [digest], 'layer digest')

  const read = await request(`${gateway.url}/v2/e2e/drain/blobs/${digest}`, { dispatcher, headers })
  const bytes = Buffer.from(await read.body.arrayBuffer())
  t.equal(read.statusCode, 200, 'the blob reads back during maintenance')
  t.equal(sha256(bytes), digest, 'intact: the same digest')
  const direct = Buffer.from(await (await fetch(`${registry.url}/v2/e2e/drain/blobs/${digest}`)).arrayBuffer())
  t.equal(sha256(direct), digest, 'the registry holds the same bytes')

  // Past the drain timeout (6 s after on) the session left open is cut off.
  const drainUntil = Date.parse(String((await admin('GET')).json().drainUntil))
  for (let i = 0; i < 100 && Date.now() <= drainUntil + 50; i++) await sleep(100)
  const late = await patch(lingering, Buffer.from('late'), 0)
  t.equal(late.status, 405, 'after the drain timeout an old session is refused too')

  t.equal((await admin('PUT', { on: false }, root)).status, 200)
  const resumed = await patch(lingering, Buffer.from('late'), 0)
  t.equal(resumed.status, 202, 'after maintenance the registry takes the old session again')
})

t.test('portier maintenance on|status|off through the admin API', async (t) => {
  // The admin paths on the main (HTTPS) listener too, to reach them with the self-signed certificate.
  const { gateway, admin } = await setup(t, { admin: { listen: '127.0.0.1:0', on_main_listener: true } })
  // The harness's own PORTIER_* variables are no gateway configuration (the CLI reads the configuration for its defaults).
  const clean = withoutPortierVariables(process.env)
  const env = { ...clean, PORTIER_ADMIN_PASSWORD: PASSWORDS.root }
  const cli = (args: string[], options: { env?: NodeJS.ProcessEnv; input?: string; adminUrl?: string; cwd?: string } = {}) =>
    run(process.execPath, [CLI, 'maintenance', ...args, '--admin-url', options.adminUrl ?? gateway.adminUrl ?? ''], {
      env: options.env ?? env,
      timeoutMs: 30_000,
      ...(options.input ? { input: options.input } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    })

  const usage = await run(process.execPath, [CLI, 'maintenance', 'sideways'], { timeoutMs: 30_000 })
  t.equal(usage.code, 64, 'an unknown action is a usage error')
  t.match(usage.stderr, /on, off or status/)

  const unauthenticated = await cli(['on'], { env: clean })
  t.equal(unauthenticated.code, 1, 'without --user the switch is refused')
  t.match(unauthenticated.stderr, /401.*--user/)

  const on = await cli(['on', '--user', 'root', '--message', 'cli says hello', '--retry-after', '5m'])
  t.equal(on.code, 0, on.stderr)
  t.match(on.stdout, /maintenance: on since .* \(by root\)/)
  t.match(on.stdout, /message: cli says hello/)
  const state = (await admin('GET')).json()
  t.equal(state.on, true, 'the gateway is in maintenance')
  t.equal(state.by, 'root')
  t.equal(state.message, 'cli says hello')

  const status = await cli(['status', '--json'])
  t.equal(status.code, 0)
  t.equal((JSON.parse(status.stdout) as { on: boolean }).on, true)

  // The password from stdin (not a terminal) when the environment has none.
  const off = await cli(['off', '--user', 'root'], { env: clean, input: `${PASSWORDS.root}\n` })
  t.equal(off.code, 0, off.stderr)
  t.match(off.stdout, /maintenance: off/)
  t.equal((await admin('GET')).json().on, false)

  const wrongUser = await cli(['on', '--user', 'alice'], { env: { ...clean, PORTIER_ADMIN_PASSWORD: PASSWORDS.alice } })
  t.equal(wrongUser.code, 1)
  t.match(wrongUser.stderr, /403/)
  t.equal((await admin('GET')).json().on, false, 'a non-administrator changed nothing')

  // Over HTTPS on the main listener: the self-signed certificate in certs/self-signed (beside the configuration) is trusted.
  const overHttps = await cli(['on', '--user', 'root', '--config', join(gateway.cwd, 'portier.yaml')], { adminUrl: gateway.url, cwd: gateway.cwd })
  t.equal(overHttps.code, 0, overHttps.stderr)
  t.equal((await admin('GET')).json().on, true, 'switched on over HTTPS')
  const untrusted = await cli(['status'], { adminUrl: gateway.url, cwd: tmpdir() })
  t.equal(untrusted.code, 1, 'without the certificate the connection is refused')
  t.match(untrusted.stderr, /could not reach the admin API: .*(self-signed|certificate)/i)
  const insecure = await cli(['off', '--user', 'root', '--insecure'], { adminUrl: gateway.url, cwd: tmpdir() })
  t.equal(insecure.code, 0, insecure.stderr)
  const withCa = await cli(['status', '--ca', gateway.caFile], { adminUrl: gateway.url, cwd: tmpdir() })
  t.equal(withCa.code, 0, withCa.stderr)
  t.match(withCa.stdout, /maintenance: off/)
})

t.test('web UI API: the banner state for everyone, the switch for administrators only (same origin + CSRF); UI deletes refused while on', async (t) => {
  const { gateway, work, dispatcher, admin } = await setup(t)
  const image = await makeOciLayout(join(work, 'src'), { layers: [4096] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/e2e/ui:v1`, { destCertDir: gateway.certDir, destCreds: `alice:${PASSWORDS.alice}` })
  const origin = gateway.url
  const signIn = async (who: [string, string]): Promise<{ cookie: string; csrf: string }> => {
    const login = await send(dispatcher, `${gateway.url}/ui/api/login`, 'POST', { origin, 'content-type': 'application/json' }, JSON.stringify({ username: who[0], password: who[1] }))
    t.equal(login.status, 200)
    return { cookie: String(login.headers['set-cookie']).split(';')[0] ?? '', csrf: String(login.json().csrfToken) }
  }
  const ui = (method: string, path: string, session?: { cookie: string; csrf: string }, body?: unknown, extra: Record<string, string> = {}): Promise<Answer> => {
    const headers: Record<string, string> = { origin, ...extra }
    if (session) {
      headers.cookie = session.cookie
      headers['x-csrf-token'] = session.csrf
    }
    if (body !== undefined) headers['content-type'] = 'application/json'
    return send(dispatcher, `${gateway.url}/ui/api/${path}`, method, headers, body === undefined ? undefined : JSON.stringify(body))
  }
  const rootSession = await signIn(root)
  const aliceSession = await signIn(alice)

  const visitor = await ui('GET', 'maintenance')
  t.equal(visitor.status, 200, 'the banner state needs no session')
  t.same(visitor.json(), { on: false, message: 'the registry is in maintenance: pushes and deletes are paused, pulls work', canSwitch: false })

  const byAlice = await ui('PUT', 'maintenance', aliceSession, { on: true })
  t.equal(byAlice.status, 403, 'not an administrator')
  const noCsrf = await ui('PUT', 'maintenance', { cookie: rootSession.cookie, csrf: 'wrong' }, { on: true })
  t.equal(noCsrf.status, 403, 'a wrong CSRF token is refused')
  const crossSite = await ui('PUT', 'maintenance', rootSession, { on: true }, { origin: 'https://evil.example' })
  t.equal(crossSite.status, 403, 'another origin is refused')
  t.equal((await admin('GET')).json().on, false, 'none of them switched it')

  const on = await ui('PUT', 'maintenance', rootSession, { on: true, message: 'from the status panel' })
  t.equal(on.status, 200)
  t.equal(on.json().on, true)
  t.equal(on.json().canSwitch, true)
  const seen = (await admin('GET')).json()
  t.equal(seen.on, true, 'the gateway is in maintenance')
  t.equal(seen.by, 'root')

  const banner = await ui('GET', 'maintenance', aliceSession)
  t.same(Object.keys(banner.json()).sort(), ['canSwitch', 'message', 'on', 'since'], 'others see the banner, not who or what is in flight')
  t.equal(banner.json().message, 'from the status panel')
  const full = await ui('GET', 'maintenance', rootSession)
  t.ok('inFlight' in full.json() && 'by' in full.json(), 'administrators see it all')

  const deleted = await ui('DELETE', `manifest?repository=e2e/ui&digest=${image.manifestDigest}`, rootSession)
  t.equal(deleted.status, 405, 'a delete from the UI is refused too')
  t.match(firstError(deleted).message, /read-only mode/)

  const off = await ui('PUT', 'maintenance', rootSession, { on: false })
  t.equal(off.status, 200)
  t.equal((await admin('GET')).json().on, false)
})

t.test('podman prints why its push is refused', async (t) => {
  const version = await run('podman', ['--version']).catch(() => undefined)
  if (version === undefined || version.code !== 0) {
    t.pass('podman is not installed: nothing to check')
    return
  }
  const { gateway, admin } = await setup(t)
  // Short and lower case: podman names the image after the directory, and its runroot must stay under 50 characters.
  const work = join(tmpdir(), `pm-${randomBytes(4).toString('hex')}`)
  await mkdir(work)
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const image = await buildLayout(join(work, 'src'), 'latest', [{ layers: [4096], tar: true }])
  const file = (name: string): string => join(work, name)
  await mkdir(file('xdg-run'), { recursive: true })
  const authFile = file('auth.json')
  await writeFile(authFile, '{}')
  const base = ['--root', file('root'), '--runroot', file('run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const env = { ...process.env, REGISTRY_AUTH_FILE: authFile, HOME: work, XDG_CONFIG_HOME: file('xdg-config'), XDG_DATA_HOME: file('xdg-data'), XDG_RUNTIME_DIR: file('xdg-run') }
  const pulled = await run('podman', [...base, 'pull', `oci:${image.dir}:latest`], { env, timeoutMs: 120_000 })
  t.equal(pulled.code, 0, `podman pull oci: (${pulled.stderr.trim()})`)
  const id = pulled.stdout.trim().split('\n').pop() ?? ''
  t.equal((await admin('PUT', { on: true, message: 'podman please wait' }, root)).status, 200)
  const pushed = await run('podman', [...base, 'push', '--cert-dir', gateway.certDir, '--creds', `alice:${PASSWORDS.alice}`, id, `docker://${gateway.host}/e2e/podman:v1`], { env, timeoutMs: 120_000 })
  t.not(pushed.code, 0)
  t.match(pushed.stderr, /read-only mode \(maintenance\): podman please wait/, `podman says why: ${pushed.stderr.trim()}`)
  t.equal((await admin('PUT', { on: false }, root)).status, 200)
  const again = await run('podman', [...base, 'push', '--cert-dir', gateway.certDir, '--creds', `alice:${PASSWORDS.alice}`, id, `docker://${gateway.host}/e2e/podman:v1`], { env, timeoutMs: 120_000 })
  t.equal(again.code, 0, `the push succeeds after (${again.stderr.trim()})`)
})

t.test('browser: an administrator switches maintenance in the status panel; every visitor sees the banner', async (t) => {
  const { gateway, admin } = await setup(t)
  const browser = await browserFixture(t)
  const { page, problems } = await openPage(browser)
  await page.goto(`${gateway.url}/ui/#/status`)
  await page.getByLabel('User name').fill('root')
  await page.getByLabel('Password').fill(PASSWORDS.root)
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('heading', { name: 'Maintenance' }).waitFor()
  t.equal(await page.locator('.maintenance-banner').count(), 0, 'no banner while off')

  await page.getByLabel('Message for clients').fill('browser maintenance')
  await page.getByLabel('Expected length').fill('15m')
  await page.getByRole('button', { name: 'Switch maintenance on' }).click()
  const banner = page.locator('.maintenance-banner')
  await banner.waitFor()
  t.match(await banner.textContent(), /read-only.*browser maintenance/s, 'the banner says it at once')
  const state = (await admin('GET')).json()
  t.equal(state.on, true, 'the gateway is in maintenance')
  t.equal(state.by, 'root')
  t.equal(state.message, 'browser maintenance')
  t.ok(typeof state.until === 'string', 'with the expected end')
  await screenshot(page, 'maintenance-on')

  // A visitor who is not signed in sees the banner on the sign-in page.
  const visitor = await openPage(browser)
  await visitor.page.goto(`${gateway.url}/ui/`)
  await visitor.page.getByRole('heading', { name: 'Sign in to Portier' }).waitFor()
  await visitor.page.locator('.maintenance-banner').waitFor()
  t.match(await visitor.page.locator('.maintenance-banner').textContent(), /browser maintenance/)
  await visitor.context.close()

  await page.getByRole('button', { name: 'Switch maintenance off' }).click()
  await banner.waitFor({ state: 'detached' })
  t.equal((await admin('GET')).json().on, false, 'switched off from the panel')
  t.same(problems.errors, [], 'no page errors')
})
