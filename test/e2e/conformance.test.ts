// The OCI distribution spec at the edge, reads and tags: what registry 2.8.2 gets wrong answered right through Portier in every auth mode, with nothing it gets right broken.
import t, { type Test } from 'tap'
import { readFile } from 'node:fs/promises'
import { registryFixture } from '../helpers/registry.js'
import { conformanceSetup, exchange, modes, MT_MANIFEST, pushImage, routedTarget, routingSecret, type Target } from '../helpers/conformance.js'

const { registry, bare, bareAgent, gatewayTarget } = await conformanceSetup(t)

t.test('a manifest reference that is neither tag nor digest: 404 MANIFEST_UNKNOWN for reads, 400 for PUT', async (t) => {
  const bareGet = await bare.send('GET', '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME')
  t.equal(bareGet.status, 404, 'the bare registry answers 404 (its router matches no route)')
  for (const mode of modes) {
    const { target } = await gatewayTarget(mode)
    await pushImage(target, 'conf/ref', ['v1'])
    for (const method of ['GET', 'HEAD']) {
      const reply = await target.send(method, '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME', { scope: 'repository:conf/ref:pull', anonymous: true })
      t.equal(reply.status, 404, `${target.name}: ${method} of an invalid reference is 404`)
      t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0', `${target.name}: ${method} carries the API version header`)
      if (method === 'GET') {
        t.equal(reply.errorCode(), 'MANIFEST_UNKNOWN', `${target.name}: the JSON error says MANIFEST_UNKNOWN`)
        t.match(reply.headers['content-type'], /^application\/json/, `${target.name}: the error is JSON`)
      }
    }
    const put = await target.send('PUT', '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME', {
      scope: 'repository:conf/ref:pull,push', body: '{}', headers: { 'content-type': MT_MANIFEST },
    })
    t.equal(put.status, 400, `${target.name}: PUT under an invalid tag is 400`)
    t.equal(put.errorCode(), 'TAG_INVALID', `${target.name}: TAG_INVALID`)
    const good = await target.send('GET', '/v2/conf/ref/manifests/v1', { scope: 'repository:conf/ref:pull', anonymous: true, headers: { accept: MT_MANIFEST } })
    t.equal(good.status, 200, `${target.name}: a valid tag still reads`)
  }
})

t.test('digest length is capped by algorithm before anything is forwarded', async (t) => {
  const { target } = await gatewayTarget('none')
  const long = `sha512:${'a'.repeat(5000)}`
  const cases: Array<[string, string]> = [
    ['GET', `/v2/conf/digest/blobs/${long}`],
    ['HEAD', `/v2/conf/digest/blobs/${long}`],
    ['POST', `/v2/conf/digest/blobs/uploads/?digest=${long}`],
    ['POST', `/v2/conf/digest/blobs/uploads/?mount=${long}&from=conf/other`],
    ['GET', `/v2/conf/digest/referrers/${long}`],
    ['GET', `/v2/conf/digest/blobs/sha256:${'a'.repeat(65)}`],
  ]
  for (const [method, path] of cases) {
    const reply = await target.send(method, path)
    t.equal(reply.status, 400, `${method} ${path.slice(0, 50)}…: 400`)
    if (method !== 'HEAD') t.equal(reply.errorCode(), 'DIGEST_INVALID', `${method} ${path.slice(0, 50)}…: DIGEST_INVALID`)
  }
  const manifestRead = await target.send('GET', `/v2/conf/digest/manifests/${long}`)
  t.equal(manifestRead.status, 404, 'a manifest read by an over-long digest: 404 (no such manifest can exist)')
  const ok = await target.send('GET', `/v2/conf/digest/blobs/sha512:${'a'.repeat(128)}`)
  t.equal(ok.status, 404, 'a well-formed sha512 digest is forwarded (the registry does not have it)')
  t.notOk((await readFile(registry.logFile, 'utf8')).includes('a'.repeat(200)), 'no over-long digest reached the registry')
})

/** Follows Link rel="next" from `path` and returns every page's tags (at most 20 pages). */
async function walkTags(t: Test, target: Target, path: string, scope: string): Promise<string[][]> {
  const pages: string[][] = []
  let next: string | undefined = path
  while (next !== undefined && pages.length < 20) {
    const reply = await target.send('GET', next, { scope, anonymous: true })
    t.equal(reply.status, 200, `${target.name}: GET ${next}`)
    pages.push((reply.json() as { tags: string[] }).tags)
    const link = reply.headers.link
    const match = typeof link === 'string' ? /^<([^>]+)>; rel="next"$/.exec(link) : null
    if (typeof link === 'string') t.ok(match, `${target.name}: Link is <…>; rel="next" (${link})`)
    next = match?.[1]
  }
  return pages
}

