// Referrers kept by the gateway: the fallback tag's name, the descriptor listed for a referrer, and the artifactType filter.
import t from 'tap'
import { createHash } from 'node:crypto'
import { emptyIndex, fallbackTag, filterByArtifactType, mayHaveSubject, referrerOf } from '../../src/forward/referrers.js'
import { classify } from '../../src/registry/classify.js'

const subject = `sha256:${'ab'.repeat(32)}`

t.test('the fallback tag: <alg>-<encoded>, the encoded part cut at 64 characters', async (t) => {
  t.equal(fallbackTag(subject), `sha256-${'ab'.repeat(32)}`)
  t.equal(fallbackTag(`sha512:${'c'.repeat(128)}`), `sha512-${'c'.repeat(64)}`)
  t.equal(fallbackTag(`multihash+base58:${'Q'.repeat(10)}`), `multihash-base58-${'Q'.repeat(10)}`, 'characters a tag cannot hold become -')
})

t.test('the descriptor of a referrer: its digest and size, artifactType (else the config media type), annotations', async (t) => {
  const withType = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/x.sig', config: { mediaType: 'application/vnd.oci.empty.v1+json' }, subject: { digest: subject }, annotations: { a: 'b', n: 1 } }))
  const found = referrerOf(withType, 'application/vnd.oci.image.manifest.v1+json')
  t.same(found, {
    subject,
    descriptor: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${createHash('sha256').update(withType).digest('hex')}`,
      size: withType.length,
      artifactType: 'application/x.sig',
      annotations: { a: 'b' },
    },
  }, 'non-string annotations are left out')
  const configType = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: 'application/x.sbom.config' }, subject: { digest: subject } }))
  t.equal(referrerOf(configType, 'application/vnd.oci.image.manifest.v1+json')?.descriptor.artifactType, 'application/x.sbom.config', 'no artifactType: the config media type')
  t.equal(referrerOf(Buffer.from('{"schemaVersion":2}'), 'x'), undefined, 'no subject')
  t.equal(referrerOf(Buffer.from(JSON.stringify({ subject: { digest: 'sha256:short' } })), 'x'), undefined, 'a subject with an invalid digest')
  t.equal(referrerOf(Buffer.from('not json'), 'x'), undefined, 'not JSON')
  t.equal(referrerOf(Buffer.from('null'), 'x'), undefined, 'JSON null')
})

t.test('the artifactType filter and which PUTs are read', async (t) => {
  const index = { ...emptyIndex(), manifests: [{ mediaType: 'm', digest: 'sha256:1', size: 1, artifactType: 'a' }, { mediaType: 'm', digest: 'sha256:2', size: 1, artifactType: 'b' }] }
  t.same(filterByArtifactType(index, null), { index, filtered: false })
  t.same(filterByArtifactType(index, 'b').index.manifests.map((entry) => entry.digest), ['sha256:2'])
  t.equal(filterByArtifactType(index, 'b').filtered, true)
  const put = classify('PUT', '/v2/a/manifests/v1')
  t.ok(mayHaveSubject(put, 'application/vnd.oci.image.manifest.v1+json; charset=utf-8'), 'OCI manifest')
  t.ok(mayHaveSubject(put, 'application/vnd.oci.image.index.v1+json'), 'OCI index')
  t.notOk(mayHaveSubject(put, 'application/vnd.docker.distribution.manifest.v2+json'), 'docker manifests have no subject')
  t.notOk(mayHaveSubject(classify('GET', '/v2/a/manifests/v1'), 'application/vnd.oci.image.manifest.v1+json'), 'not a PUT')
})
