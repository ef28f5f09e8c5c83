// Webhooks end to end: the real gateway, a real registry, skopeo, and a real HTTP receiver on 127.0.0.1 getting registry:2's envelopes.
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { REGISTRY_BIN, registryFixture } from '../helpers/registry.js'
import { CLI, gatewayFixture, startGateway, type GatewayHandle } from '../helpers/gateway.js'
import { run } from '../helpers/exec.js'
import { makeOciLayout, ociBlobPath } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { startReceiver, type ReceivedEvent, type Receiver } from '../helpers/receiver.js'
import { verify } from '../../src/events/signature.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { browserFixture, openPage, screenshot } from '../helpers/browser.js'
import { Store } from '../../src/store/store.js'
import { PushPullTimes } from '../../src/store/times.js'

const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

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
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The admin API's view of the queue (auth.mode none: anyone on the admin listener is an administrator). */
async function queueState(gateway: GatewayHandle, authorization?: string): Promise<{ endpoints: Array<{ name: string; pending: number; dead: number; delivered: number; failed: number }> }> {
  const response = await request(`${gateway.adminUrl}/admin/api/events`, authorization ? { headers: { authorization } } : {})
  if (response.statusCode !== 200) throw new Error(`GET /admin/api/events: ${response.statusCode} ${await response.body.text()}`)
  return (await response.body.json()) as { endpoints: Array<{ name: string; pending: number; dead: number; delivered: number; failed: number }> }
}

function endpointConfig(receiver: Receiver, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'listener', url: receiver.url, timeout: '2s', threshold: 2, backoff: '100ms', max_backoff: '500ms', ...fields }
}

