// Webhooks: registry:2's notifications config carried over, the events a finished request makes, filters, signatures, the store queue, delivery.
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import yaml from 'js-yaml'
import pino from 'pino'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { classify } from '../../src/registry/classify.js'
import type { FinishedRequest } from '../../src/observe/record.js'
import { Recorder } from '../../src/observe/record.js'
import { RecentPushes } from '../../src/observe/recent.js'
import { eventsOf, EVENTS_MEDIA_TYPE, type RegistryEvent } from '../../src/events/envelope.js'
import { matcher, startEvents } from '../../src/events/index.js'
import { storeQueue } from '../../src/events/queue.js'
import { retryDelay } from '../../src/events/delivery.js'
import { sign, verify } from '../../src/events/signature.js'
import { eventFileProblems } from '../../src/events/files.js'
import { eventsSection, type EndpointConfig } from '../../src/events/section.js'
import { Store } from '../../src/store/store.js'
import { startReceiver } from '../helpers/receiver.js'
import { ENGINES, openEngine } from '../helpers/store-engines.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-events-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const quiet = pino({ level: 'silent' })

function yamlFile(name: string, text: string): string {
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}

function problemsOf(file: string): ConfigProblem[] {
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError')
}

// As registry-web's README and the seeds configure registry:2 for its /api/notification listener, plus every other knob.
const REGISTRY_CONFIG = `
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
notifications:
  endpoints:
    - name: registry-web
      url: http://registry-web:8080/api/notification
      headers:
        Authorization: [Bearer s3cr3t]
        X-Extra: [one, two]
      timeout: 500ms
      threshold: 5
      backoff: 1s
      ignoredmediatypes:
        - application/octet-stream
      ignore:
        mediatypes:
          - application/vnd.oci.image.config.v1+json
        actions:
          - pull
    - name: ci-hook
      disabled: true
      url: https://ci.example.com/hook
`

t.test("a registry:2 notifications block (registry-web's listener) carries over field by field", async (t) => {
  const registry = yaml.load(REGISTRY_CONFIG) as { notifications: { endpoints: unknown[] } }
  // The conversion is the key's name: events.endpoints takes registry:2's endpoint entries as they are.
  const file = yamlFile('carried.yaml', yaml.dump({ events: { endpoints: registry.notifications.endpoints } }))
  const { events } = loadConfig({ file, env: {} }).config
  t.equal(events.endpoints.length, 2)
  const [web, ci] = events.endpoints as [EndpointConfig, EndpointConfig]
  t.equal(web.name, 'registry-web')
  t.equal(web.url, 'http://registry-web:8080/api/notification')
  t.same(web.headers, { Authorization: ['Bearer s3cr3t'], 'X-Extra': ['one', 'two'] })
  t.equal(web.timeout, 500)
  t.equal(web.threshold, 5)
  t.equal(web.backoff, 1000)
  t.same(web.ignoredmediatypes, ['application/octet-stream'])
  t.same(web.ignore, { mediatypes: ['application/vnd.oci.image.config.v1+json'], actions: ['pull'] })
  t.equal(web.disabled, false)
  t.equal(ci.disabled, true)
  // registry:2's defaults where the seed says nothing.
  t.equal(ci.timeout, 1000)
  t.equal(ci.threshold, 10)
  t.equal(ci.backoff, 1000)
  t.same(ci.headers, {})
})

