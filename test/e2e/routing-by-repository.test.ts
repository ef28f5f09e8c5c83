// routing.strategy by-repository: three registries with their own storage; each repository lives where the hash says, uploads are pinned by signed URLs.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { GatewayClient, MiB, sha256, waitUntil } from '../helpers/gwclient.js'
import { rendezvousOwner } from '../../src/routing/hash.js'

const work = await mkdtemp(join(tmpdir(), 'portier-routing-byrepo-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const registries = [await registryFixture(t), await registryFixture(t), await registryFixture(t)]
const upstreams = registries.map((registry, index) => ({ url: registry.url, name: `r${index}` }))
const routing = { strategy: 'by-repository', secret: `by-repository test secret ${randomBytes(16).toString('hex')}` }
const config = { upstreams, routing, health: { interval: '300ms', timeout: '1s', failure_threshold: 1 } }
const gateway = await gatewayFixture(t, { config })
const client = new GatewayClient(gateway)
t.teardown(() => client.close())

const repositories = Array.from({ length: 10 }, (_, index) => `team${index % 3}/app-${index}`)
const ownerIndex = (repository: string): number => Number(rendezvousOwner(upstreams, repository).name.slice(1))
type Catalog = { repositories: string[] }

async function manifestStatus(registryUrl: string, repository: string): Promise<number> {
  const response = await fetch(`${registryUrl}/v2/${repository}/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  return response.status
}

t.test('ten repositories pushed with skopeo: each is on exactly the upstream the hash names', async (t) => {
  const image = await makeOciLayout(join(work, 'image'), { layers: [8 * 1024] })
  for (const repository of repositories) {
    await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}:v1`, { destCertDir: gateway.certDir })
  }
  const used = new Set<number>()
  for (const repository of repositories) {
    const statuses = await Promise.all(registries.map((registry) => manifestStatus(registry.url, repository)))
    const owner = ownerIndex(repository)
    used.add(owner)
    t.same(statuses, statuses.map((_, index) => (index === owner ? 200 : 404)), `${repository} is on r${owner} only`)
  }
  t.ok(used.size > 1, `the ten repositories are spread over ${used.size} of 3 upstreams`)
  const head = await client.send('HEAD', `/v2/${repositories[0]}/manifests/v1`, { headers: { accept: image.manifestMediaType } })
  t.equal(head.status, 200, 'reads find the repository on its upstream')
  t.equal(head.headers['docker-content-digest'], image.manifestDigest)
})

t.test('the catalog is merged from every upstream, de-duplicated and paginated by Portier', async (t) => {
  const whole = await client.send('GET', '/v2/_catalog')
  t.equal(whole.status, 200)
  t.same((whole.json() as Catalog).repositories, [...repositories].sort(), 'every repository once, sorted')
  t.equal(whole.headers.link, undefined, 'no next page')

  const seen: string[] = []
  let path = '/v2/_catalog?n=3'
  for (let pages = 0; pages < 10; pages++) {
    const page = await client.send('GET', path)
    t.equal(page.status, 200)
    const names = (page.json() as Catalog).repositories
    t.ok(names.length <= 3, `a page holds at most n entries (${names.length})`)
    seen.push(...names)
    const link = page.headers.link as string | undefined
    if (!link) break
    const next = /^<([^>]+)>; rel="next"$/.exec(link)
    t.ok(next, `Link header in the registry's format: ${link}`)
    path = (next as RegExpExecArray)[1] as string
  }
  t.same(seen, [...repositories].sort(), 'walking the pages yields every repository once, in order')
})