t.test('tag lists: n and last, lexical order, Link to the next page', async (t) => {
  const repository = 'conf/tags'
  const tags = ['v3', 'a1', 'v10', 'b2', 'latest']
  const sorted = [...tags].sort()
  await pushImage(bare, repository, tags)
  const bareTwo = await bare.send('GET', `/v2/${repository}/tags/list?n=2`)
  t.equal((bareTwo.json() as { tags: string[] }).tags.length, tags.length, 'registry 2.8.2 alone ignores n (the failure Portier fixes)')

  for (const mode of modes) {
    const { target } = await gatewayTarget(mode)
    const scope = `repository:${repository}:pull`
    const all = await target.send('GET', `/v2/${repository}/tags/list`, { scope, anonymous: true })
    t.equal(all.status, 200, `${target.name}: the whole list`)
    t.same(all.json(), { name: repository, tags: sorted }, `${target.name}: every tag, in lexical order`)
    t.equal(all.headers.link, undefined, `${target.name}: no Link without n`)
    t.match(all.headers['content-type'], /^application\/json/, `${target.name}: JSON`)

    const pages = await walkTags(t, target, `/v2/${repository}/tags/list?n=2`, scope)
    t.same(pages, [sorted.slice(0, 2), sorted.slice(2, 4), sorted.slice(4)], `${target.name}: n=2 walks the list in pages of two`)
    const first = await target.send('GET', `/v2/${repository}/tags/list?n=2`, { scope, anonymous: true })
    t.equal(first.headers.link, `</v2/${repository}/tags/list?n=2&last=${sorted[1]}>; rel="next"`, `${target.name}: the Link keeps n and sets last`)

    const after = await target.send('GET', `/v2/${repository}/tags/list?last=${sorted[1]}`, { scope, anonymous: true })
    t.same((after.json() as { tags: string[] }).tags, sorted.slice(2), `${target.name}: last alone: every tag after it`)
    const between = await target.send('GET', `/v2/${repository}/tags/list?n=1&last=b`, { scope, anonymous: true })
    t.same((between.json() as { tags: string[] }).tags, ['b2'], `${target.name}: last need not be a tag`)
    const exact = await target.send('GET', `/v2/${repository}/tags/list?n=${tags.length}`, { scope, anonymous: true })
    t.same((exact.json() as { tags: string[] }).tags, sorted, `${target.name}: n equal to the count`)
    t.equal(exact.headers.link, undefined, `${target.name}: no Link when nothing follows`)
    const none = await target.send('GET', `/v2/${repository}/tags/list?n=0`, { scope, anonymous: true })
    t.same((none.json() as { tags: string[] }).tags, [], `${target.name}: n=0 lists nothing`)

    const unknown = await target.send('GET', '/v2/conf/no-such-repository/tags/list?n=2', { scope: 'repository:conf/no-such-repository:pull', anonymous: true })
    t.equal(unknown.status, 404, `${target.name}: an unknown repository is still 404`)
    t.equal(unknown.errorCode(), 'NAME_UNKNOWN', `${target.name}: NAME_UNKNOWN from the registry`)
  }
})

t.test('tag lists merged over mirrors: the union, paged, each tag once', async (t) => {
  const second = await registryFixture(t)
  const mirrors = [{ target: bare, tags: ['m-a', 'm-c', 'm-e', 'shared'] }, { target: null, tags: ['m-b', 'm-d', 'shared'] }]
  const secondTarget: Target = { name: 'second registry', url: second.url, send: (method, path, options = {}) => exchange(bareAgent, `${second.url}${path}`, method, options) }
  mirrors[1] = { target: secondTarget, tags: mirrors[1]?.tags ?? [] }
  const repository = 'conf/mirrored-tags'
  for (const mirror of mirrors) await pushImage(mirror.target as Target, repository, mirror.tags)
  const { target } = await routedTarget(t, 'Portier over two mirrors', {
    upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
    routing: { strategy: 'mirror', secret: routingSecret(), mirror: { require: 'all' } },
  })
  const union = ['m-a', 'm-b', 'm-c', 'm-d', 'm-e', 'shared']
  const all = await target.send('GET', `/v2/${repository}/tags/list`)
  t.same(all.json(), { name: repository, tags: union }, 'the union of both lists, sorted, "shared" once')
  const pages = await walkTags(t, target, `/v2/${repository}/tags/list?n=4`, '')
  t.same(pages, [union.slice(0, 4), union.slice(4)], 'n=4 over two mirrors: two pages')
  const onlyFirst = await target.send('GET', '/v2/conf/tags/tags/list?n=2')
  t.same((onlyFirst.json() as { tags: string[] }).tags, ['a1', 'b2'], 'a repository only one mirror holds: its tags, paged')
  const neither = await target.send('GET', '/v2/conf/nowhere/tags/list')
  t.equal(neither.status, 404, 'a repository no mirror holds: 404')
  t.equal(neither.errorCode(), 'NAME_UNKNOWN', 'NAME_UNKNOWN')
})