t.test('a skopeo push, a pull and a delete make exactly registry:2\'s envelopes, signed', async (t) => {
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const work = await tempDir(t, 'portier-events-e2e-')
  const secretFile = join(work, 'hook.secret')
  await writeFile(secretFile, 'a-shared-hook-secret\n')
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      events: { endpoints: [endpointConfig(receiver, { headers: { Authorization: ['Bearer listener-token'] }, secret_file: secretFile })] },
    },
  })
  const image = await makeOciLayout(join(work, 'src'), { layers: [300_000, 70_000] })
  const configSize = statSync(ociBlobPath(image.dir, image.configDigest)).size
  const manifestSize = statSync(ociBlobPath(image.dir, image.manifestDigest)).size
  const blobs = new Map([...image.layerDigests.map((digest, index) => [digest, image.layerSizes[index] as number] as const), [image.configDigest, configSize] as const])

  const ref = `docker://${gateway.host}/team/app:v1`
  await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir })
  const pushed = await receiver.waitFor(4)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.events().length, 4, 'a push of 3 blobs and a manifest is 4 events, no more')

  for (const delivery of receiver.deliveries) {
    t.equal(delivery.headers['content-type'], EVENTS_MEDIA_TYPE)
    t.equal(delivery.headers.authorization, 'Bearer listener-token', 'configured headers are sent')
    t.ok(verify(Buffer.from('a-shared-hook-secret'), delivery.body, delivery.headers['x-portier-signature'] as string), 'X-Portier-Signature verifies over the raw body')
    t.equal(delivery.events.length, 1, 'one event per envelope, as registry 2.8 sends them')
  }
  const blobEvents = pushed.slice(0, 3)
  const manifestEvent = pushed[3] as ReceivedEvent
  t.same(new Set(blobEvents.map((event) => event.target.digest)), new Set(blobs.keys()), 'the blobs come first, each once; the manifest last')
  for (const event of blobEvents) {
    const digest = event.target.digest as string
    t.same(event.target, {
      mediaType: 'application/octet-stream',
      size: blobs.get(digest),
      digest,
      length: blobs.get(digest),
      repository: 'team/app',
      url: `${gateway.url}/v2/team/app/blobs/${digest}`,
    }, `blob push ${digest}`)
    t.equal(event.action, 'push')
    t.equal(event.request.method, 'PUT')
  }
  t.same(manifestEvent.target, {
    mediaType: OCI_MANIFEST,
    size: manifestSize,
    digest: image.manifestDigest,
    length: manifestSize,
    repository: 'team/app',
    url: `${gateway.url}/v2/team/app/manifests/${image.manifestDigest}`,
    tag: 'v1',
  })
  t.equal(manifestEvent.action, 'push')
  t.match(manifestEvent.request, { method: 'PUT', addr: '127.0.0.1', host: gateway.host, useragent: /skopeo|containers/i })
  t.match(manifestEvent.id, /^[0-9a-f-]{36}$/)
  t.ok(Number.isFinite(Date.parse(manifestEvent.timestamp)))
  t.same(manifestEvent.actor, {}, 'anonymous: an empty actor, as registry:2 writes it')
  t.match(manifestEvent.source, { addr: new RegExp(`:${gateway.port}$`), instanceID: /^[0-9a-f-]{36}$/ })
  t.same(Object.keys(manifestEvent), ['id', 'timestamp', 'action', 'target', 'request', 'actor', 'source'])

  // A pull: the manifest by tag, then every blob.
  await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir })
  const afterPull = await receiver.waitFor(8)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const pulls = afterPull.slice(4)
  t.equal(receiver.events().length, 8, 'a pull of a manifest and 3 blobs is 4 events')
  t.same(pulls.map((event) => event.action), ['pull', 'pull', 'pull', 'pull'])
  t.same(pulls[0]?.target, { mediaType: OCI_MANIFEST, size: manifestSize, digest: image.manifestDigest, length: manifestSize, repository: 'team/app', url: `${gateway.url}/v2/team/app/manifests/${image.manifestDigest}`, tag: 'v1' })
  t.same(new Map(pulls.slice(1).map((event) => [event.target.digest, event.target.size])), blobs, 'each blob pulled with its size')
  t.ok(pulls.slice(1).every((event) => event.target.mediaType === 'application/octet-stream' && event.request.method === 'GET'))

  // A delete by digest.
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const deleted = await request(`${gateway.url}/v2/team/app/manifests/${image.manifestDigest}`, { method: 'DELETE', dispatcher })
  await deleted.body.dump()
  t.equal(deleted.statusCode, 202)
  const afterDelete = await receiver.waitFor(9)
  t.same(afterDelete[8] && [afterDelete[8].action, afterDelete[8].target, afterDelete[8].request.method], ['delete', { digest: image.manifestDigest, repository: 'team/app' }, 'DELETE'])
  t.equal(new Set(receiver.events().map((event) => event.id)).size, 9, 'every event has its own id')
})

t.test('a receiver down for a while, then up: every event delivered once, in order; metrics per endpoint', async (t) => {
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const work = await tempDir(t, 'portier-events-down-')
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], events: { endpoints: [endpointConfig(receiver)] } },
  })
  const image = await makeOciLayout(join(work, 'src'), { layers: [1000] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/down/app:v0`, { destCertDir: gateway.certDir })
  await receiver.waitFor(3)
  await receiver.down()

  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const manifest = readFileSync(ociBlobPath(image.dir, image.manifestDigest))
  const tags = Array.from({ length: 20 }, (_, index) => `t${index}`)
  for (const tag of tags) {
    const put = await request(`${gateway.url}/v2/down/app/manifests/${tag}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST }, dispatcher })
    await put.body.dump()
    t.equal(put.statusCode, 201)
  }
  await until(async () => (await queueState(gateway)).endpoints[0]?.pending === 20, '20 events pending')
  // Long enough for the breaker to open and back off several times (threshold 2, backoff 100ms..500ms).
  await new Promise((resolve) => setTimeout(resolve, 1500))
  const waiting = (await queueState(gateway)).endpoints[0]
  t.equal(waiting?.pending, 20, 'nothing is dropped while the receiver is down')
  t.ok((waiting?.failed ?? 0) >= 2, 'failed attempts are counted')
  const metricsWhileDown = await (await request(`${gateway.adminUrl}/metrics`)).body.text()
  t.match(metricsWhileDown, /portier_events_pending\{endpoint="listener"\} 20/)

  await receiver.up()
  const all = await receiver.waitFor(23)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.events().length, 23, 'each event once')
  t.same(all.slice(3).map((event) => event.target.tag), tags, 'in the order they happened')
  await until(async () => (await queueState(gateway)).endpoints[0]?.pending === 0, 'the queue drained')
  const metrics = await (await request(`${gateway.adminUrl}/metrics`)).body.text()
  t.match(metrics, /portier_events_pending\{endpoint="listener"\} 0/)
  t.match(metrics, /portier_events_delivered_total\{endpoint="listener"\} 23/)
  t.match(metrics, /portier_events_last_success_age_seconds\{endpoint="listener"\} \d/)
})