t.test('events config errors name the key and what was expected', async (t) => {
  const file = yamlFile('bad.yaml', `
events:
  endpoints:
    - name: a
      url: ftp://x
      threshold: 0
      repositories: ['Team/*']
      actions: [push]
      tls: { ca_file: 3 }
`)
  const problems = problemsOf(file)
  const byKey = new Map(problems.map((problem) => [problem.key, problem]))
  t.match(byKey.get('events.endpoints[0].url')?.expected, /http:\/\/ or https:\/\//)
  t.match(byKey.get('events.endpoints[0].threshold')?.expected, /≥ 1/)
  t.match(byKey.get('events.endpoints[0].repositories[0]')?.expected, /repository glob/)
  t.match(byKey.get('events.endpoints[0].actions[0]')?.expected, /"login"/)
  t.ok(byKey.has('events.endpoints[0].tls.ca_file'))
  const twice = problemsOf(yamlFile('twice.yaml', 'events:\n  endpoints:\n    - { name: a, url: "http://127.0.0.1:1/" }\n    - { name: a, url: "http://127.0.0.1:2/" }\n'))
  t.same(twice.map((problem) => [problem.key, problem.expected]), [['events.endpoints[1].name', 'a name no other endpoint has']])
})

/** Waits (bounded) until `done` holds: the receiver has the body before Portier has its answer. */
async function until(done: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 250 && !(await done()); i++) await new Promise((resolve) => setTimeout(resolve, 20))
  if (!(await done())) throw new Error(`still not: ${what}`)
}

t.test('files the endpoints name are checked: a missing secret_file or ca_file is a problem naming the key', async (t) => {
  const config = eventsSection.parse({
    endpoints: [{ name: 'x', url: 'http://127.0.0.1:9/', secret_file: join(dir, 'nope'), tls: { ca_file: yamlFile('not-a-cert.pem', 'hello') } }],
  })
  const problems = eventFileProblems(config)
  t.same(problems.map((problem) => problem.key), ['events.endpoints[0].secret_file', 'events.endpoints[0].tls.ca_file'])
  writeFileSync(join(dir, 'nope'), 'key\n')
  t.same(eventFileProblems(config).map((problem) => problem.key), ['events.endpoints[0].tls.ca_file'])
})

const source = { addr: 'gw:5000', instanceID: 'instance-1' }
const D1 = `sha256:${'a'.repeat(64)}`
const D2 = `sha256:${'b'.repeat(64)}`

function finished(method: string, url: string, fields: Partial<FinishedRequest>): FinishedRequest {
  return {
    requestId: 'req-1', method, request: classify(method, url), status: 200, seconds: 0.01, clientIp: '10.0.0.9', user: 'alice', upstream: 'a',
    bytesReceived: 0, bytesSent: 0, failure: undefined, userAgent: 'skopeo/1.13', host: 'registry.example.com', publicOrigin: 'https://registry.example.com', ...fields,
  }
}

