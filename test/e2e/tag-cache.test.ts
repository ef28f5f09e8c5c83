// The tag cache (cache.tags) and GET /v2/ answered by Portier, against a real registry: headers and bytes as the registry's, answered without it, forgotten on push and delete through Portier, seen after the TTL when moved on the registry, Accept variants apart, authorization first.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { makeOciLayout } from '../helpers/oci.js'
import { hashPassword } from '../../src/auth/hashes.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
const KEPT = ['content-type', 'docker-content-digest', 'content-length', 'etag', 'docker-distribution-api-version'] as const
const ADMIN: [string, string] = ['admin', 'admin-password']
const ALICE: [string, string] = ['alice', 'alice-password']

/** Stores a config blob and an OCI manifest straight in the registry under `tag`; returns the manifest's bytes and digest. */
async function pushManifest(registry: RegistryHandle, repository: string, tag: string, seed: string): Promise<{ body: Buffer; digest: string }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed, rootfs: { type: 'layers', diff_ids: [] } }))
  const configDigest = sha256(config)
  const started = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', configDigest)
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`config blob push: ${put.status}`)
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] }))
  return { body, digest: await putManifest(registry, repository, tag, body, OCI_MANIFEST) }
}

async function putManifest(registry: RegistryHandle, repository: string, reference: string, body: Buffer, type: string): Promise<string> {
  const stored = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, { method: 'PUT', body: new Uint8Array(body), headers: { 'content-type': type } })
  if (stored.status !== 201) throw new Error(`manifest push: ${stored.status} ${await stored.text()}`)
  return sha256(body)
}

/** Requests of the registry's access log for this path and method. */
async function upstreamHits(registry: RegistryHandle, method: string, path: string): Promise<number> {
  return (await registry.log()).split('\n').filter((line) => line.includes(`"${method} ${path} HTTP/1.1"`)).length
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.split(' ')[1])
}

async function usersFile(t: Test): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), 'portier-tag-cache-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const path = join(work, 'htpasswd')
  const lines = await Promise.all([ADMIN, ALICE].map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))
  await writeFile(path, lines.join(''))
  return path
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

function caller(t: Test, gateway: GatewayHandle, registry: RegistryHandle) {
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  return async (method: 'GET' | 'HEAD' | 'DELETE', base: 'gateway' | 'registry', path: string, options: { who?: [string, string]; accept?: string } = {}): Promise<Answer> => {
    const headers: Record<string, string> = { accept: options.accept ?? OCI_MANIFEST }
    if (options.who) headers.authorization = basic(...options.who)
    const url = `${base === 'registry' ? registry.url : gateway.url}${path}`
    const response = await request(url, base === 'registry' ? { method, headers } : { dispatcher, method, headers })
    return { status: response.statusCode, headers: response.headers, body: Buffer.from(await response.body.arrayBuffer()) }
  }
}

/** Waits (bounded) until /readyz says the upstream answered its first health check. */
async function upstreamChecked(gateway: GatewayHandle): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ready = await fetch(`${gateway.adminUrl as string}/readyz`)
    await ready.arrayBuffer()
    if (ready.status === 200) return
    await sleep(100)
  }
  throw new Error('the gateway never became ready')
}

