// Immutable tags (immutable_tags) against a real registry with skopeo: a first push and the same manifest again pass, other bytes and deletes are refused.
import t from 'tap'
import { mkdtemp, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

t.test('an immutable tag keeps its digest and cannot be deleted; other tags and repositories are untouched', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-immutable-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      immutable_tags: [{ repositories: 'prod/**', tags: ['v*'] }],
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const call = async (method: 'GET' | 'HEAD' | 'DELETE' | 'PUT', base: string, path: string, body?: Buffer) => {
    const headers: Record<string, string> = { accept: OCI_MANIFEST }
    if (body) headers['content-type'] = OCI_MANIFEST
    const response = await request(`${base}${path}`, base === registry.url ? { method, headers, body } : { dispatcher, method, headers, body })
    return { status: response.statusCode, headers: response.headers, body: Buffer.from(await response.body.arrayBuffer()) }
  }
  const push = (dir: string, ref: string) => skopeoCopy(`oci:${dir}:latest`, `docker://${gateway.host}/${ref}`, { destCertDir: gateway.certDir, allowFailure: true })
  const digestOnRegistry = async (repository: string, tag: string) => (await call('HEAD', registry.url, `/v2/${repository}/manifests/${tag}`)).headers['docker-content-digest']

  const first = await makeOciLayout(join(work, 'first'), { layers: [64 * 1024] })
  const second = await makeOciLayout(join(work, 'second'), { layers: [64 * 1024] })
  t.not(first.manifestDigest, second.manifestDigest, 'two different images')

  const pushed = await push(first.dir, 'prod/app:v1')
  t.equal(pushed.code, 0, `first push of prod/app:v1 succeeds: ${pushed.stderr}`)
  t.equal(await digestOnRegistry('prod/app', 'v1'), first.manifestDigest, 'the registry holds the first image under v1')

  const moved = await push(second.dir, 'prod/app:v1')
  t.not(moved.code, 0, 'skopeo fails to push other bytes under v1')
  t.match(moved.stderr, /denied/i, 'skopeo prints the denial')
  t.match(moved.stderr, /immutable/, 'and that the tag is immutable')
  t.comment(`skopeo says: ${moved.stderr.trim()}`)
  t.equal(await digestOnRegistry('prod/app', 'v1'), first.manifestDigest, 'v1 still points to the first image')

  // The same refusal read directly: status and body in the registry's error format.
  const secondManifest = readFileSync(join(second.dir, 'blobs', 'sha256', second.manifestDigest.slice('sha256:'.length)))
  const direct = await call('PUT', gateway.url, '/v2/prod/app/manifests/v1', secondManifest)
  t.equal(direct.status, 403, 'PUT of another manifest over v1: 403')
  const error = (JSON.parse(direct.body.toString()) as { errors: Array<{ code: string; message: string; detail: Record<string, unknown> }> }).errors[0]
  t.equal(error?.code, 'DENIED', 'code DENIED (distribution has none for immutability)')
  t.match(error?.message, /prod\/app:v1 is immutable \(immutable_tags\[0\] \(prod\/\*\* v\*\)\)/, 'the message names the tag and the rule')
  t.equal(error?.detail.current, first.manifestDigest, 'detail: the digest v1 points to')
  t.equal(error?.detail.pushed, second.manifestDigest, 'detail: the digest of the refused body')
  t.equal(direct.headers['docker-distribution-api-version'], 'registry/2.0')

  const again = await push(first.dir, 'prod/app:v1')
  t.equal(again.code, 0, `pushing the same image to v1 again succeeds: ${again.stderr}`)
  const firstManifest = readFileSync(join(first.dir, 'blobs', 'sha256', first.manifestDigest.slice('sha256:'.length)))
  const samePut = await call('PUT', gateway.url, '/v2/prod/app/manifests/v1', firstManifest)
  t.equal(samePut.status, 201, 'a direct PUT of the same bytes: 201 (the body read for the check reaches the registry)')
  t.equal(samePut.headers['docker-content-digest'], first.manifestDigest)

  const otherTag = await push(second.dir, 'prod/app:latest')
  t.equal(otherTag.code, 0, 'a tag no rule matches can be pushed')
  const otherMove = await push(first.dir, 'prod/app:latest')
  t.equal(otherMove.code, 0, 'and moved')
  const elsewhere = await push(second.dir, 'dev/app:v1')
  t.equal(elsewhere.code, 0, 'v1 in a repository no rule matches')
  t.equal((await push(first.dir, 'dev/app:v1')).code, 0, 'can be moved')

  const deleteByDigest = await call('DELETE', gateway.url, `/v2/prod/app/manifests/${first.manifestDigest}`)
  t.equal(deleteByDigest.status, 403, 'deleting the digest v1 points to: 403')
  t.match(deleteByDigest.body.toString(), /immutable tag prod\/app:v1/, 'naming the tag that protects it')
  t.equal((await call('GET', registry.url, `/v2/prod/app/manifests/${first.manifestDigest}`)).status, 200, 'the manifest is still in the registry')
  // The web UI's delete goes through the same check (auth.mode none: the anonymous session may delete).
  const session = await request(`${gateway.url}/ui/api/session`, { dispatcher })
  const { csrfToken } = (await session.body.json()) as { csrfToken: string }
  const cookie = String(session.headers['set-cookie']).split(';')[0] as string
  const uiDelete = await request(`${gateway.url}/ui/api/manifest?repository=prod/app&digest=${first.manifestDigest}`, {
    dispatcher, method: 'DELETE', headers: { cookie, origin: gateway.url, 'x-csrf-token': csrfToken },
  })
  const uiBody = await uiDelete.body.text()
  t.equal(uiDelete.statusCode, 403, 'the web UI cannot delete it either')
  t.match(uiBody, /immutable tag prod\/app:v1/)
  t.equal((await call('GET', registry.url, `/v2/prod/app/manifests/${first.manifestDigest}`)).status, 200, 'still in the registry')
  const deleteByTag = await call('DELETE', gateway.url, '/v2/prod/app/manifests/v1')
  t.equal(deleteByTag.status, 403, 'deleting the tag itself: 403')

  // prod/app:latest now points to the first image too; the second image has no immutable tag in prod/app.
  await push(second.dir, 'prod/app:scratch')
  await push(first.dir, 'prod/app:scratch')
  const free = await call('DELETE', gateway.url, `/v2/prod/app/manifests/${second.manifestDigest}`)
  t.equal(free.status, 202, 'a digest no immutable tag points to can be deleted')
  t.equal((await call('GET', registry.url, `/v2/prod/app/manifests/${second.manifestDigest}`)).status, 404, 'and is gone from the registry')
})

