// The OCI distribution spec at the edge, uploads and referrers: stale upload URLs and the OCI 1.1 referrers API through Portier in every auth mode, next to what registry 2.8.2 alone does.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { registryFixture } from '../helpers/registry.js'
import { sha256 } from '../helpers/gwclient.js'
import { conformanceSetup, modes, MT_MANIFEST, pushImage, relative, routedTarget, routingSecret, type Target } from '../helpers/conformance.js'

const { registry, bare, gatewayTarget } = await conformanceSetup(t)

/**
 * The conformance suite's chunked-upload steps: an out-of-order chunk, a re-sent chunk and a status
 * request on an old upload URL, then the upload completes from the URL the status request gave.
 * Answers the blob's digest.
 */
async function chunkedUpload(t: Test, target: Target, repository: string, uploadsOpen: () => Promise<string[]>): Promise<string> {
  const scope = `repository:${repository}:pull,push`
  const blob = randomBytes(300_000)
  const chunk1 = blob.subarray(0, 120_000)
  const chunk2 = blob.subarray(120_000)
  const range1 = `0-${chunk1.length - 1}`
  const range2 = `${chunk1.length}-${blob.length - 1}`
  const octets = { 'content-type': 'application/octet-stream' }

  const other = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } })
  const outOfOrder = await target.send('PATCH', relative(target, other.headers.location), { scope, body: chunk2, headers: { ...octets, 'content-range': range2 } })
  t.equal(outOfOrder.status, 416, `${target.name}: a chunk that does not start at 0 is 416`)
  t.equal(outOfOrder.errorCode(), 'RANGE_INVALID', `${target.name}: RANGE_INVALID`)

  const started = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } })
  t.equal(started.status, 202, `${target.name}: POST starts the upload`)
  const first = relative(target, started.headers.location)
  const uuid = started.headers['docker-upload-uuid']
  const patched = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(patched.status, 202, `${target.name}: the first chunk is accepted`)
  t.equal(patched.headers.range, range1, `${target.name}: Range covers the first chunk`)
  const openBefore = await uploadsOpen()

  const resent = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(resent.status, 416, `${target.name}: the first chunk re-sent on the old URL is 416`)
  t.equal(resent.errorCode(), 'RANGE_INVALID', `${target.name}: RANGE_INVALID in the JSON error format`)
  t.equal(resent.headers.range, range1, `${target.name}: the 416 says what the session holds`)
  t.equal(resent.headers['docker-upload-uuid'], uuid, `${target.name}: and which session`)
  t.ok(typeof resent.headers.location === 'string', `${target.name}: and where to continue`)
  const unranged = await target.send('PATCH', first, { scope, body: chunk2, headers: octets })
  t.equal(unranged.status, 416, `${target.name}: a chunk without Content-Range on the old URL is 416 too (it may be the previous one again)`)
  t.same(await uploadsOpen(), openBefore, `${target.name}: the session survives on disk (registry 2.8 cancels it on a stale _state)`)

  const status = await target.send('GET', first, { scope })
  t.equal(status.status, 204, `${target.name}: GET on the old upload URL is 204`)
  t.equal(status.headers.range, range1, `${target.name}: with the current Range`)
  t.equal(status.headers['docker-upload-uuid'], uuid, `${target.name}: and Docker-Upload-UUID`)
  const next = relative(target, status.headers.location)

  const second = await target.send('PATCH', next, { scope, body: chunk2, headers: { ...octets, 'content-range': range2 } })
  t.equal(second.status, 202, `${target.name}: the second chunk on the URL from the status request`)
  t.equal(second.headers.range, `0-${blob.length - 1}`, `${target.name}: Range covers the whole blob`)
  const finishUrl = new URL(relative(target, second.headers.location), target.url)
  finishUrl.searchParams.set('digest', sha256(blob))
  const finished = await target.send('PUT', `${finishUrl.pathname}${finishUrl.search}`, { scope, headers: { ...octets, 'content-length': '0' } })
  t.equal(finished.status, 201, `${target.name}: PUT ?digest= completes it`)
  t.equal(finished.headers['docker-content-digest'], sha256(blob), `${target.name}: Docker-Content-Digest`)
  const read = await target.send('GET', `/v2/${repository}/blobs/${sha256(blob)}`, { scope })
  t.equal(sha256(read.body), sha256(blob), `${target.name}: every byte, in order`)
  const after = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(after.status, 404, `${target.name}: after the upload is finished, its old URL is unknown`)
  return sha256(blob)
}

