// Three gateway instances in front of one registry, sharing hot state in a real redis-server (issue 20): a lockout,
// a sign-out, the maintenance switch and a tag move at one instance hold at the others; killing Redis loses no upload.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { redisFixture } from '../helpers/redis.js'
import { sha256, waitUntil, type Reply } from '../helpers/gwclient.js'
import { startInstances, type Instance } from '../helpers/schedule.js'
import { hashPassword } from '../../src/auth/hashes.js'

const PASSWORDS = { root: 'root-password-1', alice: 'alice-password-1', carol: 'carol-password-1' }
const basic = (user: string, password?: string): string =>
  `Basic ${Buffer.from(`${user}:${password ?? PASSWORDS[user as keyof typeof PASSWORDS]}`).toString('base64')}`
const ROOT = basic('root')
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const SESSION_SECRET = 'shared-session-secret-for-three-instances-0123456789'

/** Values of a metric's lines from one scrape of an instance's admin listener. */
async function metric(instance: Instance, line: string): Promise<number> {
  const text = await (await fetch(`${instance.gateway.adminUrl as string}/metrics`)).text()
  const found = text.split('\n').find((entry) => entry.startsWith(`${line} `))
  return found === undefined ? Number.NaN : Number(found.split(' ')[1])
}

async function maintenanceOf(instance: Instance): Promise<{ on: boolean; message: string }> {
  return (await (await fetch(`${instance.gateway.adminUrl as string}/admin/api/maintenance`)).json()) as { on: boolean; message: string }
}

async function switchMaintenance(instance: Instance, body: Record<string, unknown>): Promise<number> {
  const answer = await fetch(`${instance.gateway.adminUrl as string}/admin/api/maintenance`, {
    method: 'PUT',
    headers: { authorization: ROOT, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  await answer.arrayBuffer()
  return answer.status
}

/** Stores a blob through an instance: POST then PUT with the digest (one request body). */
async function pushBlob(instance: Instance, repository: string, data: Buffer): Promise<string> {
  const digest = sha256(data)
  const started = await instance.client.send('POST', `/v2/${repository}/blobs/uploads/`, { headers: { authorization: ROOT } })
  if (started.status !== 202) throw new Error(`POST upload at ${instance.name}: ${started.status} ${started.body.toString()}`)
  const location = instance.client.pathOf(started.headers.location)
  const done = await instance.client.send('PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, {
    headers: { authorization: ROOT, 'content-type': 'application/octet-stream' },
    body: data,
  })
  if (done.status !== 201) throw new Error(`PUT blob at ${instance.name}: ${done.status} ${done.body.toString()}`)
  return digest
}

/** Pushes a one-config image under `tag` through an instance; returns the manifest digest. */
async function pushImage(instance: Instance, repository: string, tag: string, label: string): Promise<string> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Labels: { label } }, rootfs: { type: 'layers', diff_ids: [] } }))
  const configDigest = await pushBlob(instance, repository, config)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] }))
  const put = await instance.client.send('PUT', `/v2/${repository}/manifests/${tag}`, { headers: { authorization: ROOT, 'content-type': OCI_MANIFEST }, body: manifest })
  if (put.status !== 201) throw new Error(`PUT manifest at ${instance.name}: ${put.status} ${put.body.toString()}`)
  return sha256(manifest)
}

function headManifest(instance: Instance, repository: string, tag: string): Promise<Reply> {
  return instance.client.send('HEAD', `/v2/${repository}/manifests/${tag}`, { headers: { authorization: ROOT, accept: OCI_MANIFEST } })
}

