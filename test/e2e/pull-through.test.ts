// Pull-through caches (caches): a real docker-registry with TLS (its own CA) and basic auth is the remote; Portier pulls through an embedded registry in proxy mode per cache, revalidates tags, serves when the remote is down, refuses pushes, and serves podman as a docker.io mirror.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Pool } from 'undici'
import { run } from '../helpers/exec.js'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, sha256, sleep, waitUntil } from '../helpers/gwclient.js'
import { buildLayout, type BuiltLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { MT_OCI_MANIFEST } from '../helpers/oci.js'
import { makeTestPki } from '../helpers/pki.js'
import { hashPassword } from '../../src/auth/hashes.js'

// Short and lower case: podman's runroot must stay under 50 characters.
const work = join(tmpdir(), `portier-pt-${randomBytes(4).toString('hex')}`)
await mkdir(work)
t.teardown(() => rm(work, { recursive: true, force: true }))
const file = (name: string): string => join(work, name)

// The remote's own CA and a server certificate for 127.0.0.1 (nothing in the system pool trusts it).
const remoteTls = await makeTestPki(work, { ca: 'portier test remote CA', server: 'portier test remote' })
// skopeo reads extra roots from *.crt files in a directory.
await mkdir(file('remote-certs'))
await writeFile(file('remote-certs/ca.crt'), await readFile(file('ca.crt')))
const htpasswd = await run('htpasswd', ['-Bbn', 'mirror', 'mirror-secret'])
await writeFile(file('remote.htpasswd'), htpasswd.stdout)
await writeFile(file('remote.password'), 'mirror-secret\n')

const remoteStorage = file('remote-storage')
await mkdir(remoteStorage)
const remoteSecret = `remote-${randomBytes(8).toString('hex')}`
const remote: RegistryHandle = await registryFixture(t, { tls: remoteTls, htpasswd: file('remote.htpasswd'), storageDir: remoteStorage, secret: remoteSecret })
const remoteCreds = { destCreds: 'mirror:mirror-secret', destCertDir: file('remote-certs'), srcCreds: 'mirror:mirror-secret', srcCertDir: file('remote-certs') }

/** Builds an image of three random layers and pushes it to the remote as repository:tag. */
async function pushToRemote(repository: string, tag: string, layers: number[] = [300_000, 200_000, 100_000]): Promise<BuiltLayout> {
  const layout = await buildLayout(join(work, `layout-${randomBytes(4).toString('hex')}`), tag, [{ layers, tar: true }])
  const pushed = await skopeoCopy(`oci:${layout.dir}:${tag}`, `docker://${remote.url.slice('https://'.length)}/${repository}:${tag}`, remoteCreds)
  if (pushed.code !== 0) throw new Error(`push to the remote: ${pushed.stderr}`)
  return layout
}

/** The blob GETs the remote logged (its access log), each as "repository digest". */
async function remoteBlobGets(): Promise<string[]> {
  const log = await remote.log()
  return [...log.matchAll(/"GET \/v2\/(.+?)\/blobs\/(sha256:[0-9a-f]{64}) HTTP/g)].map((match) => `${match[1]} ${match[2]}`)
}


/**
 * A test double of a remote's rate limit (Docker Hub's 429s), in front of the real remote: it passes
 * every request on (plain HTTP in, the remote's TLS out) and, while `limit` is set, answers requests
 * under /v2/<name>/ with 429 and that Retry-After instead. `GET /v2/` always passes (the probe).
 */
async function rateLimitFront(): Promise<{ url: string; limit: string | undefined; refused: number; close: () => Promise<void> }> {
  const pool = new Pool(remote.url, { connect: { ca: await readFile(file('ca.crt'), 'utf8') } })
  const hopByHop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'upgrade', 'te', 'trailer'])
  const endToEnd = (headers: IncomingHttpHeaders): Record<string, string | string[]> =>
    Object.fromEntries(Object.entries(headers).filter((entry): entry is [string, string | string[]] => entry[1] !== undefined && !hopByHop.has(entry[0])))
  const state = {
    url: '',
    limit: undefined as string | undefined,
    refused: 0,
    close: async (): Promise<void> => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await pool.close()
    },
  }
  const server = createServer((req, res) => {
    req.resume()
    if (state.limit !== undefined && /^\/v2\/.+/.test(req.url ?? '')) {
      state.refused++
      res.writeHead(429, { 'retry-after': state.limit, 'content-type': 'application/json' })
      res.end(JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'pull rate limit reached' }] }))
      return
    }
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET'
    pool.request({ method, path: req.url ?? '/', headers: endToEnd(req.headers) }).then(
      (answer) => {
        res.writeHead(answer.statusCode, endToEnd(answer.headers))
        answer.body.on('error', () => res.destroy())
        answer.body.pipe(res)
      },
      () => res.destroy(),
    )
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const address = server.address()
  if (typeof address !== 'object' || address === null) throw new Error('the front has no address')
  state.url = `http://127.0.0.1:${address.port}`
  return state
}