t.test('chunked uploads: out-of-order and re-sent chunks get 416, an old upload URL answers from the real offset', async (t) => {
  const repository = 'conf/chunked'
  const uploadsOpen = (): Promise<string[]> => registry.uploadsOpen(repository)

  // What registry 2.8.2 alone does with the re-sent chunk: 404 BLOB_UPLOAD_INVALID, and the session is gone.
  const started = await bare.send('POST', `/v2/${repository}/blobs/uploads/`)
  const first = relative(bare, started.headers.location)
  const chunk = randomBytes(1000)
  const headers = { 'content-type': 'application/octet-stream', 'content-range': '0-999' }
  t.equal((await bare.send('PATCH', first, { body: chunk, headers })).status, 202, 'bare registry: first chunk')
  const resent = await bare.send('PATCH', first, { body: chunk, headers })
  t.equal(resent.status, 404, 'bare registry: the re-sent chunk is 404 (the failure Portier fixes)')
  t.equal(resent.errorCode(), 'BLOB_UPLOAD_INVALID', 'bare registry: BLOB_UPLOAD_INVALID')
  t.equal((await bare.send('GET', first)).status, 404, 'bare registry: and the session is gone')

  for (const mode of modes) {
    const { target } = await gatewayTarget(mode)
    await chunkedUpload(t, target, repository, uploadsOpen)
  }

  // Portier holding the sessions itself in the registry's storage (upstreams[].storage_uploads): the same answers.
  const { target, gateway } = await routedTarget(t, 'Portier with storage uploads', {
    upstreams: [{ url: registry.url, name: 'disk', storage: registry.storageDir, storage_uploads: true }],
  })
  await chunkedUpload(t, target, repository, uploadsOpen)
  await gateway.logsSettled()
  const chunks = gateway.logs.filter((line) => line.op === 'upload.chunk' && line.repository === repository)
  t.ok(chunks.length > 0 && chunks.every((line) => line.upstream === 'storage:disk'), `${target.name}: every PATCH was answered from storage (${chunks.length})`)
})

t.test('chunked uploads with signed upload URLs (routing by repository)', async (t) => {
  const second = await registryFixture(t)
  const registries = [registry, second]
  const { target } = await routedTarget(t, 'Portier by repository', {
    upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
    routing: { strategy: 'by-repository', secret: routingSecret() },
  })
  const repository = 'conf/chunked-signed'
  const uploadsOpen = async (): Promise<string[]> => (await Promise.all(registries.map((one) => one.uploadsOpen(repository)))).flat()
  await chunkedUpload(t, target, repository, uploadsOpen)
})

t.test('chunked uploads with mirror routing: the same answers, and the blob lands on every mirror', async (t) => {
  const second = await registryFixture(t)
  const registries = [registry, second]
  const { target } = await routedTarget(t, 'Portier mirror', {
    upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
    routing: { strategy: 'mirror', secret: routingSecret(), mirror: { require: 'all' } },
  })
  const repository = 'conf/chunked-mirror'
  const uploadsOpen = async (): Promise<string[]> => (await Promise.all(registries.map((one) => one.uploadsOpen(repository)))).flat()
  const digest = await chunkedUpload(t, target, repository, uploadsOpen)
  for (const [index, one] of registries.entries()) {
    const read = await fetch(`${one.url}/v2/${repository}/blobs/${digest}`)
    t.equal(read.status, 200, `mirror ${index}: holds the blob (read directly)`)
    t.equal(sha256(Buffer.from(await read.arrayBuffer())), digest, `mirror ${index}: every byte, in order`)
  }
})

const MT_INDEX = 'application/vnd.oci.image.index.v1+json'
const MT_EMPTY = 'application/vnd.oci.empty.v1+json'
const emptyJson = Buffer.from('{}')

interface IndexBody {
  schemaVersion: number
  mediaType: string
  manifests: Array<{ mediaType: string; digest: string; size: number; artifactType?: string; annotations?: Record<string, string> }>
}

/** A signature-like artifact made by hand: artifactType, an empty config, and a subject. */
function artifact(subject: { digest: string; size: number }, artifactType: string, note: string): Buffer {
  const empty = { mediaType: MT_EMPTY, digest: sha256(emptyJson), size: emptyJson.length }
  return Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    artifactType,
    config: empty,
    layers: [empty],
    subject: { mediaType: MT_MANIFEST, digest: subject.digest, size: subject.size },
    annotations: { 'org.example.note': note },
  }))
}

