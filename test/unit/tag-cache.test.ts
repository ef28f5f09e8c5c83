// TagCache: resolutions kept by view, repository, tag and Accept variant, for the TTL counted from the read; writes forget what they move, and reads that overlapped a write keep nothing.
import t from 'tap'
import { acceptVariant, TagCache } from '../../src/forward/tag-cache.js'
import type { Operation, RegistryRequest } from '../../src/registry/classify.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
const D1 = `sha256:${'1'.repeat(64)}`
const D2 = `sha256:${'2'.repeat(64)}`
const METHODS: Partial<Record<Operation, string>> = { 'manifest.get': 'GET', 'manifest.head': 'HEAD', 'manifest.put': 'PUT', 'manifest.delete': 'DELETE' }
const request = (op: Operation, repository: string, reference: string, query = ''): RegistryRequest =>
  ({ method: METHODS[op] ?? 'GET', path: `/v2/${repository}/manifests/${reference}`, query, op, repository, reference, scopes: [] }) as unknown as RegistryRequest
const head = (repository: string, tag: string): RegistryRequest => request('manifest.head', repository, tag)
const answer = (digest: string, type = OCI_MANIFEST, length = 123) => ({ 'content-type': type, 'content-length': String(length), 'docker-content-digest': digest, etag: `"${digest}"`, 'docker-distribution-api-version': 'registry/2.0', date: 'x' })

function clocked(ttlMs = 1000, maxEntries = 100) {
  let now = 0
  const counted = { hits: 0, misses: 0, entries: 0 }
  const cache = new TagCache({ ttlMs, maxEntries, now: () => now }, { hit: () => counted.hits++, miss: () => counted.misses++, entries: (held) => (counted.entries = held) })
  return { cache, counted, advance: (ms: number) => (now += ms) }
}

t.test('only manifest reads by tag without a query are eligible; writes move tags', async (t) => {
  t.ok(TagCache.eligible(head('a/app', 'v1')))
  t.ok(TagCache.eligible(request('manifest.get', 'a/app', 'v1')))
  t.notOk(TagCache.eligible(head('a/app', D1)), 'by digest: the manifest cache, not this one')
  t.notOk(TagCache.eligible(request('manifest.get', 'a/app', 'v1', 'ns=docker.io')), 'a query may route the name elsewhere')
  t.notOk(TagCache.eligible(request('manifest.put', 'a/app', 'v1')))
  t.ok(TagCache.moves(request('manifest.put', 'a/app', 'v1')))
  t.ok(TagCache.moves(request('manifest.delete', 'a/app', D1)))
  t.notOk(TagCache.moves(head('a/app', 'v1')))
})

t.test('the Accept variant: the manifest types registry 2.8 reads, nothing else', async (t) => {
  t.equal(acceptVariant(undefined), 0)
  t.equal(acceptVariant('*/*'), 0, 'wildcards mean nothing to registry 2.8')
  t.equal(acceptVariant(`${OCI_MANIFEST}, ${OCI_INDEX}`), acceptVariant(`${OCI_INDEX};q=0.5,${OCI_MANIFEST}`), 'order and parameters do not matter')
  t.not(acceptVariant(OCI_MANIFEST), acceptVariant(`${OCI_MANIFEST}, ${OCI_INDEX}`), 'an index-accepting client is another variant')
  t.not(acceptVariant(DOCKER_MANIFEST), acceptVariant(`${DOCKER_MANIFEST}, ${DOCKER_LIST}`))
})

t.test('kept by view, repository, tag and Accept variant; the registry headers only', async (t) => {
  const { cache, counted } = clocked()
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  const found = cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST)
  t.equal(found?.digest, D1)
  t.equal(found?.size, 123)
  t.same(found?.headers, { 'content-type': OCI_MANIFEST, 'docker-content-digest': D1, 'content-length': '123', etag: `"${D1}"`, 'docker-distribution-api-version': 'registry/2.0' }, 'no Date or other headers kept')
  t.equal(cache.lookup('other', head('a/app', 'v1'), OCI_MANIFEST), undefined, 'another upstream view')
  t.equal(cache.lookup('up', head('b/app', 'v1'), OCI_MANIFEST), undefined, 'another repository')
  t.equal(cache.lookup('up', head('a/app', 'v2'), OCI_MANIFEST), undefined, 'another tag')
  t.equal(cache.lookup('up', head('a/app', 'v1'), `${OCI_MANIFEST}, ${OCI_INDEX}`), undefined, 'another Accept variant')
  t.equal(cache.lookup('up', request('manifest.get', 'a/app', 'v1'), OCI_MANIFEST)?.digest, D1, 'GET and HEAD share the resolution')
  t.equal(counted.entries, 1)
})

