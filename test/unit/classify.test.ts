// classify(): every Distribution API operation as data, and every path or name that must be refused before it reaches an upstream.
import t from 'tap'
import { classify, safePath, type RegistryRequest } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'
import { MAX_ALGORITHM_LENGTH, MAX_ENCODED_LENGTH, MAX_REPOSITORY_LENGTH, isValidRepository, isValidTag, isValidDigest } from '../../src/registry/names.js'

const digest = `sha256:${'ab12'.repeat(16)}`
const uuid = '6f1c2b1e-3a4d-4c5e-9f00-0123456789ab'

/** classify() expecting a RegistryError; resolves with its code and status. */
function refused(method: string, url: string): { code: string; status: number; wire: string } {
  try {
    const request = classify(method, url)
    return { code: `accepted as ${request.op}`, status: 0, wire: '' }
  } catch (error) {
    if (!(error instanceof RegistryError)) throw error
    return { code: error.code, status: error.status, wire: error.wireCode }
  }
}

t.test('base and catalog', async (t) => {
  t.match(classify('GET', '/v2/'), { op: 'base', scopes: [], path: '/v2/', query: '' })
  t.match(classify('HEAD', '/v2/'), { op: 'base' })
  t.match(classify('GET', '/v2'), { op: 'base' }, 'without the trailing slash too')
  t.match(refused('POST', '/v2/'), { code: 'UNSUPPORTED', status: 405 })

  const catalog = classify('GET', '/v2/_catalog?n=100&last=a%2Fb')
  t.equal(catalog.op, 'catalog')
  t.same(catalog.scopes, [{ type: 'registry', name: 'catalog', actions: ['*'] }])
  t.equal(catalog.query, 'n=100&last=a%2Fb', 'the raw query is kept for the upstream (encoded slashes allowed there)')
  t.equal(catalog.params.get('last'), 'a/b')
  t.equal(catalog.repository, undefined)
  t.match(refused('DELETE', '/v2/_catalog'), { code: 'UNSUPPORTED' })
})

t.test('tags list', async (t) => {
  const tags = classify('GET', '/v2/team/app/tags/list?n=10&last=v1')
  t.equal(tags.op, 'tags.list')
  t.equal(tags.repository, 'team/app')
  t.same(tags.scopes, [{ type: 'repository', name: 'team/app', actions: ['pull'] }])
  t.equal(tags.params.get('n'), '10')
  t.match(refused('DELETE', '/v2/team/app/tags/list'), { code: 'UNSUPPORTED', status: 405 })
})

t.test('manifests by tag and by digest', async (t) => {
  const cases: Array<[string, RegistryRequest['op'], string[]]> = [
    ['GET', 'manifest.get', ['pull']],
    ['HEAD', 'manifest.head', ['pull']],
    ['PUT', 'manifest.put', ['pull', 'push']],
    ['DELETE', 'manifest.delete', ['delete']],
  ]
  for (const [method, op, actions] of cases) {
    for (const reference of ['v1.2.3-rc_1', digest]) {
      const request = classify(method, `/v2/library/alpine/manifests/${reference}`)
      t.equal(request.op, op, `${method} by ${reference === digest ? 'digest' : 'tag'}`)
      t.equal(request.repository, 'library/alpine')
      t.equal(request.reference, reference)
      t.same(request.scopes, [{ type: 'repository', name: 'library/alpine', actions }])
    }
  }
  t.match(refused('POST', '/v2/a/manifests/latest'), { code: 'UNSUPPORTED', status: 405 })
  t.match(refused('PATCH', '/v2/a/manifests/latest'), { code: 'UNSUPPORTED', status: 405 })
  t.equal(classify('GET', `/v2/a/manifests/${'t'.repeat(128)}`).op, 'manifest.get', 'a tag of exactly 128 characters')
  const invalid: Array<[string, string, string]> = [
    [`${'t'.repeat(129)}`, 'TAG_INVALID', 'a tag over 128 characters'],
    ['.INVALID_MANIFEST_NAME', 'TAG_INVALID', 'a tag cannot start with a dot'],
    ['sha256:abc', 'DIGEST_INVALID', 'a truncated sha256 digest'],
    [`sha256:${'AB12'.repeat(16)}`, 'DIGEST_INVALID', 'sha256 hex is lower case'],
    [`sha512:${'0'.repeat(5000)}`, 'DIGEST_INVALID', 'a sha512 digest of 5,000 characters'],
  ]
  for (const [reference, putCode, what] of invalid) {
    // The OCI spec: reading or deleting a manifest that cannot exist is 404, creating one under a bad name is 400.
    for (const method of ['GET', 'HEAD', 'DELETE']) {
      t.match(refused(method, `/v2/a/manifests/${reference}`), { code: 'MANIFEST_UNKNOWN', status: 404 }, `${method}: ${what}`)
    }
    t.match(refused('PUT', `/v2/a/manifests/${reference}`), { code: putCode, status: 400 }, `PUT: ${what}`)
  }
})