t.test("the events of finished requests are registry 2.8's, field for field", async (t) => {
  const at = new Date('2026-12-04T03:00:00.000Z')
  // Blob push: PUT ?digest= after a PATCH; the size is the session's offset (from _state) plus this request's bytes.
  const state = Buffer.concat([Buffer.alloc(32), Buffer.from('{"Offset":1000}')]).toString('base64url')
  const [blob] = eventsOf(finished('PUT', `/v2/team/app/blobs/uploads/u1?_state=${state}&digest=${D1}`, { status: 201, bytesReceived: 24, contentDigest: D1 }), source, at)
  t.same(blob && { ...blob, id: 'x' }, {
    id: 'x',
    timestamp: '2026-12-04T03:00:00.000Z',
    action: 'push',
    target: { mediaType: 'application/octet-stream', size: 1024, digest: D1, length: 1024, repository: 'team/app', url: `https://registry.example.com/v2/team/app/blobs/${D1}` },
    request: { id: 'req-1', addr: '10.0.0.9', host: 'registry.example.com', method: 'PUT', useragent: 'skopeo/1.13' },
    actor: { name: 'alice' },
    source: { addr: 'gw:5000', instanceID: 'instance-1' },
  })
  t.same(Object.keys(blob?.target ?? {}), ['mediaType', 'size', 'digest', 'length', 'repository', 'url'], "registry:2's field order")

  const manifestType = 'application/vnd.oci.image.manifest.v1+json'
  const [push] = eventsOf(finished('PUT', '/v2/team/app/manifests/v1', { status: 201, bytesReceived: 420, contentDigest: D2, mediaType: manifestType }), source, at)
  t.same(push?.target, { mediaType: manifestType, size: 420, digest: D2, length: 420, repository: 'team/app', url: `https://registry.example.com/v2/team/app/manifests/${D2}`, tag: 'v1' })
  const [byDigest] = eventsOf(finished('PUT', `/v2/team/app/manifests/${D2}`, { status: 201, bytesReceived: 420, contentDigest: D2, mediaType: manifestType }), source, at)
  t.equal(byDigest?.target.tag, undefined, 'a push by digest has no tag')

  const [pull] = eventsOf(finished('GET', '/v2/team/app/manifests/v1', { status: 200, bytesSent: 420, contentLength: 420, contentDigest: D2, mediaType: `${manifestType}; charset=utf-8` }), source, at)
  t.same(pull && [pull.action, pull.target], ['pull', { mediaType: manifestType, size: 420, digest: D2, length: 420, repository: 'team/app', url: `https://registry.example.com/v2/team/app/manifests/${D2}`, tag: 'v1' }])
  const [blobPull] = eventsOf(finished('HEAD', `/v2/team/app/blobs/${D1}`, { status: 200, contentLength: 1024 }), source, at)
  t.same(blobPull?.target, { mediaType: 'application/octet-stream', size: 1024, digest: D1, length: 1024, repository: 'team/app', url: `https://registry.example.com/v2/team/app/blobs/${D1}` }, 'registry 2.8 reports a HEAD as a pull too')

  const [deleted] = eventsOf(finished('DELETE', `/v2/team/app/manifests/${D2}`, { status: 202, user: undefined }), source, at)
  t.same(deleted && [deleted.action, deleted.target, deleted.actor], ['delete', { digest: D2, repository: 'team/app' }, {}])

  t.same(eventsOf(finished('GET', '/v2/team/app/manifests/v1', { status: 404 }), source, at), [], 'a failed request makes no event')
  t.same(eventsOf(finished('PATCH', '/v2/team/app/blobs/uploads/u1', { status: 202, bytesReceived: 10 }), source, at), [], 'a chunk is not a push')
  const [mount] = eventsOf(finished('POST', `/v2/team/app/blobs/uploads/?mount=${D1}&from=base/img`, { status: 201, contentDigest: D1 }), source, at)
  t.same(mount && [mount.action, mount.target.fromRepository], ['mount', 'base/img'])
  const [loginFailed] = eventsOf(finished('GET', '/v2/', { status: 401, credentialsSent: true, user: undefined, loginName: 'mallory' }), source, at)
  t.same(loginFailed && [loginFailed.action, loginFailed.actor], ['login_failed', { name: 'mallory' }])
  const [token] = eventsOf({ ...finished('GET', '/v2/', { status: 200, credentialsSent: true, user: undefined, loginName: 'alice' }), request: undefined, route: 'token' }, source, at)
  t.same(token && [token.action, token.actor, token.target], ['login', { name: 'alice' }, {}], 'a token issued for Basic credentials is a login')
  t.same(eventsOf(finished('GET', '/v2/', { status: 401, credentialsSent: false }), source, at), [], "docker's first challenge is not a login")
})

function endpoint(fields: Record<string, unknown>): EndpointConfig {
  return eventsSection.parse({ endpoints: [{ name: 'e', url: 'http://127.0.0.1:9/', ...fields }] }).endpoints[0] as EndpointConfig
}

function event(action: RegistryEvent['action'], target: RegistryEvent['target']): RegistryEvent {
  return { id: 'i', timestamp: '', action, target, request: { id: 'r', method: 'GET', useragent: '' }, actor: {}, source: {} }
}

t.test("an endpoint's filters: ignored media types and actions, repository globs, Portier's actions only when asked", async (t) => {
  const wants = matcher(endpoint({ ignoredmediatypes: ['application/octet-stream'], ignore: { actions: ['pull'] }, repositories: ['team/**'], actions: ['login'] }))
  t.notOk(wants(event('push', { mediaType: 'application/octet-stream', repository: 'team/app' })), 'ignoredmediatypes')
  t.notOk(wants(event('pull', { mediaType: 'x', repository: 'team/app' })), 'ignore.actions')
  t.ok(wants(event('push', { mediaType: 'x', repository: 'team/a/b' })))
  t.notOk(wants(event('push', { mediaType: 'x', repository: 'other/app' })), 'repositories')
  t.ok(wants(event('login', {})), 'asked-for Portier action')
  t.notOk(wants(event('mount', { repository: 'team/app' })), 'Portier action not asked for')
  t.ok(matcher(endpoint({ ignore: { mediatypes: ['a/b'] } }))(event('delete', { repository: 'x' })), 'a delete has no media type to ignore')
})