t.test('HEAD and GET by tag from memory, as the registry answers, after authorization; forgotten on DELETE through Portier', async (t) => {
  const registry = await registryFixture(t)
  const htpasswd = await usersFile(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      cache: { tags: { ttl: '10m' } },
      admin: { listen: '127.0.0.1:0' },
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [
          { match: { account: 'admin' }, actions: ['*'] },
          { match: { account: 'alice', name: 'a/*' }, actions: ['pull'] },
        ],
      },
    },
  })
  const call = caller(t, gateway, registry)
  const pushed = await pushManifest(registry, 'a/app', 'v1', 'one')
  await pushManifest(registry, 'b/app', 'v1', 'one') // alice may not read b/app
  const path = '/v2/a/app/manifests/v1'

  const directHead = await call('HEAD', 'registry', path)
  const directGet = await call('GET', 'registry', path)
  t.equal(directHead.status, 200)
  t.equal(directGet.status, 200)
  const headsBefore = await upstreamHits(registry, 'HEAD', path)
  const getsBefore = await upstreamHits(registry, 'GET', path)

  const firstHead = await call('HEAD', 'gateway', path, { who: ALICE })
  t.equal(firstHead.status, 200, 'first HEAD by tag: 200 from the registry')
  const secondHead = await call('HEAD', 'gateway', path, { who: ALICE })
  t.equal(secondHead.status, 200, 'second HEAD by tag: 200')
  for (const name of KEPT) t.equal(secondHead.headers[name], directHead.headers[name], `HEAD from memory: ${name} as the registry sends it`)
  t.equal(secondHead.headers['docker-content-digest'], pushed.digest)
  t.equal(secondHead.body.length, 0, 'and no body')
  t.equal(await upstreamHits(registry, 'HEAD', path), headsBefore + 1, 'the registry saw only the first HEAD through Portier')

  const firstGet = await call('GET', 'gateway', path, { who: ALICE })
  t.equal(firstGet.status, 200)
  t.same(firstGet.body, pushed.body)
  const secondGet = await call('GET', 'gateway', path, { who: ALICE })
  t.equal(secondGet.status, 200, 'second GET by tag: 200')
  t.same(secondGet.body, directGet.body, 'the registry\'s bytes')
  t.equal(sha256(secondGet.body), pushed.digest)
  for (const name of KEPT) t.equal(secondGet.headers[name], directGet.headers[name], `GET from memory: ${name} as the registry sends it`)
  t.equal(await upstreamHits(registry, 'GET', path), getsBefore + 1, 'the registry saw only the first GET through Portier')

  const scraped = await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
  t.equal(metric(scraped, 'portier_tag_cache_hits_total'), 2, 'two hits counted (the second HEAD and GET)')
  t.equal(metric(scraped, 'portier_tag_cache_misses_total'), 2, 'two misses: the first HEAD, and the first GET (the resolution known, the manifest bytes not yet)')
  t.equal(metric(scraped, 'portier_tag_cache_entries'), 1, 'one resolution held')

  // Authorization comes first: b/app:v1 resolved for admin is still refused to alice; no credentials, 401.
  t.equal((await call('HEAD', 'gateway', '/v2/b/app/manifests/v1', { who: ADMIN })).status, 200)
  t.equal((await call('HEAD', 'gateway', '/v2/b/app/manifests/v1', { who: ADMIN })).status, 200, 'b/app:v1 now cached')
  const denied = await call('GET', 'gateway', '/v2/b/app/manifests/v1', { who: ALICE })
  t.equal(denied.status, 403, 'alice, cached tag of a repository she may not read: 403')
  t.match(denied.body.toString(), /DENIED/)
  t.equal((await call('HEAD', 'gateway', '/v2/b/app/manifests/v1', { who: ALICE })).status, 403, 'HEAD too')
  const anonymous = await call('HEAD', 'gateway', path)
  t.equal(anonymous.status, 401, 'no credentials: 401 even for a cached tag')
  t.match(String(anonymous.headers['www-authenticate']), /^Basic /)

  // A DELETE by digest through Portier forgets every tag pointing at it: the next HEAD is the registry's 404.
  const deleted = await call('DELETE', 'gateway', `/v2/a/app/manifests/${pushed.digest}`, { who: ADMIN })
  t.equal(deleted.status, 202, 'DELETE by digest: 202')
  const gone = await call('HEAD', 'gateway', path, { who: ALICE })
  t.equal(gone.status, 404, 'HEAD by tag right after the delete: 404, not the kept resolution')
  const goneGet = await call('GET', 'gateway', path, { who: ALICE })
  t.equal(goneGet.status, 404)
  t.match(goneGet.body.toString(), /MANIFEST_UNKNOWN/)
})