t.test('two first pushes of different bytes to one immutable tag at once: one wins, the other is refused', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], immutable_tags: [{ repositories: 'prod/**', tags: ['v*'] }] } })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
  // A config blob straight into the registry, then manifests that differ only in an annotation.
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  const started = await fetch(`${registry.url}/v2/prod/race/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', sha256(config))
  t.equal((await fetch(location, { method: 'PUT', body: config })).status, 201)
  const manifest = (n: number): Buffer => Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [], annotations: { n: String(n) },
  }))
  for (let round = 0; round < 3; round++) {
    const bodies = [manifest(round * 2), manifest(round * 2 + 1)]
    const statuses = await Promise.all(bodies.map(async (body) => {
      const response = await request(`${gateway.url}/v2/prod/race/manifests/v${round}`, { dispatcher, method: 'PUT', body, headers: { 'content-type': OCI_MANIFEST } })
      await response.body.dump()
      return response.statusCode
    }))
    t.same([...statuses].sort(), [201, 403], `round ${round}: one push stored, the other refused`)
    const head = await fetch(`${registry.url}/v2/prod/race/manifests/v${round}`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } })
    const winner = bodies[statuses.indexOf(201)] as Buffer
    t.equal(head.headers.get('docker-content-digest'), sha256(winner), 'the tag points to the push that was answered 201')
  }
})
