// Upload size limits (src/pipeline/limits.ts): which limit applies to which request and repository, and the byte counter that stops a stream at it.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/app/config.js'
import { ConfigError } from '../../src/config/index.js'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { classify } from '../../src/registry/classify.js'
import { ByteLimitStream, createLimits, LimitExceeded, type SizeLimit } from '../../src/pipeline/limits.js'

const MiB = 1024 * 1024
const limits = createLimits({
  blob_max_bytes: 100 * MiB,
  manifest_max_bytes: 4 * MiB,
  repositories: [
    { match: 'team/**/cache', blob_max_bytes: 1 * MiB },
    { match: 'ml/**', blob_max_bytes: 0 },
    { match: 'small/*', manifest_max_bytes: 1024 },
    { match: 'small/*', blob_max_bytes: 2048 },
  ],
  per_client: { max_exchanges_per_user: 0, max_exchanges_per_address: 0 },
})

const uuid = '0b1e4f1a-3c2d-4e5f-8a9b-0c1d2e3f4a5b'
const digest = `sha256:${'a'.repeat(64)}`

t.test('team/**/cache matches team/cache as the ACL does (zero components)', async (t) => {
  // The old limits dialect turned ** into .* only, so team/**/cache needed a component between
  // the slashes and team/cache got the global limit.
  t.same(limits.forRequest(classify('PATCH', `/v2/team/cache/blobs/uploads/${uuid}`)), { name: 'blob_max_bytes', maxBytes: 1 * MiB })
  t.same(limits.forRequest(classify('PATCH', `/v2/team/a/b/cache/blobs/uploads/${uuid}`)), { name: 'blob_max_bytes', maxBytes: 1 * MiB })
  t.same(limits.forRequest(classify('PATCH', `/v2/team/cachex/blobs/uploads/${uuid}`)), { name: 'blob_max_bytes', maxBytes: 100 * MiB }, 'not a prefix match')
})

t.test('body-carrying upload requests get the blob limit, manifest PUTs the manifest limit, others none', async (t) => {
  t.same(limits.forRequest(classify('PUT', `/v2/app/blobs/uploads/${uuid}?digest=${digest}`)), { name: 'blob_max_bytes', maxBytes: 100 * MiB }, 'upload.finish')
  t.same(limits.forRequest(classify('PUT', '/v2/app/manifests/latest')), { name: 'manifest_max_bytes', maxBytes: 4 * MiB })
  t.equal(limits.forRequest(classify('GET', `/v2/app/blobs/${digest}`)), undefined, 'a pull carries no body')
  t.equal(limits.forRequest(classify('GET', '/v2/_catalog')), undefined, 'no repository')
  t.equal(limits.forRequest(classify('DELETE', '/v2/app/manifests/latest')), undefined)
})

t.test('the first rule that sets the limit in question wins; a rule without it falls through; 0 means none', async (t) => {
  t.same(limits.forRequest(classify('PUT', '/v2/small/x/manifests/v1')), { name: 'manifest_max_bytes', maxBytes: 1024 })
  t.same(limits.forRequest(classify('PATCH', `/v2/small/x/blobs/uploads/${uuid}`)), { name: 'blob_max_bytes', maxBytes: 2048 }, 'the second small/* rule sets blob_max_bytes')
  t.equal(limits.forRequest(classify('PATCH', `/v2/ml/models/big/blobs/uploads/${uuid}`)), undefined, 'blob_max_bytes 0: no limit')
  t.same(limits.forRequest(classify('PUT', '/v2/ml/models/manifests/v1')), { name: 'manifest_max_bytes', maxBytes: 4 * MiB }, 'the ml rule says nothing of manifests')
})

t.test('a cross-repository mount gets the target repository blob limit; other requests none', async (t) => {
  const mount = classify('POST', `/v2/team/cache/blobs/uploads/?mount=${digest}&from=other/app`)
  t.same(limits.forMount(mount), { name: 'blob_max_bytes', maxBytes: 1 * MiB })
  t.equal(limits.forMount(classify('POST', '/v2/team/cache/blobs/uploads/')), undefined, 'a plain upload start is no mount')
  t.equal(limits.forRequest(mount), undefined, 'a mount has no body to count')
})

async function pass(counter: ByteLimitStream, chunks: Buffer[]): Promise<{ received: number; error?: unknown }> {
  let received = 0
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      received += chunk.length
      callback()
    },
  })
  try {
    await pipeline(Readable.from(chunks), counter, sink)
    return { received }
  } catch (error) {
    return { received, error }
  }
}

t.test('the counter lets exactly the limit through, across chunks and stored bytes', async (t) => {
  const limit: SizeLimit = { name: 'blob_max_bytes', maxBytes: 10 }
  const counter = new ByteLimitStream(limit, 4)
  const result = await pass(counter, [Buffer.alloc(3), Buffer.alloc(3)])
  t.equal(result.error, undefined)
  t.equal(result.received, 6)
  t.equal(counter.bytes, 6, 'bytes counts only what passed, not what was stored before')
})

t.test('the counter fails at the chunk that crosses the limit and passes none of it', async (t) => {
  const limit: SizeLimit = { name: 'blob_max_bytes', maxBytes: 10 }
  const counter = new ByteLimitStream(limit, 4)
  const result = await pass(counter, [Buffer.alloc(3), Buffer.alloc(3), Buffer.alloc(1), Buffer.alloc(5)])
  t.type(result.error, LimitExceeded)
  const error = result.error as LimitExceeded
  t.equal(error.bytes, 11, 'stored 4 + passed 7')
  t.equal(error.limit, limit)
  t.equal(result.received, 6, 'the crossing chunk is not passed on')
})

t.test('without a limit the counter only counts', async (t) => {
  const counter = new ByteLimitStream(undefined, 0)
  const result = await pass(counter, [Buffer.alloc(MiB), Buffer.alloc(MiB)])
  t.equal(result.error, undefined)
  t.equal(counter.bytes, 2 * MiB)
})

t.test('a limits.repositories glob that cannot match a repository name is a load error naming the key', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'portier.yaml')
  writeFileSync(file, 'limits:\n  repositories:\n    - { match: "ML/**", blob_max_bytes: 1GB }\n    - { match: "a/***", blob_max_bytes: 1GB }\n    - { match: "team/**/cache", blob_max_bytes: 1GB }\n')
  let problems: Array<{ key: string; expected: string }> = []
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error
    problems = error.problems
  }
  t.same(problems.map((problem) => problem.key), ['limits.repositories[0].match', 'limits.repositories[1].match'])
  t.match(problems[0]?.expected, /repository glob/)
})