t.test('an upload started through one gateway instance finishes through another with the same secret', async (t) => {
  const other = await gatewayFixture(t, { config })
  const otherClient = new GatewayClient(other)
  t.teardown(() => otherClient.close())
  const repository = repositories[4] as string
  const data = randomBytes(MiB + 321)
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  t.equal(started.status, 202)
  const uuid = started.headers['docker-upload-uuid'] as string
  let location = client.pathOf(started.headers.location as string)
  t.match(location, new RegExp(`^/v2/${repository}/blobs/uploads/${uuid}\\?_portier=[A-Za-z0-9_-]+$`), 'a signed upload URL carrying the upstream session')
  t.ok(location.length < 400, `compact (${location.length} characters)`)

  const patched = await client.send('PATCH', location, { headers: { 'content-type': 'application/octet-stream' }, body: data.subarray(0, 600_000) })
  t.equal(patched.status, 202, 'first chunk through instance A')
  t.equal(patched.headers.range, '0-599999')
  location = client.pathOf(patched.headers.location as string)

  const status = await otherClient.send('GET', location)
  t.equal(status.status, 204, 'instance B knows the session')
  t.equal(status.headers.range, '0-599999', 'and how much it holds')
  const digest = sha256(data)
  const finished = await otherClient.send('PUT', `${otherClient.pathOf(status.headers.location as string)}&digest=${encodeURIComponent(digest)}`, {
    headers: { 'content-type': 'application/octet-stream' },
    body: data.subarray(600_000),
  })
  t.equal(finished.status, 201, 'instance B finishes it with the last bytes')
  t.equal(finished.headers['docker-content-digest'], digest)
  const logged = await other.waitForLog((line) => line.op === 'upload.finish' && line.status === 201)
  t.equal(logged.blob_bytes, data.length, 'its access log line has the size of the whole blob (offset read from the signed session)')
  const owner = registries[ownerIndex(repository)] as (typeof registries)[number]
  const direct = Buffer.from(await (await fetch(`${owner.url}/v2/${repository}/blobs/${digest}`)).arrayBuffer())
  t.equal(sha256(direct), digest, 'the whole blob is on the owning upstream')
  t.same(await owner.uploadsOpen(repository), [], 'no upload left open')
})

t.test('a tampered, moved, missing or foreign upload URL is 404 BLOB_UPLOAD_UNKNOWN', async (t) => {
  const repository = repositories[5] as string
  const started = await client.send('POST', `/v2/${repository}/blobs/uploads/`)
  const location = client.pathOf(started.headers.location as string)
  const token = new URL(location, gateway.url).searchParams.get('_portier') as string
  const uuid = started.headers['docker-upload-uuid'] as string
  const flip = (text: string, at: number): string => `${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`
  const foreignGateway = await gatewayFixture(t, { config: { ...config, routing: { ...routing, secret: `another secret entirely, 32 chars or more ${randomBytes(4).toString('hex')}` } } })
  const foreign = new GatewayClient(foreignGateway)
  t.teardown(() => foreign.close())
  const cases: Array<[string, GatewayClient, string]> = [
    ['a changed token byte', client, `/v2/${repository}/blobs/uploads/${uuid}?_portier=${flip(token, 40)}`],
    ['a changed last byte (the MAC)', client, `/v2/${repository}/blobs/uploads/${uuid}?_portier=${flip(token, token.length - 2)}`],
    ['another repository', client, `/v2/${repositories[6]}/blobs/uploads/${uuid}?_portier=${token}`],
    ['another upload id', client, `/v2/${repository}/blobs/uploads/${flip(uuid, 0)}?_portier=${token}`],
    ['no token, the registry\'s own URL shape', client, `/v2/${repository}/blobs/uploads/${uuid}`],
    ['a gateway with another secret', foreign, location],
  ]
  for (const [what, via, path] of cases) {
    const reply = await via.send('PATCH', path, { headers: { 'content-type': 'application/octet-stream' }, body: Buffer.from('x') })
    t.equal(reply.status, 404, `${what}: 404`)
    t.equal(reply.errorCode(), 'BLOB_UPLOAD_UNKNOWN', `${what}: BLOB_UPLOAD_UNKNOWN`)
  }
  const intact = await client.send('DELETE', location)
  t.equal(intact.status, 204, 'the real URL still works (cancelled)')
})

t.test('the size limit counts every chunk of a signed session', async (t) => {
  const limited = await gatewayFixture(t, { config: { ...config, limits: { blob_max_bytes: '1MiB' } } })
  const limitedClient = new GatewayClient(limited)
  t.teardown(() => limitedClient.close())
  const repository = repositories[7] as string
  const started = await limitedClient.send('POST', `/v2/${repository}/blobs/uploads/`)
  const first = await limitedClient.send('PATCH', limitedClient.pathOf(started.headers.location as string), { headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(600 * 1024) })
  t.equal(first.status, 202)
  const second = await limitedClient.send('PATCH', limitedClient.pathOf(first.headers.location as string), { headers: { 'content-type': 'application/octet-stream' }, body: randomBytes(600 * 1024) })
  t.equal(second.status, 413, 'the second chunk crosses the session limit (offset read from the upstream _state in the token)')
  const owner = registries[ownerIndex(repository)] as (typeof registries)[number]
  t.same(await owner.uploadsOpen(repository), [], 'the session was cancelled upstream')
})