const image = await pushToRemote('library/alpine', 'v1')
const front = await rateLimitFront()
t.teardown(() => front.close())
const gatewayConfig = {
  upstreams: [{ url: (await registryFixture(t)).url }],
  auth: { mode: 'none' },
  metrics: { enabled: true },
  admin: { on_main_listener: true },
  caches: [
    { prefix: 'hub', remote: remote.url, username: 'mirror', password_file: file('remote.password'), ca_file: file('ca.crt'), revalidate: '1h', docker_hub_library: 'on', mirror_of: ['docker.io'], unprefixed: true },
    { prefix: 'quick', remote: remote.url, username: 'mirror', password_file: file('remote.password'), ca_file: file('ca.crt'), revalidate: '1s' },
    { prefix: 'small', remote: remote.url, username: 'mirror', password_file: file('remote.password'), ca_file: file('ca.crt'), max_bytes: '1MiB', eviction_interval: '1s' },
    { prefix: 'aged', remote: remote.url, username: 'mirror', password_file: file('remote.password'), ca_file: file('ca.crt'), max_age: '4s', eviction_interval: '1s' },
    { prefix: 'limited', remote: front.url, username: 'mirror', password_file: file('remote.password') },
  ],
}
// Our own working directory: a second gateway starts on the same caches' storage at the end.
const gatewayDir = file('gateway')
await mkdir(gatewayDir)
const gateway = await gatewayFixture(t, { cwd: gatewayDir, config: gatewayConfig })
const client = new GatewayClient(gateway)
t.teardown(() => client.close())
const tls = { srcCertDir: gateway.certDir }