t.test('a push through Portier to the same tag is seen at once (skopeo)', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], cache: { tags: { ttl: '10m' } } } })
  const call = caller(t, gateway, registry)
  const work = await mkdtemp(join(tmpdir(), 'portier-tag-cache-images-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const one = await makeOciLayout(join(work, 'one'), { layers: [4096] })
  const two = await makeOciLayout(join(work, 'two'), { layers: [8192] })
  t.not(one.manifestDigest, two.manifestDigest)
  const target = `docker://${gateway.host}/pushed/app:latest`
  const path = '/v2/pushed/app/manifests/latest'

  t.equal((await skopeoCopy(`oci:${one.dir}:latest`, target, { destCertDir: gateway.certDir })).code, 0)
  const first = await call('HEAD', 'gateway', path)
  t.equal(first.headers['docker-content-digest'], one.manifestDigest)
  const cached = await call('HEAD', 'gateway', path)
  t.equal(cached.headers['docker-content-digest'], one.manifestDigest)
  const heads = await upstreamHits(registry, 'HEAD', path)

  t.equal((await skopeoCopy(`oci:${two.dir}:latest`, target, { destCertDir: gateway.certDir })).code, 0, 'the second image pushed to the same tag')
  const after = await call('HEAD', 'gateway', path)
  t.equal(after.status, 200)
  t.equal(after.headers['docker-content-digest'], two.manifestDigest, 'the next HEAD names the new digest at once')
  const afterGet = await call('GET', 'gateway', path)
  t.equal(sha256(afterGet.body), two.manifestDigest, 'and a GET gets the new manifest')
  t.ok((await upstreamHits(registry, 'HEAD', path)) > heads, 'the registry was asked again after the push')
})

t.test('a tag moved directly on the registry is seen after the TTL', async (t) => {
  const registry = await registryFixture(t)
  const ttlMs = 1500
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], cache: { tags: { ttl: `${ttlMs}ms` } } } })
  const call = caller(t, gateway, registry)
  const path = '/v2/moved/app/manifests/v1'
  const old = await pushManifest(registry, 'moved/app', 'v1', 'old')
  // The entry lives the TTL from when Portier sent the read upstream: some time between these two.
  const sentAfter = Date.now()
  t.equal((await call('HEAD', 'gateway', path)).headers['docker-content-digest'], old.digest)
  const answeredBy = Date.now()
  const moved = await pushManifest(registry, 'moved/app', 'v1', 'new')
  const stale = await call('HEAD', 'gateway', path)
  // Only meaningful while surely within the TTL; a very slow machine may already be past it.
  if (Date.now() - sentAfter < ttlMs - 200) t.equal(stale.headers['docker-content-digest'], old.digest, 'within the TTL: the kept resolution (the registry was not asked)')
  await sleep(Math.max(0, ttlMs - (Date.now() - answeredBy)) + 100)
  const fresh = await call('HEAD', 'gateway', path)
  t.equal(fresh.headers['docker-content-digest'], moved.digest, 'after the TTL: the tag as the registry has it now')
})

t.test('Accept variants never mix: an index for clients that list it, the registry\'s 404 for those that do not', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], cache: { tags: { ttl: '10m' } } } })
  const call = caller(t, gateway, registry)
  const child = await pushManifest(registry, 'multi/app', 'child', 'child')
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: child.digest, size: child.body.length, platform: { architecture: 'amd64', os: 'linux' } }] }))
  const indexDigest = await putManifest(registry, 'multi/app', 'v1', index, OCI_INDEX)
  const path = '/v2/multi/app/manifests/v1'
  const both = `${OCI_MANIFEST}, ${OCI_INDEX}`

  const directIndex = await call('HEAD', 'registry', path, { accept: both })
  const directManifestOnly = await call('GET', 'registry', path, { accept: OCI_MANIFEST })
  t.equal(directIndex.headers['docker-content-digest'], indexDigest)
  t.equal(directManifestOnly.status, 404, 'registry 2.8: an OCI index to a client that does not list it is a 404')

  for (let round = 0; round < 2; round++) {
    const withIndex = await call('HEAD', 'gateway', path, { accept: both })
    t.equal(withIndex.status, 200, `round ${round}: Accept with the index type: 200`)
    t.equal(withIndex.headers['docker-content-digest'], indexDigest)
    t.equal(withIndex.headers['content-type'], OCI_INDEX)
    const withoutIndex = await call('GET', 'gateway', path, { accept: OCI_MANIFEST })
    t.equal(withoutIndex.status, 404, `round ${round}: Accept without it: the registry's 404, never the kept index`)
    t.match(withoutIndex.body.toString(), /MANIFEST_UNKNOWN/)
    const headWithout = await call('HEAD', 'gateway', path, { accept: OCI_MANIFEST })
    t.equal(headWithout.status, 404, `round ${round}: HEAD without it: 404`)
  }
  t.equal(await upstreamHits(registry, 'HEAD', path), 1 + 1 + 2, 'the index HEAD reached the registry once through Portier; the refused HEADs every time')
})