t.test('referrers (OCI 1.1): OCI-Subject, GET /referrers/<digest> with artifactType filter, the fallback tag, deletes', async (t) => {
  for (const mode of ['none', 'token'] as const) {
    const { target } = await gatewayTarget(mode)
    const repository = `conf/referrers-${mode}`
    const scope = `repository:${repository}:pull,push,delete`
    const subject = await pushImage(target, repository, ['v1'])
    const started = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope })
    const emptyUrl = new URL(relative(target, started.headers.location), target.url)
    emptyUrl.searchParams.set('digest', sha256(emptyJson))
    t.equal((await target.send('PUT', `${emptyUrl.pathname}${emptyUrl.search}`, { scope, body: emptyJson, headers: { 'content-type': 'application/octet-stream' } })).status, 201, `${target.name}: the empty config blob`)

    const signature = artifact({ digest: subject.digest, size: subject.body.length }, 'application/vnd.example.signature', 'sig-1')
    const put = await target.send('PUT', `/v2/${repository}/manifests/${sha256(signature)}`, { scope, body: signature, headers: { 'content-type': MT_MANIFEST } })
    t.equal(put.status, 201, `${target.name}: a referrer is stored`)
    t.equal(put.headers['oci-subject'], subject.digest, `${target.name}: OCI-Subject names its subject`)
    t.equal(put.headers['docker-content-digest'], sha256(signature), `${target.name}: Docker-Content-Digest of the referrer`)
    const plain = await pushImage(target, repository, ['v2'])
    t.ok(plain.digest, `${target.name}: a manifest without subject still pushes`)

    // Two referrers pushed at the same time both end up listed.
    const sbom = artifact({ digest: subject.digest, size: subject.body.length }, 'application/vnd.example.sbom', 'sbom-1')
    const signature2 = artifact({ digest: subject.digest, size: subject.body.length }, 'application/vnd.example.signature', 'sig-2')
    const together = await Promise.all([sbom, signature2].map((body) => target.send('PUT', `/v2/${repository}/manifests/${sha256(body)}`, { scope, body, headers: { 'content-type': MT_MANIFEST } })))
    t.same(together.map((reply) => reply.status), [201, 201], `${target.name}: both concurrent referrers stored`)

    const listed = await target.send('GET', `/v2/${repository}/referrers/${subject.digest}`, { scope: `repository:${repository}:pull`, anonymous: true })
    t.equal(listed.status, 200, `${target.name}: GET referrers`)
    t.equal(listed.headers['content-type'], MT_INDEX, `${target.name}: an image index`)
    const index = listed.json() as IndexBody
    t.equal(index.schemaVersion, 2)
    t.equal(index.mediaType, MT_INDEX)
    t.same(index.manifests.map((entry) => entry.digest).sort(), [signature, sbom, signature2].map((body) => sha256(body)).sort(), `${target.name}: all three referrers, the two concurrent ones included`)
    const first = index.manifests.find((entry) => entry.digest === sha256(signature))
    t.same(first, { mediaType: MT_MANIFEST, digest: sha256(signature), size: signature.length, artifactType: 'application/vnd.example.signature', annotations: { 'org.example.note': 'sig-1' } }, `${target.name}: each descriptor carries artifactType and annotations`)

    const filtered = await target.send('GET', `/v2/${repository}/referrers/${subject.digest}?artifactType=${encodeURIComponent('application/vnd.example.signature')}`, { scope: `repository:${repository}:pull`, anonymous: true })
    t.equal(filtered.headers['oci-filters-applied'], 'artifactType', `${target.name}: OCI-Filters-Applied`)
    t.same((filtered.json() as IndexBody).manifests.map((entry) => entry.digest).sort(), [signature, signature2].map((body) => sha256(body)).sort(), `${target.name}: only signatures`)

    const unknown = await target.send('GET', `/v2/${repository}/referrers/sha256:${'0'.repeat(64)}`, { scope: `repository:${repository}:pull`, anonymous: true })
    t.equal(unknown.status, 200, `${target.name}: an unknown digest: 200`)
    t.same(unknown.json(), { schemaVersion: 2, mediaType: MT_INDEX, manifests: [] }, `${target.name}: an empty index`)
    t.equal(unknown.headers['content-type'], MT_INDEX)

    // Clients without the referrers API read the fallback tag: the registry itself holds the same list.
    const fallback = await bare.send('GET', `/v2/${repository}/manifests/sha256-${subject.digest.slice('sha256:'.length)}`, { headers: { accept: MT_INDEX } })
    t.equal(fallback.status, 200, `${target.name}: the fallback tag exists in the registry`)
    t.same((fallback.json() as IndexBody).manifests.map((entry) => entry.digest).sort(), index.manifests.map((entry) => entry.digest).sort(), `${target.name}: and lists the same referrers`)

    const deleted = await target.send('DELETE', `/v2/${repository}/manifests/${sha256(sbom)}`, { scope })
    t.equal(deleted.status, 202, `${target.name}: a referrer is deleted`)
    const after = await target.send('GET', `/v2/${repository}/referrers/${subject.digest}`, { scope: `repository:${repository}:pull`, anonymous: true })
    t.same((after.json() as IndexBody).manifests.map((entry) => entry.digest).sort(), [signature, signature2].map((body) => sha256(body)).sort(), `${target.name}: and leaves the list`)
    const fallbackAfter = await bare.send('GET', `/v2/${repository}/manifests/sha256-${subject.digest.slice('sha256:'.length)}`, { headers: { accept: MT_INDEX } })
    t.equal((fallbackAfter.json() as IndexBody).manifests.length, 2, `${target.name}: the fallback tag too`)
  }
  const bareReferrers = await bare.send('GET', `/v2/conf/referrers-none/referrers/sha256:${'0'.repeat(64)}`)
  t.equal(bareReferrers.status, 404, 'registry 2.8.2 alone has no referrers API (the failure Portier fixes)')
})