t.test('only a 200 naming a sha256 digest, a manifest type and a length is kept', async (t) => {
  const { cache } = clocked()
  const keep = (status: number, headers: Record<string, string>): void => cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, cache.begin(), status, headers)
  keep(404, answer(D1))
  keep(200, { ...answer(D1), 'docker-content-digest': 'sha512:abc' })
  keep(200, answer(D1, 'application/vnd.docker.distribution.manifest.v1+prettyjws'))
  keep(200, { ...answer(D1), 'content-length': 'x' })
  t.equal(cache.size, 0, 'nothing kept')
})

t.test('the TTL counts from when the read was sent', async (t) => {
  const { cache, advance } = clocked(1000)
  const ticket = cache.begin()
  advance(400) // a slow answer
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, ticket, 200, answer(D1))
  advance(500)
  t.equal(cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST)?.digest, D1, '900 ms after the read: still there')
  advance(101)
  t.equal(cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST), undefined, '1001 ms after the read: gone, though kept only 601 ms ago')
  const late = cache.begin()
  advance(1000)
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, late, 200, answer(D1))
  t.equal(cache.size, 0, 'an answer that took the whole TTL is not kept')
})

t.test('a PUT by tag forgets that tag in every view and variant; by digest it does not move tags', async (t) => {
  const { cache } = clocked()
  for (const view of ['one', 'two']) {
    for (const accept of [OCI_MANIFEST, `${OCI_MANIFEST}, ${OCI_INDEX}`]) cache.keep(view, head('a/app', 'v1'), accept, cache.begin(), 200, answer(D1))
  }
  cache.keep('one', head('a/app', 'v2'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.keep('one', head('b/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  t.equal(cache.size, 6)
  cache.forget(request('manifest.put', 'a/app', D2))
  t.equal(cache.size, 6, 'a PUT by digest moves no tag')
  cache.forget(request('manifest.put', 'a/app', 'v1'))
  t.equal(cache.size, 2, 'a/app:v1 gone from both views and both variants')
  t.ok(cache.lookup('one', head('a/app', 'v2'), OCI_MANIFEST), 'another tag stays')
  t.ok(cache.lookup('one', head('b/app', 'v1'), OCI_MANIFEST), 'the same tag in another repository stays')
})

t.test('a DELETE by digest forgets every tag of the repository pointing at it', async (t) => {
  const { cache, counted } = clocked()
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.keep('up', head('a/app', 'latest'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.keep('up', head('a/app', 'v2'), OCI_MANIFEST, cache.begin(), 200, answer(D2))
  cache.keep('up', head('b/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.keep('up', head('a/app', `sha256-${'2'.repeat(64)}`), OCI_INDEX, cache.begin(), 200, answer(D2, OCI_INDEX))
  cache.forget(request('manifest.delete', 'a/app', D1))
  t.equal(cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST), undefined)
  t.equal(cache.lookup('up', head('a/app', 'latest'), OCI_MANIFEST), undefined)
  t.equal(cache.lookup('up', head('a/app', 'v2'), OCI_MANIFEST)?.digest, D2, 'a tag pointing elsewhere stays')
  t.equal(cache.lookup('up', head('b/app', 'v1'), OCI_MANIFEST)?.digest, D1, 'another repository stays')
  t.equal(cache.lookup('up', head('a/app', `sha256-${'2'.repeat(64)}`), OCI_INDEX), undefined, 'a referrers fallback tag may have moved: forgotten')
  t.equal(counted.entries, 2)
  cache.forget(request('manifest.delete', 'a/app', 'v2'))
  t.equal(cache.lookup('up', head('a/app', 'v2'), OCI_MANIFEST), undefined, 'a DELETE by tag forgets that tag')
})

t.test('a read that overlapped a write keeps nothing', async (t) => {
  const { cache } = clocked()
  const before = cache.begin()
  cache.forget(request('manifest.put', 'a/app', 'v1'))
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, before, 200, answer(D1))
  t.equal(cache.size, 0, 'sent before the write began: not kept')
  const during = cache.begin()
  cache.forget(request('manifest.put', 'a/app', 'v1')) // the write ended
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, during, 200, answer(D1))
  t.equal(cache.size, 0, 'sent while the write was out: not kept')
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D2))
  t.equal(cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST)?.digest, D2, 'sent after it ended: kept')
})

t.test('bounded: the least recently used goes first', async (t) => {
  const { cache } = clocked(60_000, 2)
  cache.keep('up', head('a/app', 'v1'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.keep('up', head('a/app', 'v2'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST)
  cache.keep('up', head('a/app', 'v3'), OCI_MANIFEST, cache.begin(), 200, answer(D1))
  t.equal(cache.size, 2)
  t.ok(cache.lookup('up', head('a/app', 'v1'), OCI_MANIFEST), 'used recently: kept')
  t.equal(cache.lookup('up', head('a/app', 'v2'), OCI_MANIFEST), undefined, 'least recently used: pushed out')
})