t.test('digests: the OCI grammar, registered algorithms at their exact length, others capped', async (t) => {
  const hex = (count: number): string => 'a'.repeat(count)
  t.ok(isValidDigest(`sha256:${hex(64)}`), 'sha256: 64 hex')
  t.notOk(isValidDigest(`sha256:${hex(63)}`), 'sha256: 63 hex')
  t.notOk(isValidDigest(`sha256:${hex(65)}`), 'sha256: 65 hex')
  t.ok(isValidDigest(`sha512:${hex(128)}`), 'sha512: 128 hex')
  t.notOk(isValidDigest(`sha512:${hex(127)}`), 'sha512: 127 hex')
  t.notOk(isValidDigest(`sha512:${hex(5000)}`), 'sha512: 5,000 characters')
  t.notOk(isValidDigest(`sha512:${'A'.repeat(128)}`), 'sha512 hex is lower case')
  t.ok(isValidDigest(`blake3:${hex(64)}`) && !isValidDigest(`blake3:${hex(65)}`), 'blake3: 64 hex')
  t.ok(isValidDigest(`sha384:${hex(96)}`) && !isValidDigest(`sha384:${hex(64)}`), 'sha384 (distribution accepts it): 96 hex')
  t.ok(isValidDigest(`multihash+base58:${'Qm'.repeat(20)}`), 'an unregistered algorithm within the caps')
  t.ok(isValidDigest(`x:${hex(MAX_ENCODED_LENGTH)}`), `unregistered: ${MAX_ENCODED_LENGTH} encoded characters`)
  t.notOk(isValidDigest(`x:${hex(MAX_ENCODED_LENGTH + 1)}`), `unregistered: ${MAX_ENCODED_LENGTH + 1} encoded characters`)
  t.ok(isValidDigest(`${'a'.repeat(MAX_ALGORITHM_LENGTH)}:abc`), `an algorithm name of ${MAX_ALGORITHM_LENGTH} characters`)
  t.notOk(isValidDigest(`${'a'.repeat(MAX_ALGORITHM_LENGTH + 1)}:abc`), `an algorithm name of ${MAX_ALGORITHM_LENGTH + 1} characters`)
  t.ok(isValidDigest(`constructor:${hex(64)}`), 'constructor (an Object.prototype member) is just an unregistered algorithm')
  t.match(refused('GET', `/v2/a/blobs/sha512:${hex(5000)}`), { code: 'DIGEST_INVALID', status: 400 }, 'a blob by an over-long digest')
  t.match(refused('POST', `/v2/a/blobs/uploads/?digest=sha512:${hex(5000)}`), { code: 'DIGEST_INVALID', status: 400 }, 'a monolithic upload')
  t.match(refused('POST', `/v2/a/blobs/uploads/?mount=sha512:${hex(5000)}&from=b`), { code: 'DIGEST_INVALID', status: 400 }, 'a mount')
  t.match(refused('GET', `/v2/a/referrers/sha512:${hex(5000)}`), { code: 'DIGEST_INVALID', status: 400 }, 'referrers')
})

t.test('blobs', async (t) => {
  const cases: Array<[string, RegistryRequest['op'], string[]]> = [
    ['GET', 'blob.get', ['pull']],
    ['HEAD', 'blob.head', ['pull']],
    ['DELETE', 'blob.delete', ['delete']],
  ]
  for (const [method, op, actions] of cases) {
    const request = classify(method, `/v2/a/b/c/blobs/${digest}`)
    t.equal(request.op, op, method)
    t.equal(request.repository, 'a/b/c')
    t.equal(request.reference, digest)
    t.same(request.scopes, [{ type: 'repository', name: 'a/b/c', actions }])
  }
  t.match(refused('GET', '/v2/a/blobs/latest'), { code: 'DIGEST_INVALID', status: 400 }, 'blobs are addressed by digest only')
  t.match(refused('PUT', `/v2/a/blobs/${digest}`), { code: 'UNSUPPORTED', status: 405 })
  t.equal(classify('GET', `/v2/a/blobs/sha512:${'0f'.repeat(64)}`).op, 'blob.get', 'other algorithms are digests too')
})

