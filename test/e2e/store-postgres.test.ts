// Several instances, one store: three real gateways sharing one PostgreSQL (Debian's server on 127.0.0.1) and one docker-registry; 100 pushes spread over them make 100 webhook events, each delivered once, with PostgreSQL killed and restarted mid-run.
import t from 'tap'
import { request } from 'undici'
import pg from 'pg'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { GatewayClient, sha256 } from '../helpers/gwclient.js'
import { startReceiver, type ReceivedEvent } from '../helpers/receiver.js'
import { startPostgres } from '../helpers/postgres.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const EVENTS = 100
const REPOSITORY = 'team/app'

/** Waits (bounded in count and time) until `done` holds. */
async function until(done: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (let round = 0; !(await done()); round++) {
    if (Date.now() > deadline || round > 10_000) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function readyz(gateway: GatewayHandle): Promise<{ status: number; body: { status: string; checks: Array<{ name: string; ready: boolean; detail?: { reason?: string } }> } }> {
  const response = await request(`${gateway.adminUrl}/readyz`)
  return { status: response.statusCode, body: (await response.body.json()) as { status: string; checks: Array<{ name: string; ready: boolean; detail?: { reason?: string } }> } }
}

async function metric(gateway: GatewayHandle, name: string): Promise<string | undefined> {
  const response = await request(`${gateway.adminUrl}/metrics`)
  const text = await response.body.text()
  return text.split('\n').find((line) => line.startsWith(name))
}

t.test('three instances, one PostgreSQL: 100 events delivered exactly once each, none lost when PostgreSQL is killed mid-run; times and audit from all three in one store', async (t) => {
  const postgres = await startPostgres()
  t.teardown(() => postgres.stop())
  const registry = await registryFixture(t)
  const receiver = await startReceiver()
  t.teardown(() => receiver.close())

  const config = {
    upstreams: [{ url: registry.url }],
    // The password from a file, not the URL (what a deployment does with a secret).
    store: { url: postgres.urlWithoutPassword, password_file: postgres.passwordFile, flush_interval: '200ms', scan: false, connect_timeout: '2s' },
    events: {
      endpoints: [{
        name: 'listener', url: receiver.url, timeout: '2s', threshold: 2, backoff: '100ms', max_backoff: '500ms',
        // Manifest pushes only: one event per PUT.
        ignore: { mediatypes: ['application/octet-stream'] },
      }],
    },
  }
  // Started together: the three migrate the same empty database at once (one at a time, under the advisory lock).
  const gateways = await Promise.all([0, 1, 2].map(() => gatewayFixture(t, { config })))
  const clients = gateways.map((gateway) => new GatewayClient(gateway))
  t.teardown(() => clients.forEach((client) => client.close()))
  for (const gateway of gateways) t.equal((await readyz(gateway)).status, 200, 'ready with PostgreSQL up')

  // The blobs once (through the first instance); then manifests that name them.
  const configBlob = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const layer = Buffer.from('a layer of the shared image\n'.repeat(100))
  for (const blob of [configBlob, layer]) {
    const reply = await clients[0]!.send('POST', `/v2/${REPOSITORY}/blobs/uploads/?digest=${sha256(blob)}`, { body: blob, headers: { 'content-type': 'application/octet-stream' } })
    t.equal(reply.status, 201, 'blob pushed')
  }
  const manifest = (n: number): Buffer => Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(configBlob), size: configBlob.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    annotations: { n: String(n) },
  }))
  const push = async (n: number): Promise<void> => {
    const client = clients[n % 3] as GatewayClient
    const reply = await client.send('PUT', `/v2/${REPOSITORY}/manifests/t${n}`, { body: manifest(n), headers: { 'content-type': OCI_MANIFEST } })
    if (reply.status !== 201) throw new Error(`PUT t${n} through instance ${n % 3}: ${reply.status} ${reply.body.toString()}`)
  }
  const pushRange = async (from: number, to: number): Promise<void> => {
    // Ten at a time, spread over the three instances.
    for (let start = from; start <= to; start += 10) await Promise.all(Array.from({ length: Math.min(10, to - start + 1) }, (_, i) => push(start + i)))
  }

  await pushRange(1, EVENTS / 2)
  // Killed while the first half is still being delivered (no wait here).
  await postgres.kill()
  for (const [index, gateway] of gateways.entries()) {
    await until(async () => (await readyz(gateway)).status === 503, `instance ${index} not ready while PostgreSQL is down`, 20_000)
    const { body } = await readyz(gateway)
    const store = body.checks.find((check) => check.name === 'store')
    t.equal(store?.ready, false, `instance ${index}: /readyz names the store`)
    t.match(store?.detail?.reason, /PostgreSQL .* does not answer/, 'and says why')
  }
  t.match(await metric(gateways[0]!, 'portier_store_up'), /portier_store_up\{engine="postgres"\} 0/, 'portier_store_up is 0')
  // Pushes go on (the registry is up); their events, times and audit entries wait in each instance.
  await pushRange(EVENTS / 2 + 1, EVENTS)
  await new Promise((resolve) => setTimeout(resolve, 1500))
  await postgres.start()
  for (const [index, gateway] of gateways.entries()) {
    await until(async () => (await readyz(gateway)).status === 200, `instance ${index} ready again`, 30_000)
  }
  t.match(await metric(gateways[0]!, 'portier_store_up'), /portier_store_up\{engine="postgres"\} 1/, 'portier_store_up is 1 again')

  await receiver.waitFor(EVENTS, 90_000)
  // The queue empty in the shared store: nothing left to send (so nothing more can arrive).
  const db = new pg.Client({ connectionString: postgres.url })
  await db.connect()
  t.teardown(() => db.end())
  const count = async (sql: string, params: unknown[] = []): Promise<number> => Number((await db.query<{ n: string }>(sql, params)).rows[0]?.n ?? -1)
  await until(async () => (await count('SELECT count(*) AS n FROM event_deliveries')) === 0, 'the shared queue is empty', 30_000)
  await new Promise((resolve) => setTimeout(resolve, 1500))

  const received = receiver.events()
  const byId = new Map<string, ReceivedEvent[]>()
  for (const event of received) byId.set(event.id, [...(byId.get(event.id) ?? []), event])
  const twice = [...byId.values()].filter((copies) => copies.length > 1)
  t.equal(twice.length, 0, 'no event delivered twice')
  t.equal(byId.size, EVENTS, `${EVENTS} distinct events`)
  const tags = new Set(received.map((event) => event.target.tag))
  t.same([...tags].sort(), Array.from({ length: EVENTS }, (_, i) => `t${i + 1}`).sort(), 'one event per push, none lost (half were made while PostgreSQL was down)')
  t.same(new Set(received.map((event) => (event.source as { instanceID?: string }).instanceID)).size, 3, 'made at all three instances')
  t.equal(await count('SELECT delivered AS n FROM event_endpoint_totals WHERE endpoint = $1', ['listener']), EVENTS, 'the shared totals count each once')

  // A pull of t1 through each instance: one row, three pulls.
  for (const client of clients) t.equal((await client.send('GET', `/v2/${REPOSITORY}/manifests/t1`, { headers: { accept: OCI_MANIFEST } })).status, 200)
  await until(async () => (await count('SELECT pulls AS n FROM tag_times WHERE repository = $1 AND tag = $2', [REPOSITORY, 't1'])) === 3, 'three pulls of t1 in the shared store', 10_000)
  t.equal(await count('SELECT count(*) AS n FROM tag_times WHERE repository = $1 AND last_pushed_at IS NOT NULL', [REPOSITORY]), EVENTS, 'push times of every tag, from all three instances, including those pushed while PostgreSQL was down')
  await until(async () => (await count("SELECT count(*) AS n FROM audit_log WHERE action = 'manifest.push'")) === EVENTS, 'every push audited', 10_000)
  t.equal(await count("SELECT count(*) AS n FROM audit_log WHERE action = 'manifest.push'"), EVENTS, 'one audit entry per push in the one store')

  // Any instance answers for all: the admin API of the second reads what the third recorded.
  const times = (await (await request(`${gateways[1]!.adminUrl}/admin/api/times?repo=${encodeURIComponent(REPOSITORY)}`)).body.json()) as { tags: Array<{ tag: string; pulls: number }> }
  t.equal(times.tags.length, EVENTS)
  t.equal(times.tags.find((tag) => tag.tag === 't1')?.pulls, 3)
  const audit = (await (await request(`${gateways[1]!.adminUrl}/admin/api/audit?action=manifest.push&limit=1000`)).body.json()) as { entries: Array<{ tag: string }> }
  t.equal(new Set(audit.entries.map((entry) => entry.tag)).size, EVENTS)
  t.equal(await count("SELECT count(*) AS n FROM schema_migrations WHERE module = 'events'"), 1, 'migrated once')
})