t.test('GET /v2/ answered by Portier with the registry\'s headers while the upstream is healthy; 401 without credentials', async (t) => {
  const registry = await registryFixture(t)
  const htpasswd = await usersFile(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      // Checks far apart: the registry's access log then counts only requests forwarded to it.
      health: { interval: '1h' },
      admin: { listen: '127.0.0.1:0' },
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'admin' }, actions: ['*'] }] },
    },
  })
  const call = caller(t, gateway, registry)
  await upstreamChecked(gateway)
  const direct = await call('GET', 'registry', '/v2/')
  t.equal(direct.status, 200)
  // The first is forwarded (no connection to the registry open yet) and opens one.
  const opening = await call('GET', 'gateway', '/v2/', { who: ADMIN })
  t.equal(opening.status, 200)
  const before = await upstreamHits(registry, 'GET', '/v2/')
  const answers: Answer[] = []
  for (let i = 0; i < 3; i++) answers.push(await call('GET', 'gateway', '/v2/', { who: ADMIN }))
  t.equal(await upstreamHits(registry, 'GET', '/v2/'), before, 'none of them reached the registry')
  for (const answer of answers) {
    t.equal(answer.status, 200)
    t.same(answer.body, direct.body, 'body as the registry\'s ({})')
    for (const name of ['content-type', 'content-length', 'docker-distribution-api-version', 'x-content-type-options'] as const) {
      t.equal(answer.headers[name], direct.headers[name], `${name} as the registry sends it`)
    }
  }
  const head = await call('HEAD', 'gateway', '/v2/', { who: ADMIN })
  t.equal(head.status, 200, 'HEAD /v2/ (forwarded): 200')
  const anonymous = await call('GET', 'gateway', '/v2/')
  t.equal(anonymous.status, 401, 'no credentials: the 401 challenge, unchanged')
  t.match(String(anonymous.headers['www-authenticate']), /^Basic realm=/)
  t.equal(anonymous.headers['docker-distribution-api-version'], 'registry/2.0')
  const wrong = await call('GET', 'gateway', '/v2/', { who: ['admin', 'wrong'] })
  t.equal(wrong.status, 401, 'wrong credentials: 401')

  // The registry exits: its connections close, so the next GET /v2/ is forwarded and fails at once (checks are an hour apart).
  await registry.stop()
  const down = await call('GET', 'gateway', '/v2/', { who: ADMIN })
  t.equal(down.status, 503, 'registry gone: 503 at once, not a local 200 until the next check')
  t.match(down.body.toString(), /UNAVAILABLE/)
})

t.test('GET /v2/ is forwarded while the upstream answers its checks with 401 (its own challenge is the answer)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-tag-cache-registry-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const registryUsers = join(work, 'htpasswd')
  await writeFile(registryUsers, `reg:${await hashPassword('reg-password', 5)}\n`)
  const registry = await registryFixture(t, { htpasswd: registryUsers })
  // No credentials for it: its checks get 401 (healthy, but not open), and so does every request.
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], health: { interval: '1h' }, admin: { listen: '127.0.0.1:0' } } })
  const call = caller(t, gateway, registry)
  await upstreamChecked(gateway)
  const direct = await call('GET', 'registry', '/v2/')
  t.equal(direct.status, 401)
  const through = await call('GET', 'gateway', '/v2/')
  t.equal(through.status, 401, 'the registry\'s 401, not a local 200')
  t.equal(through.headers['www-authenticate'], direct.headers['www-authenticate'])
})