t.test('uploads: start, monolithic, mount, status, chunk, finish, cancel', async (t) => {
  const start = classify('POST', '/v2/team/app/blobs/uploads/')
  t.equal(start.op, 'upload.start')
  t.equal(start.repository, 'team/app')
  t.same(start.scopes, [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }])

  const monolithic = classify('POST', `/v2/team/app/blobs/uploads/?digest=${digest}`)
  t.equal(monolithic.op, 'upload.monolithic')
  t.equal(monolithic.reference, digest)
  t.match(refused('POST', '/v2/team/app/blobs/uploads/?digest=sha256:nope'), { code: 'DIGEST_INVALID' })

  const mount = classify('POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=library/base`)
  t.equal(mount.op, 'upload.mount')
  t.equal(mount.reference, digest)
  t.equal(mount.mountFrom, 'library/base')
  t.same(mount.scopes, [
    { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
    { type: 'repository', name: 'library/base', actions: ['pull'] },
  ], 'a mount needs pull on the source too')
  t.match(refused('POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=Library/Base`), { code: 'NAME_INVALID' }, 'the source name is checked')
  t.match(refused('POST', `/v2/team/app/blobs/uploads/?mount=${digest}&from=${'a'.repeat(256)}`), { code: 'NAME_INVALID' })
  t.match(refused('POST', '/v2/team/app/blobs/uploads/?mount=bad&from=library/base'), { code: 'DIGEST_INVALID' })
  const mountNoFrom = classify('POST', `/v2/team/app/blobs/uploads/?mount=${digest}`)
  t.equal(mountNoFrom.op, 'upload.start', 'mount without from starts a normal upload (as the registry does)')
  t.equal(mountNoFrom.scopes.length, 1)

  const ops: Array<[string, RegistryRequest['op']]> = [
    ['GET', 'upload.status'],
    ['PATCH', 'upload.chunk'],
    ['PUT', 'upload.finish'],
    ['DELETE', 'upload.cancel'],
  ]
  for (const [method, op] of ops) {
    const request = classify(method, `/v2/team/app/blobs/uploads/${uuid}?_state=abc%3D&digest=${digest}`)
    t.equal(request.op, op, method)
    t.equal(request.uploadId, uuid)
    t.equal(request.repository, 'team/app')
    t.equal(request.query, `_state=abc%3D&digest=${digest}`, 'the signed _state passes untouched')
    t.same(request.scopes[0]?.actions, method === 'GET' ? ['pull'] : method === 'DELETE' ? ['delete'] : ['pull', 'push'])
  }
  t.match(refused('POST', `/v2/team/app/blobs/uploads/${uuid}`), { code: 'UNSUPPORTED' })
  t.match(refused('GET', '/v2/team/app/blobs/uploads/'), { code: 'UNSUPPORTED' }, 'GET on the upload collection')
  t.match(refused('PATCH', `/v2/team/app/blobs/uploads/${'x'.repeat(257)}`), { code: 'BLOB_UPLOAD_INVALID' }, 'absurd upload ids')
  t.match(refused('PATCH', '/v2/team/app/blobs/uploads/a%20b'), { status: 400 }, 'spaces in upload ids')
})

t.test('referrers', async (t) => {
  const request = classify('GET', `/v2/team/app/referrers/${digest}?artifactType=application%2Fvnd.example`)
  t.equal(request.op, 'referrers.list')
  t.equal(request.reference, digest)
  t.same(request.scopes, [{ type: 'repository', name: 'team/app', actions: ['pull'] }])
  t.match(refused('GET', '/v2/team/app/referrers/latest'), { code: 'DIGEST_INVALID' })
})

t.test('repository names: the distribution grammar, at most 255 characters', async (t) => {
  t.equal(MAX_REPOSITORY_LENGTH, 255)
  const long255 = `${'a'.repeat(127)}/${'b'.repeat(127)}`
  t.equal(long255.length, 255)
  t.equal(classify('GET', `/v2/${long255}/tags/list`).repository, long255, '255 characters are accepted')
  t.equal(classify('GET', `/v2/${'c'.repeat(255)}/manifests/latest`).op, 'manifest.get', 'one component of 255')
  const long256 = `${'a'.repeat(128)}/${'b'.repeat(127)}`
  t.match(refused('GET', `/v2/${long256}/tags/list`), { code: 'NAME_INVALID', status: 400 }, '256 characters are refused')
  t.match(refused('PUT', `/v2/${'c'.repeat(256)}/manifests/latest`), { code: 'NAME_INVALID' })

  t.match(refused('GET', '/v2/Library/Alpine/manifests/latest'), { code: 'NAME_INVALID', wire: 'NAME_INVALID' }, 'upper case')
  t.match(refused('GET', '/v2/library/alpinE/tags/list'), { code: 'NAME_INVALID' })
  for (const good of ['a', 'a.b', 'a_b', 'a__b', 'a-b', 'a---b', 'a0/b1/c2', 'registry.example/team-1/app_2.x']) {
    t.ok(isValidRepository(good), `${good} is a valid name`)
  }
  for (const bad of ['', '-a', 'a-', '.a', 'a.', 'a___b', 'a..b', 'a/', '/a', 'a//b', 'a b', 'a:b', 'a@b', 'é']) {
    t.notOk(isValidRepository(bad), `${JSON.stringify(bad)} is not`)
  }
  t.ok(isValidTag('latest') && isValidTag('_x') && isValidTag('1.0') && !isValidTag('-x') && !isValidTag(''), 'tags')
  t.ok(isValidDigest(digest) && !isValidDigest('sha256:') && !isValidDigest(':abc') && !isValidDigest('md5'), 'digests')
})

t.test('paths that could mean something else are refused before routing', async (t) => {
  const bad = [
    '/v2/../v2/_catalog',
    '/v2/a/../b/tags/list',
    '/v2/a/./b/tags/list',
    '/v2/a/..',
    '/v2//a/tags/list',
    '/v2/a//b/tags/list',
    '/v2/a%2fb/tags/list',
    '/v2/a%2Fb/tags/list',
    '/v2/%2e%2e/_catalog',
    '/v2/a/%2E%2E/b/tags/list',
    '/v2/a/%2e/tags/list',
    '/v2/a%5cb/tags/list',
    '/v2/a\\b/tags/list',
    '/v2/a%252fb/tags/list',
    '/v2/a%00/tags/list',
    '/v2/a%0a/tags/list',
    '/v2/a%0D%0AX-Injected:%201/tags/list',
    '/v2/a%7f/tags/list',
    '/v2/a\u0001b/tags/list',
    '/v2/a\tb/tags/list',
    '/v2/a%zz/tags/list',
    '/v2/a%/tags/list',
    'v2/a/tags/list',
    'http://evil.example/v2/_catalog',
    '*',
  ]
  for (const url of bad) {
    const result = refused('GET', url)
    t.equal(result.status, 400, `${JSON.stringify(url)} → 400 (${result.code})`)
    t.equal(result.code, 'PATH_INVALID', `${JSON.stringify(url)} is a path problem, not a name problem`)
  }
  t.equal(safePath('/v2/a/b/tags/list'), '/v2/a/b/tags/list')
  t.equal(safePath('/v2/a%62c/tags/list'), '/v2/abc/tags/list', 'harmless encodings decode')
  t.equal(classify('GET', '/v2/a%62c/tags/list').repository, 'abc')
})

t.test('unknown endpoints', async (t) => {
  t.match(refused('GET', '/'), { code: 'NOT_FOUND', status: 404 })
  t.match(refused('GET', '/v1/_ping'), { code: 'NOT_FOUND' })
  t.match(refused('GET', '/v2/a/b'), { code: 'NOT_FOUND' })
  t.match(refused('GET', '/v2/a/blobs/'), { code: 'NOT_FOUND' })
  t.match(refused('GET', '/v2/tags/list'), { code: 'NOT_FOUND' }, 'no repository before /tags/list')
  t.match(refused('GET', '/metrics'), { code: 'NOT_FOUND' })
})

t.test('error bodies are registry JSON', async (t) => {
  try {
    classify('GET', '/v2/UPPER/tags/list')
    t.fail('should throw')
  } catch (error) {
    const body = JSON.parse((error as RegistryError).body()) as { errors: Array<{ code: string; message: string; detail: unknown }> }
    t.equal(body.errors.length, 1)
    t.equal(body.errors[0]?.code, 'NAME_INVALID')
    t.type(body.errors[0]?.message, 'string')
    t.same(body.errors[0]?.detail, { name: 'UPPER' })
  }
})

t.test('tag deletes: which upstream answers mean "cannot delete tags"', async (t) => {
  const { isTagDelete, refusesTagDelete } = await import('../../src/forward/tag-delete.js')
  t.ok(isTagDelete(classify('DELETE', '/v2/a/manifests/v1')), 'DELETE by tag')
  t.notOk(isTagDelete(classify('DELETE', `/v2/a/manifests/${digest}`)), 'DELETE by digest is not a tag delete')
  t.notOk(isTagDelete(classify('GET', '/v2/a/manifests/v1')), 'GET')
  const body = (code: string): Buffer => Buffer.from(JSON.stringify({ errors: [{ code, message: 'x' }] }))
  t.ok(refusesTagDelete(400, body('DIGEST_INVALID')), 'registry 2.8: 400 DIGEST_INVALID')
  t.notOk(refusesTagDelete(202, Buffer.alloc(0)), 'registry 3.x deletes the tag: 202 passes through')
  t.notOk(refusesTagDelete(404, body('MANIFEST_UNKNOWN')), 'an unknown tag on 3.x: 404 passes through')
  t.notOk(refusesTagDelete(405, body('UNSUPPORTED')), 'deletes disabled: the registry already says UNSUPPORTED')
  t.notOk(refusesTagDelete(400, Buffer.from('<html>')), 'not JSON')
})