t.test('three instances, one registry, one Redis', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-shared-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, (await Promise.all(Object.entries(PASSWORDS).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))).join(''))
  const config = {
    upstreams: [{ url: registry.url }],
    auth: {
      mode: 'htpasswd',
      htpasswd: { path: htpasswd },
      acl: [{ match: { account: 'root' }, actions: ['*'] }, { match: { account: '*' }, actions: ['pull'] }],
      throttle: { max_failures: 3, window: '5m', lockout: '5m' },
    },
    ui: { session_secret: SESSION_SECRET, admin_users: ['root'] },
    // Long enough that only an invalidation from another instance explains a fresh answer.
    cache: { tags: { ttl: '10m' } },
    shared: { redis: { url: redis.url, key_prefix: 'e2e:' } },
  }
  const instances = await startInstances(t, ['A', 'B', 'C'], config)
  const [a, b, c] = instances as [Instance, Instance, Instance]
  for (const instance of instances) {
    t.equal(await metric(instance, 'portier_shared_up{engine="redis"}'), 1, `${instance.name}: portier_shared_up 1`)
  }

  t.test('a lockout earned at A and B refuses the right password at C', async (t) => {
    for (const [instance, attempt] of [[a, 1], [a, 2], [b, 3], [b, 4]] as const) {
      const wrong = await instance.client.send('GET', '/v2/', { headers: { authorization: basic('carol', `guess-${attempt}`) } })
      t.equal(wrong.status, 401, `wrong password ${attempt} at ${instance.name}: 401`)
    }
    // Four failures in all (max_failures 3): neither A nor B saw more than two.
    const atC = await c.client.send('GET', '/v2/', { headers: { authorization: basic('carol') } })
    t.equal(atC.status, 429, 'C refuses the right password')
    t.equal(atC.errorCode(), 'TOOMANYREQUESTS')
    t.ok(Number(atC.headers['retry-after']) > 200, `Retry-After ${String(atC.headers['retry-after'])} s (lockout 5m)`)
    t.equal((await a.client.send('GET', '/v2/', { headers: { authorization: basic('carol') } })).status, 429, 'A refuses it too')
    t.equal((await c.client.send('GET', '/v2/', { headers: { authorization: basic('alice') } })).status, 200, 'another user at C is not affected')
  })

  t.test('a sign-out at A refuses the cookie at B and C', async (t) => {
    const login = await a.client.send('POST', '/ui/api/login', {
      headers: { origin: a.gateway.url, 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'alice', password: PASSWORDS.alice }),
    })
    t.equal(login.status, 200)
    const cookie = String(login.headers['set-cookie']).split(';')[0] ?? ''
    t.match(cookie, /^__Host-portier-ui=v1\./)
    const csrfToken = (login.json() as { csrfToken: string }).csrfToken
    t.equal((await b.client.send('GET', '/ui/api/session', { headers: { cookie } })).status, 200, 'B accepts the session A issued (shared secret)')
    const logout = await a.client.send('POST', '/ui/api/logout', { headers: { origin: a.gateway.url, cookie, 'x-csrf-token': csrfToken } })
    t.equal(logout.status, 200)
    const atB = await b.client.send('GET', '/ui/api/session', { headers: { cookie } })
    t.equal(atB.status, 401, 'B refuses the signed-out cookie')
    t.equal(atB.errorCode(), 'UNAUTHORIZED')
    t.equal((await c.client.send('GET', '/ui/api/repositories', { headers: { cookie } })).status, 401, 'C too')
  })

  t.test('maintenance switched on at B holds at A and C; off at C frees A and B', async (t) => {
    t.equal(await switchMaintenance(b, { on: true, message: 'moving the disks' }), 200)
    t.ok(await waitUntil(async () => (await maintenanceOf(a)).on && (await maintenanceOf(c)).on), 'A and C are in maintenance')
    t.equal((await maintenanceOf(c)).message, 'moving the disks', 'with B\'s message')
    const refused = await a.client.send('POST', '/v2/switch/app/blobs/uploads/', { headers: { authorization: ROOT } })
    t.equal(refused.status, 405, 'a push at A is refused')
    t.equal(refused.errorCode(), 'UNSUPPORTED')
    t.match(refused.body.toString(), /moving the disks/)
    t.equal((await headManifest(c, 'none/app', 'v1')).status, 404, 'reads go on at C')
    t.equal(await metric(a, 'portier_maintenance'), 1)

    t.equal(await switchMaintenance(c, { on: false }), 200)
    t.ok(await waitUntil(async () => !(await maintenanceOf(a)).on && !(await maintenanceOf(b)).on), 'A and B left maintenance')
    const accepted = await a.client.send('POST', '/v2/switch/app/blobs/uploads/', { headers: { authorization: ROOT } })
    t.equal(accepted.status, 202, 'a push at A is accepted again')
    await a.client.send('DELETE', a.client.pathOf(accepted.headers.location), { headers: { authorization: ROOT } })
  })

  t.test('a push through A invalidates B\'s tag cache', async (t) => {
    const first = await pushImage(a, 'team/app', 'v1', 'one')
    const hitsBefore = await metric(b, 'portier_tag_cache_hits_total')
    t.equal((await headManifest(b, 'team/app', 'v1')).headers['docker-content-digest'], first, 'B resolves v1')
    t.equal((await headManifest(b, 'team/app', 'v1')).headers['docker-content-digest'], first, 'from its tag cache the second time')
    t.equal(await metric(b, 'portier_tag_cache_hits_total'), hitsBefore + 1, 'one tag cache hit at B')
    const second = await pushImage(a, 'team/app', 'v1', 'two')
    t.not(second, first)
    const after = await headManifest(b, 'team/app', 'v1')
    t.equal(after.status, 200)
    t.equal(after.headers['docker-content-digest'], second, 'B names the new digest at once (its cache TTL is 10 minutes)')
    const direct = await fetch(`${registry.url}/v2/team/app/manifests/v1`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } })
    t.equal(direct.headers.get('docker-content-digest'), second, 'as the registry does')
  })

  t.test('killing Redis mid-upload loses no upload; instances say so and serve on; Redis back, shared again', async (t) => {
    const chunks = [Buffer.alloc(256 * 1024, 1), Buffer.alloc(256 * 1024, 2), Buffer.alloc(100 * 1024, 3)]
    const whole = Buffer.concat(chunks)
    const started = await a.client.send('POST', '/v2/team/big/blobs/uploads/', { headers: { authorization: ROOT } })
    t.equal(started.status, 202)
    let location = a.client.pathOf(started.headers.location)
    let offset = 0
    const patch = async (instance: Instance, chunk: Buffer): Promise<void> => {
      const answer = await instance.client.send('PATCH', location, {
        headers: { authorization: ROOT, 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` },
        body: chunk,
      })
      t.equal(answer.status, 202, `PATCH at ${instance.name}: 202`)
      offset += chunk.length
      t.equal(answer.headers.range, `0-${offset - 1}`)
      location = instance.client.pathOf(answer.headers.location)
    }
    await patch(a, chunks[0] as Buffer)

    await redis.kill()
    for (const instance of instances) {
      t.ok(await waitUntil(async () => (await metric(instance, 'portier_shared_up{engine="redis"}')) === 0), `${instance.name}: portier_shared_up 0`)
    }
    await patch(b, chunks[1] as Buffer)
    await patch(c, chunks[2] as Buffer)
    const finished = await a.client.send('PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${sha256(whole)}`, { headers: { authorization: ROOT } })
    t.equal(finished.status, 201, 'the upload finishes at A with Redis gone')
    t.equal(finished.headers['docker-content-digest'], sha256(whole))
    const stored = await fetch(`${registry.url}/v2/team/big/blobs/${sha256(whole)}`)
    t.equal(stored.status, 200)
    t.equal(sha256(Buffer.from(await stored.arrayBuffer())), sha256(whole), 'the registry holds every byte')

    const ready = await fetch(`${b.gateway.adminUrl as string}/readyz`)
    t.equal(ready.status, 200, 'still ready: the gateway serves from its local fallbacks')
    const checks = ((await ready.json()) as { checks: Array<{ name: string; ready: boolean; detail?: { up?: boolean; fallback?: string } }> }).checks
    const sharedCheck = checks.find((check) => check.name === 'shared')
    t.equal(sharedCheck?.detail?.up, false, '/readyz says Redis is down')
    t.match(sharedCheck?.detail?.fallback ?? '', /local throttle counters/)
    await b.gateway.logsSettled()
    t.equal(b.gateway.logs.filter((line) => line.msg.startsWith('shared state: Redis is unreachable')).length, 1, 'logged once')
    t.equal((await c.client.send('GET', '/v2/', { headers: { authorization: basic('alice') } })).status, 200, 'authentication works from the local state')
    t.equal((await c.client.send('GET', '/v2/', { headers: { authorization: basic('carol') } })).status, 429, 'the lock C adopted holds')
    t.equal((await maintenanceOf(a)).on, false, 'maintenance keeps its last known state')

    await redis.restart()
    for (const instance of instances) {
      t.ok(await waitUntil(async () => (await metric(instance, 'portier_shared_up{engine="redis"}')) === 1, 10_000), `${instance.name}: back up`)
    }
    t.equal(await switchMaintenance(c, { on: true }), 200)
    t.ok(await waitUntil(async () => (await maintenanceOf(a)).on && (await maintenanceOf(b)).on), 'switches are shared again')
    t.equal(await switchMaintenance(a, { on: false }), 200)
    await b.gateway.logsSettled()
    t.ok(b.gateway.logs.some((line) => line.msg.startsWith('shared state: Redis is reachable')), 'the way back is logged')
  })
  t.end()
})

t.test('uploads into storage across instances on Redis: a PUT at B takes the sha256 of the PATCH at A (sealed with the shared routing.secret); an instance with another secret reads the data', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const shared = { redis: { url: redis.url, key_prefix: 'e2e-hash:' } }
  const upstreams = [{ url: registry.url, name: 'disk', storage: registry.storageDir, storage_uploads: true }]
  const fleet = { upstreams, shared, routing: { secret: 'the routing secret of this fleet, 0123456789abcdef' } }
  const [a, b] = (await startInstances(t, ['A', 'B'], fleet)) as [Instance, Instance]
  const [stranger] = (await startInstances(t, ['C'], { upstreams, shared, routing: { secret: 'another fleet\'s routing secret, 0123456789abcdef' } })) as [Instance]
  const digests = async (instance: Instance, source: string): Promise<number> => {
    const found = await metric(instance, `portier_blob_storage_upload_digests_total{source="${source}"}`)
    return Number.isNaN(found) ? 0 : found
  }
  /** POST and PATCH `bytes` at `first`, PUT at `second`; returns the PUT's answer. */
  const crossInstances = async (first: Instance, second: Instance, bytes: Buffer): Promise<Reply> => {
    const post = await first.client.send('POST', '/v2/team/crossed/blobs/uploads/')
    t.equal(post.status, 202, `upload started at ${first.name}`)
    const patch = await first.client.send('PATCH', first.client.pathOf(post.headers.location), { headers: { 'content-type': 'application/octet-stream' }, body: bytes })
    t.equal(patch.status, 202, `PATCH at ${first.name}`)
    const at = first.client.pathOf(patch.headers.location)
    return second.client.send('PUT', `${at}${at.includes('?') ? '&' : '?'}digest=${sha256(bytes)}`)
  }

  /** A 3 MiB blob PATCHed at `first` and committed at `second`; `second`'s sha256 must come from `source`. */
  const commitAcross = async (first: Instance, second: Instance, fill: number, source: 'peer' | 'read', why: string): Promise<void> => {
    const bytes = Buffer.alloc(3 * 1024 * 1024, fill)
    const before = { peer: await digests(second, 'peer'), read: await digests(second, 'read') }
    const put = await crossInstances(first, second, bytes)
    t.equal(put.status, 201, `PUT at ${second.name}: created`)
    t.equal(put.headers['docker-content-digest'], sha256(bytes))
    t.equal(await digests(second, source) - before[source], 1, why)
    const other = source === 'peer' ? 'read' : 'peer'
    t.equal(await digests(second, other) - before[other], 0, `and not from ${other}`)
    const back = await second.client.send('GET', `/v2/team/crossed/blobs/${sha256(bytes)}`)
    t.ok(back.body.equals(bytes), 'the blob reads back whole')
  }
  // What crosses Redis meanwhile, as anyone who can SUBSCRIBE there sees it.
  const onRedis: string[] = []
  const listener = connect({ host: '127.0.0.1', port: redis.port })
  listener.setEncoding('utf8').on('data', (chunk: string) => onRedis.push(chunk))
  listener.on('error', () => undefined)
  t.teardown(() => listener.destroy())
  listener.write(`*2\r\n$9\r\nSUBSCRIBE\r\n$${'e2e-hash:bus'.length}\r\ne2e-hash:bus\r\n`)
  t.ok(await waitUntil(() => onRedis.join('').includes('subscribe'), 5_000), 'subscribed to the fleet\'s channel')
  await commitAcross(a, b, 7, 'peer', 'B took the sha256 from A over Redis')
  const seen = onRedis.join('')
  const hashMessages = seen.split('\r\n').filter((line) => line.includes('storage-upload-hash'))
  t.ok(hashMessages.length >= 2, `the question and the answer crossed Redis (${hashMessages.length} messages)`)
  t.ok(hashMessages.every((line) => /\\?"sealed\\?":/.test(line)), 'sealed')
  const blob = sha256(Buffer.alloc(3 * 1024 * 1024, 7)).slice('sha256:'.length)
  for (const secret of [blob, '_uploads', 'team/crossed', registry.storageDir]) t.notOk(seen.includes(secret), `nothing on Redis names ${secret === blob ? 'the digest' : secret}`)
  await commitAcross(a, stranger, 8, 'read', 'C (another routing.secret) read the data: A seals with another key, so C does not ask it')
})