t.test('the signature verifies over the exact body and fails for any other', async (t) => {
  const secret = Buffer.from('k3y')
  const body = '{"events":[]}'
  const header = sign(secret, body)
  t.match(header, /^sha256=[0-9a-f]{64}$/)
  t.ok(verify(secret, body, header))
  t.notOk(verify(secret, `${body} `, header))
  t.notOk(verify(Buffer.from('other'), body, header))
  t.notOk(verify(secret, body, undefined))
})

t.test("backoff: registry:2's threshold (at once below it), then doubling from backoff up to max_backoff", async (t) => {
  const config = { threshold: 3, backoff: 1000, max_backoff: 5000 }
  t.same([0, 1, 2, 3, 4, 5, 6, 40].map((failures) => retryDelay(failures, config)), [0, 0, 0, 1000, 2000, 4000, 5000, 5000])
})

t.test('the store queue keeps order, survives reopening, dead-letters and retries', async (t) => {
  const file = join(dir, 'queue.db')
  let store = Store.open(file)
  let queue = storeQueue(store)
  const made = [1, 2, 3].map((n) => ({ ...event('push', { repository: `r${n}` }), id: `e${n}` }))
  await queue.add('a', made, 1000)
  await queue.add('b', made.slice(0, 1), 1000)
  store.close()
  store = Store.open(file)
  queue = storeQueue(store)
  await queueBehaviour(t, queue)
  store.close()
})

/** What both engines' queues do, from three events queued for 'a' and one for 'b'. */
async function queueBehaviour(t: Test, queue: ReturnType<typeof storeQueue>): Promise<void> {
  t.same((await queue.next('a', 10)).map((entry) => entry.event.id), ['e1', 'e2', 'e3'], 'in order')
  const [first, second] = await queue.next('a', 2)
  await queue.delivered('a', first!.seq, 5000)
  t.equal(await queue.failed('a', second!.seq, 'HTTP 500'), 1)
  await queue.deadLetter('a', second!.seq, 'HTTP 500')
  t.same((await queue.next('a', 10)).map((entry) => entry.event.id), ['e3'])
  t.same(await queue.counts('a'), { pending: 1, dead: 1, delivered: 1, failed: 1, lastSuccessAt: 5000 })
  t.same((await queue.list({ endpoint: 'a', dead: true })).map((entry) => [entry.event.id, entry.lastError]), [['e2', 'HTTP 500']])
  t.equal(await queue.retry('a'), 1)
  t.same((await queue.next('a', 10)).map((entry) => entry.event.id), ['e2', 'e3'], 'a retried dead letter goes back in its place')
  t.equal((await queue.counts('b')).pending, 1, 'endpoints have their own queues')
  t.same(await queue.queuedEndpoints(), new Map([['a', 2], ['b', 1]]))
}

t.test('postgres: the same queue on PostgreSQL; one instance at a time holds an endpoint (a lease, renewed by its holder, taken over once expired)', { skip: ENGINES.includes('postgres') ? false : 'no PostgreSQL server installed' }, async (t) => {
  const store = await openEngine(t, 'postgres')
  const queue = storeQueue(store)
  const made = [1, 2, 3].map((n) => ({ ...event('push', { repository: `r${n}` }), id: `e${n}` }))
  await queue.add('a', made, 1000)
  await queue.add('b', made.slice(0, 1), 1000)
  await queueBehaviour(t, queue)
  t.equal(await queue.claim('a', 'one', 60_000), true, 'a free endpoint is taken')
  t.equal(await queue.claim('a', 'two', 60_000), false, 'held by another: refused')
  t.equal(await queue.claim('a', 'one', 60_000), true, 'the holder renews')
  t.equal(await queue.claim('b', 'two', 60_000), true, 'endpoints are held separately')
  await queue.release('a', 'one')
  t.equal(await queue.claim('a', 'two', 1), true, 'released: taken at once')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal(await queue.claim('a', 'one', 60_000), true, 'expired: taken over')
  t.equal(await queue.claim('a', 'two', 60_000), false)
})