t.test('an image pulled through the cache twice: the second pull asks the remote for no blob', async (t) => {
  const before = (await remoteBlobGets()).length
  const first = await skopeoCopy(`docker://${gateway.host}/hub/library/alpine:v1`, `oci:${file('pull-1')}:v1`, tls)
  t.equal(first.code, 0, `first pull (${first.stderr.trim()})`)
  const fetched = (await remoteBlobGets()).slice(before)
  const blobs = [image.images[0]?.configDigest, ...(image.images[0]?.layerDigests ?? [])]
  for (const digest of blobs) t.ok(fetched.some((line) => line === `library/alpine ${digest}`), `the first pull fetched ${digest} from the remote`)

  // The cache's registry stores a blob while it serves it: wait until every blob is held before pulling again.
  await waitUntil(async () => {
    for (const digest of blobs) if ((await client.send('HEAD', `/v2/hub/library/alpine/blobs/${digest}`)).status !== 200) return false
    return true
  }, 20_000)
  await sleep(500)
  const afterFirst = (await remoteBlobGets()).length
  const logged = gateway.logs.length
  const second = await skopeoCopy(`docker://${gateway.host}/hub/library/alpine:v1`, `oci:${file('pull-2')}:v1`, tls)
  t.equal(second.code, 0, `second pull (${second.stderr.trim()})`)
  t.same((await remoteBlobGets()).slice(afterFirst), [], 'no blob request reached the remote')
  await gateway.logsSettled()
  const blobLines = gateway.logs.slice(logged).filter((line) => line.op === 'blob.get' && line.repository === 'hub/library/alpine')
  t.ok(blobLines.length >= blobs.length, 'the second pull read every blob')
  t.same(blobLines.map((line) => line.upstream), blobLines.map(() => 'storage:cache:hub'), 'each from the cache\'s storage, not through its registry')
  const index = JSON.parse(await readFile(join(file('pull-2'), 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  t.equal(index.manifests[0]?.digest, image.digest, 'the second pull got the image the remote holds')

  // Docker Hub's implicit library/: hub/alpine is hub/library/alpine.
  const short = await client.send('GET', '/v2/hub/alpine/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(short.status, 200)
  t.equal(short.headers['docker-content-digest'], image.digest, 'hub/alpine is library/alpine on the remote')
  const tags = await client.send('GET', '/v2/hub/library/alpine/tags/list')
  t.equal(tags.status, 200)
  t.same(tags.json(), { name: 'hub/library/alpine', tags: ['v1'] }, 'the tag list names the repository as the client does')
})

t.test('concurrent pulls of one blob the cache does not hold yet: the remote is asked for it at most twice', async (t) => {
  const stampede = await pushToRemote('team/stampede', 'v1', [4 * 1024 * 1024])
  const layer = stampede.images[0]?.layerDigests[0] ?? ''
  const before = (await remoteBlobGets()).length
  const pulls = await Promise.all(Array.from({ length: 8 }, () => client.send('GET', `/v2/hub/team/stampede/blobs/${layer}`, { timeoutMs: 60_000 })))
  for (const pulled of pulls) {
    t.equal(pulled.status, 200)
    t.equal(sha256(pulled.body), layer, 'every pull gets the blob')
  }
  const fetched = (await remoteBlobGets()).slice(before).filter((line) => line === `team/stampede ${layer}`)
  // registry 2.8's proxy fetches a blob twice on a miss (one copy for the client, one to store); alone it fetches once more per concurrent pull.
  t.ok(fetched.length >= 1 && fetched.length <= 2, `8 concurrent pulls made ${fetched.length} remote fetches`)
})

t.test('a cache over max_bytes evicts the repository pulled longest ago, blobs included; it is fetched again on its next pull', async (t) => {
  const first = await pushToRemote('team/first', 'v1', [400_000, 300_000])
  const second = await pushToRemote('team/second', 'v1', [400_000, 300_000])
  const storage = join(gatewayDir, 'data/caches/small/storage/docker/registry/v2')
  const blobFile = (digest: string): string => join(storage, 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')
  const exists = (path: string): Promise<boolean> => readFile(path).then(() => true, () => false)
  const pullAll = async (repository: string, layout: BuiltLayout): Promise<void> => {
    const pulled = await skopeoCopy(`docker://${gateway.host}/small/${repository}:v1`, `oci:${file(`small-${randomBytes(3).toString('hex')}`)}:v1`, tls)
    t.equal(pulled.code, 0, `pull small/${repository} (${pulled.stderr.trim()})`)
    const digests = [layout.images[0]?.configDigest ?? '', ...(layout.images[0]?.layerDigests ?? [])]
    t.ok(await waitUntil(async () => (await Promise.all(digests.map((digest) => exists(blobFile(digest))))).every(Boolean), 20_000), `small/${repository} is stored`)
  }
  await pullAll('team/first', first)
  // Distinct pull times even on a coarse clock.
  await sleep(50)
  const logged = gateway.logs.length
  await pullAll('team/second', second)
  const line = await gateway.waitForLog((entry) => gateway.logs.indexOf(entry) >= logged && entry.cache === 'small' && entry.msg.includes('evicted'), 30_000)
  t.same(line.repositories, ['team/first'], 'the repository pulled longest ago goes')
  t.equal(await exists(join(storage, 'repositories/team/first')), false, 'its repository is gone from the storage')
  t.ok(await waitUntil(async () => !(await exists(blobFile(first.images[0]?.layerDigests[0] ?? ''))), 10_000), 'and its blobs')
  for (const digest of second.images[0]?.layerDigests ?? []) t.equal(await exists(blobFile(digest)), true, 'the newer repository\'s blobs stay')
  t.ok(Number(line.bytes_after) <= 1024 * 1024, `under max_bytes after (${String(line.bytes_after)} bytes)`)
  const again = await client.send('GET', `/v2/small/team/first/blobs/${first.images[0]?.layerDigests[0] ?? ''}`)
  t.equal(again.status, 200, 'an evicted blob is fetched again')
  t.equal(sha256(again.body), first.images[0]?.layerDigests[0])
})

t.test('max_age: a repository not pulled within it is evicted with its blobs; one pulled meanwhile stays', async (t) => {
  const old = await pushToRemote('team/old', 'v1', [60_000, 40_000])
  const kept = await pushToRemote('team/kept', 'v1', [50_000])
  const storage = join(gatewayDir, 'data/caches/aged/storage/docker/registry/v2')
  const blobFile = (digest: string): string => join(storage, 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')
  const exists = (path: string): Promise<boolean> => readFile(path).then(() => true, () => false)
  const logged = gateway.logs.length
  for (const [repository, layout] of [['team/old', old], ['team/kept', kept]] as const) {
    const pulled = await skopeoCopy(`docker://${gateway.host}/aged/${repository}:v1`, `oci:${file(`aged-${randomBytes(3).toString('hex')}`)}:v1`, tls)
    t.equal(pulled.code, 0, `pull aged/${repository} (${pulled.stderr.trim()})`)
    t.equal(layout.images.length, 1)
  }
  // team/kept is pulled (by tag) every half second; team/old is not pulled again.
  let evicted: Record<string, unknown> | undefined
  for (let round = 0; round < 60 && evicted === undefined; round++) {
    const pulled = await client.send('GET', '/v2/aged/team/kept/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
    t.equal(pulled.status, 200, 'team/kept pulls')
    evicted = gateway.logs.slice(logged).find((entry) => entry.cache === 'aged' && entry.msg.includes('max_age'))
    await sleep(500)
  }
  t.ok(evicted, 'a log line names what max_age evicted')
  t.same(evicted?.repositories, ['team/old'], 'the repository not pulled within max_age, not the one pulled meanwhile')
  t.equal(await exists(join(storage, 'repositories/team/old')), false, 'its repository is gone from the storage')
  const oldBlobs = [old.images[0]?.configDigest ?? '', ...(old.images[0]?.layerDigests ?? [])]
  t.ok(await waitUntil(async () => !(await Promise.all(oldBlobs.map((digest) => exists(blobFile(digest))))).some(Boolean), 15_000), 'and its blobs')
  t.equal(await exists(join(storage, 'repositories/team/kept/_manifests/tags/v1/current/link')), true, 'the repository pulled meanwhile stays')
  for (const digest of kept.images[0]?.layerDigests ?? []) t.equal(await exists(blobFile(digest)), true, 'with its blobs')
  const metrics = (await client.send('GET', '/metrics')).body.toString()
  t.match(metrics, /portier_pull_through_evicted_repositories_total\{cache="aged",reason="age"\} [1-9]/, 'counted, with the reason')
  const again = await client.send('GET', '/v2/aged/team/old/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(again.status, 200, 'an evicted repository is fetched again on its next pull')
  t.equal(again.headers['docker-content-digest'], old.digest)
})

t.test('a rate-limited remote: what the cache lacks is answered 429 with the remote\'s Retry-After, what it holds is served, and it is counted', async (t) => {
  const held = await pushToRemote('team/limited', 'v1', [40_000])
  const get = (path: string) => client.send('GET', path, { headers: { accept: MT_OCI_MANIFEST } })
  const warm = await get('/v2/limited/team/limited/manifests/v1')
  t.equal(warm.status, 200, 'pulled through the front while it lets everything pass')
  t.equal(warm.headers['docker-content-digest'], held.digest)
  const heldLayer = held.images[0]?.layerDigests[0] ?? ''
  t.equal((await client.send('GET', `/v2/limited/team/limited/blobs/${heldLayer}`)).status, 200)
  const storedLayer = join(gatewayDir, 'data/caches/limited/storage/docker/registry/v2/blobs/sha256', heldLayer.slice(7, 9), heldLayer.slice(7), 'data')
  t.ok(await waitUntil(() => readFile(storedLayer).then(() => true, () => false), 20_000), 'the layer is stored')
  const fresh = await pushToRemote('team/limited', 'v2', [30_000])

  front.limit = '10'
  const refused = await get('/v2/limited/team/limited/manifests/v2')
  t.equal(refused.status, 429, 'a tag the cache does not hold, refused by the remote: 429')
  t.equal(refused.errorCode(), 'TOOMANYREQUESTS')
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter >= 1 && retryAfter <= 10, `the remote's Retry-After passed on (${String(refused.headers['retry-after'])})`)
  t.ok(front.refused >= 1, 'the remote answered 429')
  const askedBefore = front.refused
  const freshLayer = fresh.images[0]?.layerDigests[0] ?? ''
  const blob = await client.send('GET', `/v2/limited/team/limited/blobs/${freshLayer}`)
  t.equal(blob.status, 429, 'a blob it does not hold: 429 too')
  t.ok(Number(blob.headers['retry-after']) >= 1 && Number(blob.headers['retry-after']) <= 10, 'with the Retry-After left')
  t.equal(front.refused, askedBefore, 'answered by Portier without asking the remote again before Retry-After')

  const tagHeld = await get('/v2/limited/team/limited/manifests/v1')
  t.equal(tagHeld.status, 200, 'a tag it holds is still served')
  t.equal(tagHeld.headers['docker-content-digest'], held.digest)
  const blobHeld = await client.send('GET', `/v2/limited/team/limited/blobs/${heldLayer}`)
  t.equal(blobHeld.status, 200, 'and a blob it holds')
  t.equal(sha256(blobHeld.body), heldLayer)
  const metrics = (await client.send('GET', '/metrics')).body.toString()
  t.match(metrics, /portier_pull_through_remote_errors_total\{cache="limited",reason="429"\} [1-9]/, 'the 429 is counted for this cache')
  t.notMatch(metrics, /portier_pull_through_remote_errors_total\{cache="hub",reason="429"\}/, 'and for no other')

  // The remote lifts its limit; once the Retry-After has passed, the cache asks it again.
  front.limit = undefined
  await sleep(10_500)
  const after = await get('/v2/limited/team/limited/manifests/v2')
  t.equal(after.status, 200, 'after Retry-After the new tag comes through')
  t.equal(after.headers['docker-content-digest'], fresh.digest)
})

t.test('a moved tag shows through after the revalidation interval; until then the cached digest is answered', async (t) => {
  const tag = 'moving'
  const old = await pushToRemote('team/app', tag, [50_000])
  const get = (path: string) => client.send('GET', path, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal((await get(`/v2/hub/team/app/manifests/${tag}`)).headers['docker-content-digest'], old.digest, 'hub: first pull')
  t.equal((await get(`/v2/quick/team/app/manifests/${tag}`)).headers['docker-content-digest'], old.digest, 'quick: first pull')
  const moved = await pushToRemote('team/app', tag, [60_000])
  t.not(moved.digest, old.digest)
  const fresh = await pushToRemote('team/app', 'brand-new', [70_000])

  const viaHub = await get(`/v2/hub/team/app/manifests/${tag}`)
  t.equal(viaHub.status, 200)
  t.equal(viaHub.headers['docker-content-digest'], old.digest, 'hub (revalidate 1h): still the digest it revalidated')
  t.equal(sha256(viaHub.body), old.digest, 'and its bytes')
  await sleep(1200)
  const viaQuick = await get(`/v2/quick/team/app/manifests/${tag}`)
  t.equal(viaQuick.headers['docker-content-digest'], moved.digest, 'quick (revalidate 1s): the moved tag after the interval')
  t.equal(sha256(viaQuick.body), moved.digest)
  const added = await get('/v2/hub/team/app/manifests/brand-new')
  t.equal(added.headers['docker-content-digest'], fresh.digest, 'a new tag on the remote appears at once')

  // A delete by digest takes the manifest and the tags pointing at it out of the cache's storage (registry 2.8's proxy refuses deletes).
  const manifests = join(gateway.cwd, 'data/caches/hub/storage/docker/registry/v2/repositories/team/app/_manifests')
  const revision = join(manifests, 'revisions/sha256', old.digest.slice(7), 'link')
  t.equal(await readFile(revision, 'utf8'), old.digest, 'the cache holds the old manifest')
  const deleted = await client.send('DELETE', `/v2/hub/team/app/manifests/${old.digest}`)
  t.equal(deleted.status, 202)
  t.equal(await readFile(revision, 'utf8').catch(() => 'gone'), 'gone', 'its revision link is gone')
  t.equal(await readFile(join(manifests, 'tags', tag, 'current/link'), 'utf8').catch(() => 'gone'), 'gone', 'and the tag that pointed at it')
  t.equal(await readFile(join(manifests, 'tags/brand-new/current/link'), 'utf8'), fresh.digest, 'other tags stay')
  t.equal((await client.send('DELETE', `/v2/hub/team/app/manifests/${old.digest}`)).errorCode(), 'MANIFEST_UNKNOWN', 'deleted once')
  t.equal((await client.send('DELETE', `/v2/hub/team/app/manifests/${tag}`)).errorCode(), 'UNSUPPORTED', 'by digest only')
  t.equal((await get(`/v2/hub/team/app/manifests/${tag}`)).headers['docker-content-digest'], moved.digest, 'the next pull by tag asks the remote again')
})

t.test('pushes into a cache prefix are refused with a registry error; other repositories take pushes', async (t) => {
  const started = await client.send('POST', '/v2/hub/library/alpine/blobs/uploads/')
  t.equal(started.status, 405)
  t.equal(started.errorCode(), 'UNSUPPORTED')
  t.match(started.body.toString(), /pull-through cache/, 'the message says why')
  const manifest = await client.send('PUT', '/v2/quick/mine/manifests/v1', { headers: { 'content-type': MT_OCI_MANIFEST }, body: '{}' })
  t.equal(manifest.status, 405)
  t.equal(manifest.errorCode(), 'UNSUPPORTED')
  const local = await skopeoCopy(`oci:${image.dir}:v1`, `docker://${gateway.host}/local/alpine:v1`, { destCertDir: gateway.certDir })
  t.equal(local.code, 0, `a push beside the caches (${local.stderr.trim()})`)
  const stored = await client.send('GET', `/v2/local/alpine/manifests/v1`, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(stored.status, 200)
  t.equal(stored.headers['docker-content-digest'], image.digest, 'the local repository holds what was pushed')
})

t.test('mirror requests: ?ns=docker.io and un-prefixed names the local registry lacks come from the cache', async (t) => {
  const ns = await client.send('GET', `/v2/library/alpine/manifests/v1?ns=docker.io`, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(ns.status, 200)
  t.equal(ns.headers['docker-content-digest'], image.digest, 'containerd\'s ?ns=docker.io')
  const plain = await client.send('GET', `/v2/library/alpine/manifests/v1`, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(plain.status, 200)
  t.equal(plain.headers['docker-content-digest'], image.digest, 'docker\'s registry-mirrors: un-prefixed, not local')
  const local = await client.send('GET', `/v2/local/alpine/manifests/v1`, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(local.headers['docker-content-digest'], image.digest, 'a local repository is still served locally')
  const missing = await client.send('GET', `/v2/nowhere/at-all/manifests/v1`)
  t.equal(missing.status, 404, 'neither local nor remote: 404')
})

t.test('podman with a registries.conf mirror entry pulls docker.io/library/alpine through Portier', async (t) => {
  const version = await run('podman', ['--version']).catch(() => undefined)
  if (version === undefined || version.code !== 0) {
    t.comment('podman is not installed: its mirror pull is not tested')
    return
  }
  const conf = file('registries.conf')
  await writeFile(conf, [
    'unqualified-search-registries = []',
    '[[registry]]',
    'location = "docker.io"',
    '[[registry.mirror]]',
    `location = "${gateway.host}/hub"`,
    '',
  ].join('\n'))
  const authFile = file('podman-auth.json')
  await writeFile(authFile, '{}')
  const base = ['--root', file('podman-root'), '--runroot', file('run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const env = { ...process.env, REGISTRY_AUTH_FILE: authFile, CONTAINERS_REGISTRIES_CONF: conf, HOME: work, XDG_CONFIG_HOME: file('xdg-config'), XDG_DATA_HOME: file('xdg-data'), XDG_RUNTIME_DIR: file('xdg-run') }
  await mkdir(file('xdg-run'), { recursive: true })
  const before = gateway.logs.length
  const pulled = await run('podman', [...base, 'pull', '--cert-dir', gateway.certDir, 'docker.io/library/alpine:v1'], { env, timeoutMs: 120_000 })
  t.equal(pulled.code, 0, `podman pull (${pulled.stderr.trim()})`)
  const inspected = await run('podman', [...base, 'image', 'inspect', '--format', '{{.Digest}}', 'docker.io/library/alpine:v1'], { env, timeoutMs: 60_000 })
  t.equal(inspected.stdout.trim(), image.digest, 'podman holds the remote\'s image')
  await gateway.logsSettled()
  t.ok(gateway.logs.slice(before).some((line) => line.repository === 'hub/library/alpine'), 'podman went through Portier\'s hub/ prefix')
})

t.test('the catalog lists cached repositories under their prefix, beside the local ones, paged across both', async (t) => {
  const all = await client.send('GET', '/v2/_catalog')
  t.equal(all.status, 200)
  const names = (all.json() as { repositories: string[] }).repositories
  // registry 2.8 lists a repository once it holds a layer: hub/team/app (manifests only) is not listed, hub/team/stampede (a blob pulled) is.
  for (const name of ['hub/library/alpine', 'hub/team/stampede', 'local/alpine']) t.ok(names.includes(name), `${name} is listed`)
  t.notOk(names.some((name) => name.startsWith('library/') || name.startsWith('team/')), 'no cached repository without its prefix')
  t.same(names, [...names].sort(), 'in order')
  const page = await client.send('GET', `/v2/_catalog?n=2&last=${encodeURIComponent('hub/library/alpine')}`)
  t.equal(page.status, 200)
  const expected = names.slice(names.indexOf('hub/library/alpine') + 1, names.indexOf('hub/library/alpine') + 3)
  t.same((page.json() as { repositories: string[] }).repositories, expected, 'the page after hub/library/alpine')

  // The web UI's list marks cached repositories with their remote; nothing can be pushed into them.
  const session = await client.send('GET', '/ui/api/session')
  const cookie = String(session.headers['set-cookie']).split(';')[0] ?? ''
  const ui = await client.send('GET', '/ui/api/repositories', { headers: { cookie } })
  t.equal(ui.status, 200)
  const entries = (ui.json() as { repositories: Array<{ name: string; canPush: boolean; cachedFrom?: string }> }).repositories
  t.match(entries.find((entry) => entry.name === 'hub/library/alpine'), { cachedFrom: remote.url, canPush: false }, 'a cached repository')
  const local = entries.find((entry) => entry.name === 'local/alpine')
  t.equal(local?.cachedFrom, undefined, 'a local repository has no source')
  t.equal(local?.canPush, true)
})

t.test('the ACL sees the cached repository with its prefix; deletes from a cache are for administrators', async (t) => {
  const htpasswd = file('gateway.htpasswd')
  await writeFile(htpasswd, `cached:${await hashPassword('cached-password', 5)}\nlocal:${await hashPassword('local-password', 5)}\nboss:${await hashPassword('boss-password', 5)}\n`)
  const guarded = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: (await registryFixture(t)).url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'cached', name: 'hub/**' }, actions: ['pull', 'delete'] },
          { match: { account: 'local', name: 'library/**' }, actions: ['pull'] },
          { match: { account: 'boss' }, actions: ['*'] },
        ],
      },
      ui: { admin_users: ['boss'] },
      caches: [{ prefix: 'hub', remote: remote.url, username: 'mirror', password_file: file('remote.password'), ca_file: file('ca.crt') }],
    },
  })
  const guardedClient = new GatewayClient(guarded)
  t.teardown(() => guardedClient.close())
  const as = (user: string) => ({ headers: { accept: MT_OCI_MANIFEST, authorization: `Basic ${Buffer.from(`${user}:${user}-password`).toString('base64')}` } })
  const allowed = await guardedClient.send('GET', '/v2/hub/library/alpine/manifests/v1', as('cached'))
  t.equal(allowed.status, 200, 'hub/** grants the cached repository')
  t.equal(allowed.headers['docker-content-digest'], image.digest)
  const denied = await guardedClient.send('GET', '/v2/hub/library/alpine/manifests/v1', as('local'))
  t.equal(denied.status, 403, 'library/** (the name the remote knows) does not')
  t.equal(denied.errorCode(), 'DENIED')

  // The ACL gives cached delete on hub/**: not enough for a cache, which serves everyone what it holds.
  const notAdmin = await guardedClient.send('DELETE', `/v2/hub/library/alpine/manifests/${image.digest}`, as('cached'))
  t.equal(notAdmin.status, 403, 'a delete from the cache by a user who is no administrator')
  t.equal(notAdmin.errorCode(), 'DENIED')
  t.match(notAdmin.body.toString(), /for administrators/, 'the message says who may')
  const stillThere = await guardedClient.send('GET', `/v2/hub/library/alpine/manifests/${image.digest}`, as('cached'))
  t.equal(stillThere.status, 200, 'nothing was deleted')
  const byAdmin = await guardedClient.send('DELETE', `/v2/hub/library/alpine/manifests/${image.digest}`, as('boss'))
  t.equal(byAdmin.status, 202, 'an administrator deletes from the cache')
  const revision = join(guarded.cwd, 'data/caches/hub/storage/docker/registry/v2/repositories/library/alpine/_manifests/revisions/sha256', image.digest.slice(7), 'link')
  t.equal(await readFile(revision, 'utf8').catch(() => 'gone'), 'gone', 'the manifest left the cache\'s storage')
})

t.test('the remote stopped: the cached tag still pulls with the same digests, with a log line and a metric', async (t) => {
  // Through quick (revalidate 1s): the tag is due for revalidation, so the remote being down is found out.
  const warm = await client.send('GET', '/v2/quick/library/alpine/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(warm.headers['docker-content-digest'], image.digest)
  for (const digest of [image.images[0]?.configDigest, ...(image.images[0]?.layerDigests ?? [])]) {
    t.equal((await client.send('GET', `/v2/quick/library/alpine/blobs/${digest}`)).status, 200, 'blob pulled once through quick')
  }
  // The cache's registry stores a blob after (or while) serving it: wait until all of them are on disk.
  const stored = (digest: string): Promise<boolean> =>
    readFile(join(gateway.cwd, 'data/caches/quick/storage/docker/registry/v2/blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data')).then(() => true, () => false)
  const blobs = [image.images[0]?.configDigest ?? '', ...(image.images[0]?.layerDigests ?? [])]
  t.ok(await waitUntil(async () => (await Promise.all(blobs.map(stored))).every(Boolean), 20_000), 'every blob is stored')
  await remote.stop()
  await sleep(1200)
  const before = gateway.logs.length
  const pulled = await skopeoCopy(`docker://${gateway.host}/quick/library/alpine:v1`, `oci:${file('pull-down')}:v1`, tls)
  t.equal(pulled.code, 0, `pull with the remote down (${pulled.stderr.trim()})`)
  const index = JSON.parse(await readFile(join(file('pull-down'), 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  t.equal(index.manifests[0]?.digest, image.digest, 'the same manifest digest')
  await gateway.logsSettled()
  t.ok(gateway.logs.slice(before).some((line) => line.msg.includes('remote unreachable') && line.cache === 'quick'), 'a log line says the remote is unreachable')
  const metrics = (await client.send('GET', '/metrics')).body.toString()
  t.match(metrics, /portier_pull_through_stale_serves_total\{cache="quick"\} [1-9]/, 'counted as a stale serve')
  t.match(metrics, /portier_pull_through_remote_errors_total\{cache="quick",reason="unreachable"\} [1-9]/, 'and a remote error')
  t.match(metrics, /portier_pull_through_hits_total\{cache="hub",kind="blob"\} [1-9]/, 'hits are counted')
  t.match(metrics, /portier_pull_through_bytes_total\{cache="hub",source="remote"\} [1-9]/, 'bytes from the remote are counted')
  t.match(metrics, /portier_pull_through_misses_total\{cache="hub",kind="blob"\} [1-9]/, 'misses are counted')
  t.match(metrics, /portier_pull_through_bytes_total\{cache="hub",source="cache"\} [1-9]/, 'and bytes sent from what the cache held')
})

t.test('restarted while the remote is down: the caches start, and registry 2.8 falls back to the tag it stored', async (t) => {
  await gateway.stop()
  const again = await gatewayFixture(t, { cwd: gatewayDir, config: gatewayConfig })
  const fresh = new GatewayClient(again)
  t.teardown(() => fresh.close())
  // This Portier never saw the tag: the pull by tag goes to the cache's registry, whose request to the remote fails.
  const pulled = await fresh.send('GET', '/v2/hub/library/alpine/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(pulled.status, 200)
  t.equal(pulled.headers['docker-content-digest'], image.digest, 'the digest the cache stored')
  t.equal(sha256(pulled.body), image.digest)
  const layer = image.images[0]?.layerDigests[0] ?? ''
  const blob = await fresh.send('GET', `/v2/hub/library/alpine/blobs/${layer}`)
  t.equal(blob.status, 200)
  t.equal(sha256(blob.body), layer, 'a stored blob too')
  const unknown = await fresh.send('GET', '/v2/hub/library/never-pulled/manifests/v1')
  t.ok(unknown.status >= 400, `content never fetched cannot be served (${unknown.status})`)
})