t.test('SIGKILL with 100 events pending, restarted: all 100 delivered, each id once', async (t) => {
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const work = await tempDir(t, 'portier-events-kill-')
  const image = await makeOciLayout(join(work, 'src'), { layers: [2000] })
  await receiver.down()
  const config = { upstreams: [{ url: registry.url }], events: { endpoints: [endpointConfig(receiver, { ignore: { actions: ['push'] } })] } }
  const cwd = join(work, 'gateway')
  await mkdir(cwd)
  let gateway = await startGateway({ cwd, config })
  t.teardown(() => gateway.stop())
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/kill/app:v1`, { destCertDir: gateway.certDir })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const layer = image.layerDigests[0] as string
  for (let n = 0; n < 100; n++) {
    const head = await request(`${gateway.url}/v2/kill/app/blobs/${layer}`, { method: 'HEAD', dispatcher, headers: { 'x-request-id': `pull-${n}` } })
    await head.body.dump()
    t.equal(head.statusCode, 200)
  }
  await until(async () => (await queueState(gateway)).endpoints[0]?.pending === 100, '100 pull events pending')
  gateway.child.kill('SIGKILL')
  await new Promise((resolve) => gateway.child.once('exit', resolve))

  await receiver.up()
  gateway = await startGateway({ cwd, config })
  const received = await receiver.waitFor(100, 60_000)
  await until(async () => (await queueState(gateway)).endpoints[0]?.pending === 0, 'the queue drained after the restart')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(receiver.events().length, 100, 'no event lost, none sent twice (the receiver was down at the kill)')
  t.same(received.map((event) => event.request.id), Array.from({ length: 100 }, (_, n) => `pull-${n}`), 'in order, each request once')
  t.equal(new Set(received.map((event) => event.id)).size, 100)
  t.ok(received.every((event) => event.action === 'pull' && event.target.digest === layer && event.target.size === 2000))
})

t.test('portier events list shows a dead letter; portier events retry sends it, and the receiver gets it', async (t) => {
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  receiver.status = 500
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], events: { endpoints: [endpointConfig(receiver, { threshold: 1, backoff: '100ms', max_backoff: '100ms', deadletter_after: '1s' })] } },
  })
  const cli = (...args: string[]) => run(process.execPath, [CLI, 'events', ...args, '--admin-url', gateway.adminUrl as string], { env: { PATH: process.env.PATH ?? '' }, timeoutMs: 30_000 })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  // A monolithic blob push (POST with ?digest=): one event, which the receiver refuses until deadletter_after.
  const blob = Buffer.from('dead letter blob')
  const blobDigest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const pushed = await request(`${gateway.url}/v2/dead/app/blobs/uploads/?digest=${blobDigest}`, { method: 'POST', body: blob, headers: { 'content-type': 'application/octet-stream' }, dispatcher })
  await pushed.body.dump()
  t.equal(pushed.statusCode, 201)
  await until(async () => (await queueState(gateway)).endpoints[0]?.dead === 1, 'the event dead-lettered after deadletter_after')

  const listed = await cli('list', '--dead', '--json')
  t.equal(listed.code, 0, listed.stderr)
  const answer = JSON.parse(listed.stdout) as { endpoints: Array<{ name: string; dead: number; pending: number }>; events: Array<{ action: string; digest: string; dead: boolean; last_error: string }> }
  t.match(answer.endpoints, [{ name: 'listener', dead: 1, pending: 0 }])
  t.match(answer.events, [{ action: 'push', digest: blobDigest, dead: true, last_error: 'HTTP 500' }])
  const text = await cli('list')
  t.match(text.stdout, /listener http:\/\/127\.0\.0\.1:\d+\/api\/notification: .*0 pending, 1 dead/)

  receiver.status = 200
  const retried = await cli('retry', '--endpoint', 'listener')
  t.equal(retried.code, 0, retried.stderr)
  t.match(retried.stdout, /1 dead letter queued again/)
  const [event] = await receiver.waitFor(1)
  t.match(event?.target, { digest: blobDigest, size: blob.length, repository: 'dead/app' })
  const unknown = await cli('retry', '--endpoint', 'nope')
  t.equal(unknown.code, 1)
  t.match(unknown.stderr, /no endpoint named "nope"/)
})

t.test('the web UI status panel shows each endpoint: failing with events pending, then ok once delivered', async (t) => {
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  await receiver.down()
  const work = await tempDir(t, 'portier-events-ui-')
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-secret-pw', 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] },
      ui: { admin_users: ['alice'] },
      events: { endpoints: [endpointConfig(receiver)] },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const authorization = `Basic ${Buffer.from('alice:alice-secret-pw').toString('base64')}`
  for (let n = 0; n < 3; n++) {
    const head = await request(`${gateway.url}/v2/ui/app/blobs/sha256:${'e'.repeat(64)}`, { method: 'HEAD', dispatcher, headers: { authorization } })
    await head.body.dump()
    t.equal(head.statusCode, 404, 'an unknown blob makes no event')
  }
  const blob = Buffer.from('ui blob')
  const pushed = await request(`${gateway.url}/v2/ui/app/blobs/uploads/?digest=sha256:${createHash('sha256').update(blob).digest('hex')}`, { method: 'POST', body: blob, dispatcher, headers: { authorization, 'content-type': 'application/octet-stream' } })
  await pushed.body.dump()
  t.equal(pushed.statusCode, 201)
  await until(async () => ((await queueState(gateway, authorization)).endpoints[0]?.failed ?? 0) >= 2, 'the endpoint failing')

  const browser = await browserFixture(t)
  const { page, context, problems } = await openPage(browser)
  t.teardown(() => context.close())
  await page.goto(`${gateway.url}/ui/#/status`)
  await page.getByLabel('User name').fill('alice')
  await page.getByLabel('Password').fill('alice-secret-pw')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('link', { name: 'Status' }).click()
  const section = page.getByRole('region', { name: 'Webhooks' })
  await section.waitFor()
  const row = section.locator('tbody tr', { hasText: 'listener' })
  t.match(await row.locator('[data-label="State"]').textContent(), /failing/)
  t.equal((await row.locator('[data-label="Pending"]').textContent())?.trim(), '1')
  t.equal((await row.locator('[data-label="Last success"]').textContent())?.trim(), 'never')
  await screenshot(page, 'status-webhooks-failing')

  await receiver.up()
  await receiver.waitFor(1)
  await until(async () => (await queueState(gateway, authorization)).endpoints[0]?.pending === 0, 'delivered')
  await page.getByRole('button', { name: 'Refresh' }).click()
  await until(async () => /ok/.test((await row.locator('[data-label="State"]').textContent()) ?? ''), 'the panel showing ok')
  t.equal((await row.locator('[data-label="Pending"]').textContent())?.trim(), '0')
  t.match(await row.locator('[data-label="Delivered"]').textContent(), /^1/)
  t.match(await row.locator('[data-label="Last success"]').textContent(), /s ago/)
  t.same(problems.errors, [], 'no page errors')
})