t.test('delivery to a real receiver: in order, registry:2 headers, signed; a receiver down then up gets every event once, in order', async (t) => {
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  const secretFile = join(dir, 'hook.secret')
  writeFileSync(secretFile, 'the-hook-secret\n')
  const store = Store.open(':memory:')
  t.teardown(() => store.close())
  const recorder = new Recorder(quiet, undefined, new RecentPushes(10))
  const config = eventsSection.parse({
    endpoints: [{ name: 'hook', url: receiver.url, headers: { Authorization: ['Bearer t0ken'] }, threshold: 2, backoff: '50ms', max_backoff: '200ms', secret_file: secretFile }],
  })
  const events = startEvents(config, { recorder, metrics: undefined, log: quiet, port: () => 5000, store })
  t.ok(events)
  t.teardown(() => events?.close())
  const push = (n: number): void => recorder.record(finished('PUT', `/v2/team/app/manifests/v${n}`, { status: 201, bytesReceived: n, contentDigest: D2, mediaType: 'application/vnd.oci.image.manifest.v1+json', requestId: `req-${n}` }))

  for (let n = 1; n <= 3; n++) push(n)
  const first = await receiver.waitFor(3)
  t.same(first.map((received) => received.target.tag), ['v1', 'v2', 'v3'])
  const delivery = receiver.deliveries[0]!
  t.equal(delivery.headers['content-type'], EVENTS_MEDIA_TYPE)
  t.equal(delivery.headers.authorization, 'Bearer t0ken')
  t.ok(verify(Buffer.from('the-hook-secret'), delivery.body, delivery.headers['x-portier-signature'] as string), 'signature verifies with the file\'s key')

  await receiver.down()
  for (let n = 4; n <= 8; n++) push(n)
  // Failing while down: the queue holds all of them.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal((await events?.status())?.[0]?.pending, 5)
  t.ok(((await events?.status())?.[0]?.failed ?? 0) >= 1, 'failed attempts are counted')
  receiver.status = 503
  await receiver.up()
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(receiver.events().length, 3, 'a 503 is a failure: nothing is taken as delivered')
  receiver.status = 200
  const all = await receiver.waitFor(8)
  t.same(all.map((received) => received.target.tag), ['v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8'], 'every event once, in order')
  t.equal(new Set(all.map((received) => received.id)).size, 8)
  await until(async () => (await events?.status())?.[0]?.pending === 0, 'the last answer counted')
  const status = (await events?.status())?.[0]
  t.equal(status?.pending, 0)
  t.equal(status?.delivered, 8)
  t.equal(status?.failingForSeconds, undefined)
})

t.test('an event older than deadletter_after that still fails goes to the dead-letter list; retry sends it again', async (t) => {
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())
  receiver.status = 500
  const store = Store.open(':memory:')
  t.teardown(() => store.close())
  const recorder = new Recorder(quiet, undefined, new RecentPushes(10))
  const config = eventsSection.parse({ endpoints: [{ name: 'hook', url: receiver.url, threshold: 1, backoff: '20ms', max_backoff: '20ms', deadletter_after: '100ms' }] })
  const events = startEvents(config, { recorder, metrics: undefined, log: quiet, port: () => 5000, store })
  t.teardown(() => events?.close())
  recorder.record(finished('DELETE', `/v2/team/app/manifests/${D2}`, { status: 202 }))
  for (let i = 0; i < 100 && (await events?.status())?.[0]?.dead !== 1; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.equal((await events?.status())?.[0]?.dead, 1)
  t.equal((await events?.status())?.[0]?.pending, 0)
  t.same((await events?.list({ dead: true }))?.map((entry) => entry.lastError), ['HTTP 500'])
  receiver.status = 200
  t.equal(await events?.retry('hook'), 1)
  const [received] = await receiver.waitFor(1)
  t.same(received?.target, { digest: D2, repository: 'team/app' })
})