t.test('referrers with mirror routing: OCI-Subject, GET /referrers/<digest>, the fallback tag on every mirror', async (t) => {
  const second = await registryFixture(t)
  const registries = [registry, second]
  const { target } = await routedTarget(t, 'Portier mirror', {
    upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
    routing: { strategy: 'mirror', secret: routingSecret(), mirror: { require: 'all' } },
  })
  const repository = 'conf/referrers-mirror'
  const subject = await pushImage(target, repository, ['v1'])
  const started = await target.send('POST', `/v2/${repository}/blobs/uploads/`)
  const emptyUrl = new URL(relative(target, started.headers.location), target.url)
  emptyUrl.searchParams.set('digest', sha256(emptyJson))
  t.equal((await target.send('PUT', `${emptyUrl.pathname}${emptyUrl.search}`, { body: emptyJson, headers: { 'content-type': 'application/octet-stream' } })).status, 201, 'the empty config blob')

  const referrers = ['sig-1', 'sig-2'].map((note) => artifact({ digest: subject.digest, size: subject.body.length }, 'application/vnd.example.signature', note))
  // Pushed at the same time: both end up listed on every mirror.
  const puts = await Promise.all(referrers.map((body) => target.send('PUT', `/v2/${repository}/manifests/${sha256(body)}`, { body, headers: { 'content-type': MT_MANIFEST } })))
  t.same(puts.map((put) => put.status), [201, 201], 'both referrers are stored')
  t.same(puts.map((put) => put.headers['oci-subject']), [subject.digest, subject.digest], 'OCI-Subject names their subject')
  const expected = referrers.map((body) => sha256(body)).sort()

  const listed = await target.send('GET', `/v2/${repository}/referrers/${subject.digest}`)
  t.equal(listed.status, 200, 'GET referrers')
  t.equal(listed.headers['content-type'], MT_INDEX, 'an image index')
  t.same((listed.json() as IndexBody).manifests.map((entry) => entry.digest).sort(), expected, 'lists both referrers')

  for (const [index, one] of registries.entries()) {
    const fallback = await fetch(`${one.url}/v2/${repository}/manifests/sha256-${subject.digest.slice('sha256:'.length)}`, { headers: { accept: MT_INDEX } })
    t.equal(fallback.status, 200, `mirror ${index}: the fallback tag exists (read directly)`)
    const body = (await fallback.json()) as IndexBody
    t.same(body.manifests.map((entry) => entry.digest).sort(), expected, `mirror ${index}: and lists both referrers`)
    for (const referrer of referrers) {
      const stored = await fetch(`${one.url}/v2/${repository}/manifests/${sha256(referrer)}`, { method: 'HEAD', headers: { accept: MT_MANIFEST } })
      t.equal(stored.status, 200, `mirror ${index}: holds the referrer ${sha256(referrer)}`)
    }
  }

  const [gone, kept] = referrers as [Buffer, Buffer]
  const deleted = await target.send('DELETE', `/v2/${repository}/manifests/${sha256(gone)}`)
  t.equal(deleted.status, 202, 'a referrer is deleted')
  const after = await target.send('GET', `/v2/${repository}/referrers/${subject.digest}`)
  t.same((after.json() as IndexBody).manifests.map((entry) => entry.digest), [sha256(kept)], 'and leaves the list')
  for (const [index, one] of registries.entries()) {
    const fallback = await fetch(`${one.url}/v2/${repository}/manifests/sha256-${subject.digest.slice('sha256:'.length)}`, { headers: { accept: MT_INDEX } })
    t.same(((await fallback.json()) as IndexBody).manifests.map((entry) => entry.digest), [sha256(kept)], `mirror ${index}: the fallback tag lists only the one left`)
  }
})