t.test("Portier's own actions go only where asked: login, login_failed and mount", async (t) => {
  const registry = await registryFixture(t)
  const asked = await startReceiver()
  const plain = await startReceiver()
  t.teardown(() => Promise.all([asked.close(), plain.close()]))
  const work = await tempDir(t, 'portier-events-own-')
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-secret-pw', 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] },
      events: {
        endpoints: [
          { name: 'asked', url: asked.url, actions: ['login', 'login_failed', 'mount'], ignore: { actions: ['push'] } },
          { name: 'plain', url: plain.url, ignore: { actions: ['push'] } },
        ],
      },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const basic = (password: string): string => `Basic ${Buffer.from(`alice:${password}`).toString('base64')}`
  const call = async (method: 'GET' | 'POST', path: string, authorization: string | undefined, body?: Buffer): Promise<number> => {
    const response = await request(`${gateway.url}${path}`, { method, dispatcher, headers: { ...(authorization ? { authorization } : {}), ...(body ? { 'content-type': 'application/octet-stream' } : {}) }, ...(body ? { body } : {}) })
    await response.body.dump()
    return response.statusCode
  }
  t.equal(await call('GET', '/v2/', undefined), 401, "docker's first /v2/: a challenge, not a login")
  t.equal(await call('GET', '/v2/', basic('wrong-password')), 401)
  t.equal(await call('GET', '/v2/', basic('alice-secret-pw')), 200)
  const blob = Buffer.from('mounted blob')
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  t.equal(await call('POST', `/v2/src/app/blobs/uploads/?digest=${digest}`, basic('alice-secret-pw'), blob), 201)
  t.equal(await call('POST', `/v2/dst/app/blobs/uploads/?mount=${digest}&from=src/app`, basic('alice-secret-pw')), 201)
  // A pull both endpoints get: proof the plain one was reachable and heard nothing else.
  t.equal(await call('GET', `/v2/dst/app/blobs/${digest}`, basic('alice-secret-pw')), 200)

  const received = await asked.waitFor(4)
  t.same(received.map((event) => [event.action, event.actor.name ?? null]), [['login_failed', 'alice'], ['login', 'alice'], ['mount', 'alice'], ['pull', 'alice']], 'a failed login names who tried')
  t.match(received[2]?.target, { digest, repository: 'dst/app', fromRepository: 'src/app', mediaType: 'application/octet-stream' })
  t.match(received[0]?.request, { method: 'GET', addr: '127.0.0.1' })
  await plain.waitFor(1)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(plain.events().map((event) => event.action), ['pull'])
})