t.test("the UI status panel's snapshot carries each endpoint's health (absent without endpoints)", async (t) => {
  const { createStatusSource } = await import('../../src/ui/status.js')
  const without = createStatusSource({ upstreams: [] }).snapshot()
  t.equal(without.webhooks, undefined)
  const snapshot = createStatusSource({
    upstreams: [],
    webhooks: () => [
      { name: 'hook', url: 'http://127.0.0.1:9/', disabled: false, pending: 3, dead: 1, delivered: 10, failed: 4, lastSuccessAgeSeconds: 12.5, failingForSeconds: 3 },
      { name: 'quiet', url: 'http://127.0.0.1:8/', disabled: true, pending: 0, dead: 0, delivered: 0, failed: 0, lastSuccessAgeSeconds: undefined, failingForSeconds: undefined },
    ],
  }).snapshot()
  t.same(snapshot.webhooks, [
    { name: 'hook', url: 'http://127.0.0.1:9/', disabled: false, pending: 3, dead: 1, delivered: 10, failed: 4, lastSuccessAgeSeconds: 12.5, failingForSeconds: 3 },
    { name: 'quiet', url: 'http://127.0.0.1:8/', disabled: true, pending: 0, dead: 0, delivered: 0, failed: 0 },
  ])
})

t.test("retention deletes and finished collections reach only the endpoints that list retention_delete / gc", async (t) => {
  const { announceRetentionDeletes, announceGc } = await import('../../src/events/housekeeping.js')
  const asked = await startReceiver()
  const notAsked = await startReceiver()
  t.teardown(() => Promise.all([asked.close(), notAsked.close()]))
  const store = Store.open(':memory:')
  t.teardown(() => store.close())
  const recorder = new Recorder(quiet, undefined, new RecentPushes(10))
  const config = eventsSection.parse({
    endpoints: [
      { name: 'asked', url: asked.url, actions: ['retention_delete', 'gc'] },
      { name: 'not-asked', url: notAsked.url },
    ],
  })
  const events = startEvents(config, { recorder, metrics: undefined, log: quiet, port: () => 5000, store })
  t.teardown(() => events?.close())
  if (!events) throw new Error('no events')
  const forgotten: string[] = []
  const times = announceRetentionDeletes({ tagTimes: async () => [], manifestTimes: async () => [], deleted: (repository, reference) => void forgotten.push(`${repository}@${reference}`) }, events)
  times.deleted('team/app', D1)
  announceGc(events, { dryRun: true, result: 'success', trigger: 'api', by: 'root' })
  announceGc(events, { dryRun: false, result: 'success', trigger: 'schedule' })
  // A push the other endpoint does get, so "nothing arrived" is not a receiver that was never reached.
  recorder.record(finished('PUT', '/v2/team/app/manifests/v1', { status: 201, bytesReceived: 1, contentDigest: D2, mediaType: 'application/vnd.oci.image.manifest.v1+json' }))
  const received = await asked.waitFor(3)
  await notAsked.waitFor(1)
  t.same(forgotten, [`team/app@${D1}`], "retention's own bookkeeping still runs")
  t.same(received.map((event) => [event.action, event.target, event.actor]), [
    ['retention_delete', { digest: D1, repository: 'team/app' }, { name: 'portier-retention' }],
    ['gc', {}, { name: 'portier-schedule' }],
    ['push', { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 1, digest: D2, length: 1, repository: 'team/app', url: `https://registry.example.com/v2/team/app/manifests/${D2}`, tag: 'v1' }, { name: 'alice' }],
  ], 'a dry run is not announced')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(notAsked.events().map((event) => event.action), ['push'])
})

