// The manifest cache (cache.manifests) against a real registry: answered without the upstream, after authorization, per repository, evicted by DELETE, bounded.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { hashPassword } from '../../src/auth/hashes.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
const KEPT = ['content-type', 'docker-content-digest', 'content-length', 'etag', 'docker-distribution-api-version'] as const

/** Pushes a config blob and an OCI manifest straight into the registry; returns the manifest's bytes and digest. */
async function pushManifest(registry: RegistryHandle, repository: string, tag: string, seed: string): Promise<{ body: Buffer; digest: string }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed, rootfs: { type: 'layers', diff_ids: [] } }))
  const configDigest = sha256(config)
  const started = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', configDigest)
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`config blob push: ${put.status}`)
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] }))
  const stored = await fetch(`${registry.url}/v2/${repository}/manifests/${tag}`, { method: 'PUT', body, headers: { 'content-type': OCI_MANIFEST } })
  if (stored.status !== 201) throw new Error(`manifest push: ${stored.status}`)
  return { body, digest: sha256(body) }
}

/** Requests of the registry's access log for this path and method. */
async function upstreamHits(registry: RegistryHandle, method: string, path: string): Promise<number> {
  return (await registry.log()).split('\n').filter((line) => line.includes(`"${method} ${path} HTTP/1.1"`)).length
}

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `))
  return line === undefined ? Number.NaN : Number(line.split(' ')[1])
}

async function users(entries: Record<string, string>): Promise<string> {
  const lines = await Promise.all(Object.entries(entries).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))
  return lines.join('')
}

t.test('manifests by digest from memory, after authorization, per repository, evicted by DELETE', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-manifest-cache-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, await users({ alice: 'alice-password', admin: 'admin-password' }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      cache: { manifests: { max_bytes: '1MiB' } },
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
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const call = async (method: 'GET' | 'HEAD' | 'DELETE', base: string, path: string, options: { who?: [string, string]; accept?: string } = {}) => {
    const headers: Record<string, string> = { accept: options.accept ?? OCI_MANIFEST }
    if (options.who) headers.authorization = basic(...options.who)
    const response = await request(`${base}${path}`, base === registry.url ? { method, headers } : { dispatcher, method, headers })
    const body = Buffer.from(await response.body.arrayBuffer())
    return { status: response.statusCode, headers: response.headers, body }
  }
  const alice: [string, string] = ['alice', 'alice-password']
  const admin: [string, string] = ['admin', 'admin-password']

  const pushed = await pushManifest(registry, 'a/app', 'v1', 'one')
  await pushManifest(registry, 'b/app', 'v1', 'one') // the same bytes, the same digest, in a repository alice may not read
  const path = `/v2/a/app/manifests/${pushed.digest}`
  const direct = await call('GET', registry.url, path)
  t.equal(direct.status, 200)

  const first = await call('GET', gateway.url, path, { who: alice })
  t.equal(first.status, 200, 'first GET by digest: 200 from the registry')
  t.same(first.body, pushed.body)
  const upstreamBefore = await upstreamHits(registry, 'GET', path)
  t.equal(upstreamBefore, 2, 'the registry saw the direct GET and the first GET through Portier')

  const second = await call('GET', gateway.url, path, { who: alice })
  t.equal(second.status, 200, 'second GET by digest: 200')
  t.same(second.body, pushed.body, 'identical bytes')
  t.equal(sha256(second.body), pushed.digest)
  for (const name of KEPT) t.equal(second.headers[name], direct.headers[name], `${name} as the registry sends it`)
  const head = await call('HEAD', gateway.url, path, { who: alice })
  t.equal(head.status, 200, 'HEAD from the cache: 200')
  t.equal(head.headers['content-length'], String(pushed.body.length), 'HEAD has the Content-Length')
  t.equal(head.headers['docker-content-digest'], pushed.digest)
  t.equal(head.body.length, 0, 'and no body')
  t.equal(await upstreamHits(registry, 'GET', path), upstreamBefore, 'the second GET never reached the registry')
  t.equal(await upstreamHits(registry, 'HEAD', path), 0, 'nor the HEAD')

  const scraped = await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
  t.equal(metric(scraped, 'portier_manifest_cache_hits_total'), 2, 'two hits counted')
  t.equal(metric(scraped, 'portier_manifest_cache_bytes'), pushed.body.length, 'the bytes held')

  // Authorization comes first: the digest is cached (under a/app) and stored in b/app, alice may not read b/app.
  const denied = await call('GET', gateway.url, `/v2/b/app/manifests/${pushed.digest}`, { who: alice })
  t.equal(denied.status, 403, 'a repository alice may not read: 403')
  t.match(denied.body.toString(), /DENIED/)
  const anonymous = await call('GET', gateway.url, path)
  t.equal(anonymous.status, 401, 'no credentials: 401 even for a cached digest')

  // Another repository never holding the digest: the registry's 404, not a.app's entry.
  const elsewhere = `/v2/c/app/manifests/${pushed.digest}`
  const elsewhereDirect = await call('GET', registry.url, elsewhere)
  t.equal(elsewhereDirect.status, 404)
  const elsewhereGateway = await call('GET', gateway.url, elsewhere, { who: admin })
  t.equal(elsewhereGateway.status, 404, 'a digest under a repository that does not hold it: 404')
  t.match(elsewhereGateway.body.toString(), /MANIFEST_UNKNOWN/)

  // An Accept without the OCI type: registry 2.8 refuses the OCI manifest; Portier gives the same answer.
  const refusedDirect = await call('GET', registry.url, path, { accept: DOCKER_MANIFEST })
  const refused = await call('GET', gateway.url, path, { who: alice, accept: DOCKER_MANIFEST })
  t.equal(refused.status, refusedDirect.status, `an Accept without the stored type: the registry's answer (${refusedDirect.status})`)
  t.same(refused.body.toString().includes('MANIFEST_UNKNOWN'), refusedDirect.body.toString().includes('MANIFEST_UNKNOWN'))

  // A DELETE through Portier evicts: afterwards the registry's 404, never the kept copy.
  const deleted = await call('DELETE', gateway.url, path, { who: admin })
  t.equal(deleted.status, 202, 'DELETE by digest: 202')
  const gone = await call('GET', gateway.url, path, { who: admin })
  t.equal(gone.status, 404, 'after the delete: 404')
  t.match(gone.body.toString(), /MANIFEST_UNKNOWN/)
  const goneHead = await call('HEAD', gateway.url, path, { who: admin })
  t.equal(goneHead.status, 404, 'HEAD after the delete: 404')
})

