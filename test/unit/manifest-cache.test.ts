// ManifestCache: only bytes that hash to the registry's digest are kept, only manifests, and never more than its byte cap.
import t from 'tap'
import { createHash } from 'node:crypto'
import { ManifestCache } from '../../src/forward/manifest-cache.js'
import type { RegistryRequest } from '../../src/registry/classify.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const digestOf = (body: Buffer): string => `sha256:${createHash('sha256').update(body).digest('hex')}`
const get = (repository: string, reference: string): RegistryRequest => ({ method: 'GET', path: `/v2/${repository}/manifests/${reference}`, op: 'manifest.get', repository, reference, scopes: [] } as unknown as RegistryRequest)
const headersOf = (body: Buffer, digest = digestOf(body), type = OCI_MANIFEST) => ({ 'content-type': type, 'content-length': String(body.length), 'docker-content-digest': digest })

t.test('bytes that do not hash to the named digest are not kept', async (t) => {
  const cache = new ManifestCache(1 << 20)
  const body = Buffer.from('{"schemaVersion":2}')
  cache.keep(get('a/app', 'v1'), headersOf(body, `sha256:${'0'.repeat(64)}`), body)
  t.equal(cache.bytes, 0, 'a digest the bytes do not match: nothing kept')
  cache.keep(get('a/app', 'v1'), headersOf(body, digestOf(body), 'application/octet-stream'), body)
  t.equal(cache.bytes, 0, 'not a manifest media type: nothing kept')
  cache.keep(get('a/app', 'v1'), headersOf(body), body)
  t.equal(cache.bytes, body.length, 'a matching digest: kept')
})

t.test('the byte cap pushes out the least recently used', async (t) => {
  const first = Buffer.from(`{"schemaVersion":2,"pad":"${'x'.repeat(60)}"}`)
  const second = Buffer.from(`{"schemaVersion":2,"pad":"${'y'.repeat(60)}"}`)
  const cache = new ManifestCache(first.length + second.length - 1)
  cache.keep(get('a/app', digestOf(first)), headersOf(first), first)
  cache.keep(get('a/app', digestOf(second)), headersOf(second), second)
  t.equal(cache.bytes, second.length, 'only the newer one fits')
  t.ok(cache.wants(get('a/app', 'v1'), 200, headersOf(first)), 'a small manifest GET is worth keeping')
  t.notOk(cache.wants(get('a/app', 'v1'), 404, headersOf(first)), 'an error is not')
})