t.test('when the owning upstream is down its repositories answer 503 + Retry-After; the others keep working', async (t) => {
  const down = repositories[0] as string
  const downIndex = ownerIndex(down)
  const alive = repositories.find((repository) => ownerIndex(repository) !== downIndex) as string
  const victim = registries[downIndex] as (typeof registries)[number]
  victim.kill('SIGKILL')
  await victim.exited()

  const push = await client.send('POST', `/v2/${down}/blobs/uploads/`)
  t.equal(push.status, 503, 'a write to the dead owner is refused, never moved')
  t.ok(Number(push.headers['retry-after']) > 0, 'with Retry-After')
  t.equal(push.errorCode(), 'UNAVAILABLE')
  const read = await client.send('HEAD', `/v2/${down}/manifests/v1`)
  t.equal(read.status, 503, 'its reads too: no other upstream holds it')
  const other = await client.send('GET', `/v2/${alive}/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  t.equal(other.status, 200, `${alive} on a live upstream still works`)

  t.ok(await waitUntil(async () => (await fetch(`${gateway.adminUrl}/readyz`)).status === 503, 10_000), '/readyz reports not ready')
  const ready = (await (await fetch(`${gateway.adminUrl}/readyz`)).json()) as { checks: Array<{ name: string; detail?: { unreachable?: string[] } }> }
  const check = ready.checks.find((entry) => entry.name === 'upstreams')
  t.same(check?.detail?.unreachable, [`repositories owned by r${downIndex}`], 'naming whose repositories are unreachable')
  const catalog = await client.send('GET', '/v2/_catalog')
  t.equal(catalog.status, 200, 'the catalog still answers from the live upstreams')
  t.same((catalog.json() as Catalog).repositories, repositories.filter((repository) => ownerIndex(repository) !== downIndex).sort())
})

t.test('an upstream whose catalog.maxentries is below the page asked for is still merged (asked again without n)', async (t) => {
  // registry 2.8 answers 400 PAGINATION_NUMBER_INVALID to n above its catalog.maxentries; that upstream used to drop out.
  const small = [await registryFixture(t, { extraConfig: 'catalog:\n  maxentries: 2' }), await registryFixture(t)]
  const smallUpstreams = small.map((registry, index) => ({ url: registry.url, name: `s${index}` }))
  const smallGateway = await gatewayFixture(t, { config: { upstreams: smallUpstreams, routing } })
  const smallClient = new GatewayClient(smallGateway)
  t.teardown(() => smallClient.close())
  const names = Array.from({ length: 12 }, (_, index) => `catalog/small-${String(index).padStart(2, '0')}`)
  const onSmall = names.filter((name) => rendezvousOwner(smallUpstreams, name).name === 's0')
  t.ok(onSmall.length > 2, `more repositories on the limited upstream (${onSmall.length}) than its maxentries`)
  const image = await makeOciLayout(join(work, 'catalog-image'), { layers: [1024] })
  for (const name of names) await skopeoCopy(`oci:${image.dir}:latest`, `docker://${smallGateway.host}/${name}:v1`, { destCertDir: smallGateway.certDir })
  const direct = await fetch(`${small[0]?.url}/v2/_catalog?n=1000`)
  t.equal(direct.status, 400, 'the limited registry itself refuses n=1000')
  await direct.body?.cancel()

  for (const start of ['/v2/_catalog', '/v2/_catalog?n=5']) {
    const seen: string[] = []
    let path = start
    for (let pages = 0; pages < 20; pages++) {
      const page = await smallClient.send('GET', path)
      t.equal(page.status, 200, `${path} answers 200`)
      seen.push(...(page.json() as Catalog).repositories)
      const link = page.headers.link as string | undefined
      if (!link) break
      path = (/^<([^>]+)>; rel="next"$/.exec(link) as RegExpExecArray)[1] as string
    }
    t.same(seen, [...names].sort(), `walking ${start} yields every repository of both upstreams once, in order`)
  }
})