t.test('check-config: files the events endpoints name are checked with the rest (key, expected, found)', async (t) => {
  const { fileProblems } = await import('../../src/app/config-files.js')
  const file = yamlFile('with-files.yaml', `
store: { path: ${JSON.stringify(join(dir, 'files-store.db'))} }
events:
  endpoints:
    - name: hook
      url: https://127.0.0.1:9/
      secret_file: ${JSON.stringify(join(dir, 'no-such-secret'))}
`)
  const { config } = loadConfig({ file, env: {} })
  const problems = (await fileProblems(config, file)).filter((problem) => problem.key.startsWith('events.'))
  t.same(problems.map((problem) => [problem.source, problem.key, problem.expected]), [[file, 'events.endpoints[0].secret_file', 'a readable file holding the HMAC key']])
  t.match(problems[0]?.found, /no-such-secret/)
})

t.test('events queued for an endpoint no longer configured are kept and named in a warning at start', async (t) => {
  const store = Store.open(':memory:')
  t.teardown(() => store.close())
  await storeQueue(store).add('removed-hook', [event('push', { repository: 'a' }), event('push', { repository: 'b' })])
  const lines: Array<{ msg: string; endpoint?: string; events?: number }> = []
  const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) })
  const events = startEvents(eventsSection.parse({ endpoints: [{ name: 'hook', url: 'http://127.0.0.1:9/', disabled: true }] }), { recorder: new Recorder(quiet, undefined, new RecentPushes(10)), metrics: undefined, log, port: () => 1, store })
  t.teardown(() => events?.close())
  t.same((await events?.list({ endpoint: 'removed-hook' }))?.length, 2)
  t.match(lines, [{ endpoint: 'removed-hook', events: 2, msg: /no longer in events.endpoints/ }])
})

t.test("an HTTPS receiver with a CA of its own: delivered with tls.ca_file, refused (and kept pending) without", async (t) => {
  const { run } = await import('../helpers/exec.js')
  const tlsDir = mkdtempSync(join(dir, 'tls-'))
  const openssl = async (...args: string[]): Promise<void> => {
    const result = await run('openssl', args, { cwd: tlsDir })
    if (result.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`)
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=receiver CA', '-days', '2')
  writeFileSync(join(tlsDir, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=receiver')
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext')
  const receiver = await startReceiver('/api/notification', { cert: readFileSync(join(tlsDir, 'server.crt')), key: readFileSync(join(tlsDir, 'server.key')) })
  t.teardown(() => receiver.close())
  t.match(receiver.url, /^https:\/\//)
  const store = Store.open(':memory:')
  t.teardown(() => store.close())
  const recorder = new Recorder(quiet, undefined, new RecentPushes(10))
  const config = eventsSection.parse({
    endpoints: [
      { name: 'trusting', url: receiver.url, tls: { ca_file: join(tlsDir, 'ca.crt') } },
      { name: 'system-roots', url: receiver.url, threshold: 1, backoff: '50ms', max_backoff: '100ms' },
    ],
  })
  const events = startEvents(config, { recorder, metrics: undefined, log: quiet, port: () => 5000, store })
  t.teardown(() => events?.close())
  recorder.record(finished('PUT', '/v2/team/app/manifests/v1', { status: 201, bytesReceived: 1, contentDigest: D2, mediaType: 'application/vnd.oci.image.manifest.v1+json' }))
  const [received] = await receiver.waitFor(1)
  t.equal(received?.target.tag, 'v1', 'the endpoint with ca_file delivered')
  const statusOf = async (name: string) => (await events?.status())?.find((endpoint) => endpoint.name === name)
  await until(async () => ((await statusOf('system-roots'))?.failed ?? 0) >= 1, 'a failed attempt without ca_file')
  const untrusted = (await events?.list({ endpoint: 'system-roots' }))?.[0]
  t.equal(untrusted?.dead, false, 'the event waits in the queue')
  t.match(untrusted?.lastError, /certificate|issuer/i, `the certificate was refused (${untrusted?.lastError ?? ''})`)
  t.equal(receiver.events().length, 1, 'nothing reached the receiver without the CA')
  await until(async () => (await statusOf('trusting'))?.pending === 0, 'the trusting endpoint\'s queue drained')
  t.equal((await statusOf('trusting'))?.delivered, 1)
})