t.test('deleting a tag: 405 UNSUPPORTED where the registry cannot, and the tag stays; deletes by digest pass', async (t) => {
  const repository = 'conf/tag-delete'
  const pushed = await pushImage(bare, repository, ['keep', 'drop'])
  const bareDelete = await bare.send('DELETE', `/v2/${repository}/manifests/drop`)
  t.equal(bareDelete.status, 400, 'registry 2.8.2 alone: 400 (the failure Portier fixes)')
  t.equal(bareDelete.errorCode(), 'DIGEST_INVALID', 'registry 2.8.2 alone: DIGEST_INVALID')

  for (const mode of modes) {
    const { target } = await gatewayTarget(mode)
    const scope = `repository:${repository}:delete`
    const reply = await target.send('DELETE', `/v2/${repository}/manifests/drop`, { scope })
    t.equal(reply.status, 405, `${target.name}: a tag delete the registry cannot do is 405`)
    t.equal(reply.errorCode(), 'UNSUPPORTED', `${target.name}: UNSUPPORTED`)
    t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0', `${target.name}: API version header`)
    const still = await target.send('GET', `/v2/${repository}/manifests/drop`, { scope: `repository:${repository}:pull`, anonymous: true, headers: { accept: MT_MANIFEST } })
    t.equal(still.status, 200, `${target.name}: the tag is still there`)
    t.equal(still.headers['docker-content-digest'], pushed.digest, `${target.name}: and still names the manifest`)
    const unknownTag = await target.send('DELETE', `/v2/${repository}/manifests/never-pushed`, { scope })
    t.equal(unknownTag.status, 405, `${target.name}: an unknown tag gets the same answer (2.8 does not look it up)`)
  }

  const { target } = await gatewayTarget('token')
  const byDigest = await target.send('DELETE', `/v2/${repository}/manifests/${pushed.digest}`, { scope: `repository:${repository}:delete` })
  t.equal(byDigest.status, 202, 'a delete by digest passes through: 202')
  const gone = await target.send('GET', `/v2/${repository}/manifests/keep`, { scope: `repository:${repository}:pull`, anonymous: true, headers: { accept: MT_MANIFEST } })
  t.equal(gone.status, 404, 'and the tags of that manifest are gone')
  const badDigest = await target.send('DELETE', `/v2/${repository}/manifests/sha256:${'0'.repeat(64)}`, { scope: `repository:${repository}:delete` })
  t.equal(badDigest.status, 404, 'a delete of an unknown digest is relayed: 404')
  t.equal(badDigest.errorCode(), 'MANIFEST_UNKNOWN', 'MANIFEST_UNKNOWN')
})

t.test('deleting a tag through mirrors that cannot: 405 UNSUPPORTED', async (t) => {
  const second = await registryFixture(t)
  const { target } = await routedTarget(t, 'Portier over two mirrors', {
    upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
    routing: { strategy: 'mirror', secret: routingSecret(), mirror: { require: 'all' } },
  })
  const pushed = await pushImage(target, 'conf/mirror-tag-delete', ['v1'])
  const reply = await target.send('DELETE', '/v2/conf/mirror-tag-delete/manifests/v1')
  t.equal(reply.status, 405, '405')
  t.equal(reply.errorCode(), 'UNSUPPORTED', 'UNSUPPORTED')
  const still = await target.send('GET', '/v2/conf/mirror-tag-delete/manifests/v1', { headers: { accept: MT_MANIFEST } })
  t.equal(still.headers['docker-content-digest'], pushed.digest, 'the tag is still there')
})