t.test('the token endpoint\'s POSTed grants (docker login\'s form, refresh grants) are logins too, naming who', async (t) => {
  const registry = await registryFixture(t)
  const asked = await startReceiver()
  t.teardown(() => asked.close())
  const work = await tempDir(t, 'portier-events-grants-')
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-secret-pw', 5)}\n`)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'token', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }],
        token: { key: join(work, 'keys', 'token.key'), cert: join(work, 'keys', 'token.crt') },
      },
      events: { endpoints: [{ name: 'asked', url: asked.url, actions: ['login', 'login_failed'] }] },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const grant = async (fields: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> => {
    const response = await request(`${gateway.url}/auth/token`, {
      method: 'POST', dispatcher, headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ service: 'portier-registry', client_id: 'docker', ...fields }).toString(),
    })
    return { status: response.statusCode, body: (await response.body.json()) as Record<string, unknown> }
  }
  t.equal((await grant({ grant_type: 'password', username: 'alice', password: 'wrong' })).status, 401)
  const accepted = await grant({ grant_type: 'password', username: 'alice', password: 'alice-secret-pw', access_type: 'offline' })
  t.equal(accepted.status, 200)
  t.equal((await grant({ grant_type: 'refresh_token', refresh_token: String(accepted.body.refresh_token) })).status, 200)
  const received = await asked.waitFor(3)
  t.same(received.map((event) => [event.action, event.actor.name ?? null]), [['login_failed', 'alice'], ['login', 'alice'], ['login', 'alice']], 'a refused form, an accepted one and a refresh grant')
  t.notMatch(JSON.stringify(received), String(accepted.body.refresh_token), 'the refresh token is in no event')
})