t.test('by tag fills the cache under the digest; the registry stopped, the digest is still served', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], cache: { manifests: { max_bytes: '1MiB' } } } })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const pushed = await pushManifest(registry, 'tagged/app', 'v1', 'two')
  const byTag = await request(`${gateway.url}/v2/tagged/app/manifests/v1`, { dispatcher, headers: { accept: OCI_MANIFEST } })
  t.equal(byTag.statusCode, 200)
  await byTag.body.arrayBuffer()
  await registry.stop()
  const byDigest = await request(`${gateway.url}/v2/tagged/app/manifests/${pushed.digest}`, { dispatcher, headers: { accept: OCI_MANIFEST } })
  t.equal(byDigest.statusCode, 200, 'registry stopped: the digest still answers 200')
  t.same(Buffer.from(await byDigest.body.arrayBuffer()), pushed.body, 'with the manifest bytes')
  t.equal(byDigest.headers['docker-content-digest'], pushed.digest)
  const other = await request(`${gateway.url}/v2/tagged/app/manifests/sha256:${'0'.repeat(64)}`, { dispatcher, headers: { accept: OCI_MANIFEST } })
  await other.body.arrayBuffer()
  t.not(other.statusCode, 200, 'a digest never fetched still needs the (stopped) registry')
})

t.test('a cache smaller than the manifest keeps nothing', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], cache: { manifests: { max_bytes: 16 } } } })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const pushed = await pushManifest(registry, 'tiny/app', 'v1', 'three')
  const path = `/v2/tiny/app/manifests/${pushed.digest}`
  for (let i = 0; i < 2; i++) {
    const response = await request(`${gateway.url}${path}`, { dispatcher, headers: { accept: OCI_MANIFEST } })
    t.equal(response.statusCode, 200)
    t.same(Buffer.from(await response.body.arrayBuffer()), pushed.body)
  }
  t.equal(await upstreamHits(registry, 'GET', path), 2, 'both GETs reached the registry: nothing was kept')
})

t.test('a delete from the web UI evicts too', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], ui: { enabled: true }, cache: { manifests: { max_bytes: '1MiB' } } } })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const pushed = await pushManifest(registry, 'ui/app', 'v1', 'four')
  const path = `/v2/ui/app/manifests/${pushed.digest}`
  const read = async (): Promise<number> => {
    const response = await request(`${gateway.url}${path}`, { dispatcher, headers: { accept: OCI_MANIFEST } })
    await response.body.arrayBuffer()
    return response.statusCode
  }
  t.equal(await read(), 200)
  t.equal(await read(), 200)
  t.equal(await upstreamHits(registry, 'GET', path), 1, 'the second read came from the cache')
  const session = await request(`${gateway.url}/ui/api/session`, { dispatcher })
  const cookie = String(session.headers['set-cookie']).split(';')[0] ?? ''
  const { csrfToken } = (await session.body.json()) as { csrfToken: string }
  const deleted = await request(`${gateway.url}/ui/api/manifest?repository=ui/app&digest=${pushed.digest}`, { dispatcher, method: 'DELETE', headers: { cookie, origin: gateway.url, 'x-csrf-token': csrfToken } })
  await deleted.body.arrayBuffer()
  t.equal(deleted.statusCode, 200, 'the UI deleted the manifest')
  t.equal(await read(), 404, 'after the UI delete: 404, not the kept copy')
})