t.test('a real retention run and the collection after it reach the endpoint that lists retention_delete and gc, and no other', async (t) => {
  const registry = await registryFixture(t)
  const asked = await startReceiver()
  const plain = await startReceiver()
  t.teardown(() => Promise.all([asked.close(), plain.close()]))
  const work = await tempDir(t, 'portier-events-housekeeping-')
  // An image pushed straight into the registry, and a push time 100 days ago in the store the gateway opens: retention deletes it.
  const image = await makeOciLayout(join(work, 'image'), { layers: [4096] })
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://127.0.0.1:${registry.port}/ci/app:old`, { destTlsVerify: false })
  // Another image no rule governs, pulled at the end (pushed now: the collection must not race its push).
  const kept = await makeOciLayout(join(work, 'kept'), { layers: [2048] })
  await skopeoCopy(`oci:${kept.dir}:latest`, `docker://127.0.0.1:${registry.port}/dev/kept:v1`, { destTlsVerify: false })
  const cwd = join(work, 'gateway')
  await mkdir(join(cwd, 'data'), { recursive: true })
  const store = Store.open(join(cwd, 'data', 'portier.db'))
  new PushPullTimes(store).pushed('ci/app', 'old', image.manifestDigest, Date.now() - 100 * 86_400_000)
  store.close()
  const gateway = await gatewayFixture(t, {
    cwd,
    config: {
      upstreams: [{ url: registry.url }],
      store: { scan: false },
      retention: { rules: [{ repositories: 'ci/**', delete_older_than: '30d' }] },
      gc: { registry_config: registry.configFile, storage_root: registry.storageDir, binary: REGISTRY_BIN },
      events: {
        endpoints: [
          // A generous timeout: on a loaded machine a 1 s answer can be missed, and the event is then (rightly) sent again.
          { name: 'asked', url: asked.url, timeout: '20s', actions: ['retention_delete', 'gc'], ignore: { actions: ['pull'] } },
          { name: 'plain', url: plain.url, timeout: '20s' },
        ],
      },
    },
  })
  const response = await request(`${gateway.adminUrl}/admin/api/retention`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dry_run: false, wait: true }) })
  const report = (await response.body.json()) as { deletions: Array<{ digest: string; outcome: string }>; gc?: { result: string } }
  t.equal(response.statusCode, 200)
  t.same(report.deletions.map((entry) => entry.digest), [image.manifestDigest], 'retention deleted the old manifest')
  t.match(report.gc?.result, /^(started|success)$/, 'and a collection was started after it')

  const received = await asked.waitFor(2)
  t.equal(new Set(received.map((event) => event.id)).size, 2, 'two events, not one sent twice')
  t.same(received.map((event) => [event.action, event.target]), [
    ['retention_delete', { digest: image.manifestDigest, repository: 'ci/app' }],
    ['gc', {}],
  ], 'the delete, then the collection')
  t.equal(received[0]?.actor.name, 'portier-retention', 'retention is the actor of its deletes')
  t.match(received[1]?.actor.name, /.+/, 'the collection names who started it')
  t.match(received[1]?.source, { addr: new RegExp(`:${gateway.port}$`) })

  // A pull only plain hears: proof it was reachable, and heard nothing of the housekeeping.
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const layer = kept.layerDigests[0] as string
  const head = await request(`${gateway.url}/v2/dev/kept/blobs/${layer}`, { method: 'HEAD', dispatcher })
  await head.body.dump()
  t.equal(head.statusCode, 200)
  await plain.waitFor(1)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(plain.events().map((event) => event.action), ['pull'], 'the endpoint that did not ask got neither')
  t.equal(asked.events().length, 2, 'and the one that asked nothing more')
})
