// Each routing strategy as an object: where reads, writes and uploads go, which upstream a read picks, what readiness needs, and whether upload sessions are tracked.
import t from 'tap'
import { Pool } from 'undici'
import { classify } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'
import { Forwarder } from '../../src/forward/forward.js'
import { createStrategy } from '../../src/routing/strategies.js'
import { rendezvousOwner } from '../../src/routing/hash.js'
import { UploadTokens } from '../../src/uploads/token.js'
import type { UpstreamHealth } from '../../src/upstreams/health.js'
import type { Upstream } from '../../src/upstreams/upstreams.js'

const make = (name: string): Upstream => ({ name, weight: 1, origin: `http://${name}.invalid`, forwardAuthorization: false, pool: new Pool(`http://${name}.invalid`), healthPool: new Pool(`http://${name}.invalid`) })
const [a, b, c] = [make('a'), make('b'), make('c')] as [Upstream, Upstream, Upstream]
t.teardown(() => Promise.all([a, b, c].flatMap((upstream) => [upstream.pool.close(), upstream.healthPool.close()])))
const down = new Set<string>()
const tokens = new UploadTokens(Buffer.alloc(32, 9), ['a', 'b', 'c'])
const uuid = '3f1f2a43-6c35-4d0e-9a5b-3d1f0f0e8b11'

function strategy(name: '' | 'shared' | 'by-repository' | 'mirror', list = [a, b, c], require: 'all' | 'quorum' = 'quorum') {
  return createStrategy({ strategy: name, balance: 'least-in-flight', secret: '', secret_file: '', mirror: { require } }, {
    upstreams: list,
    isAvailable: (upstream) => !down.has(upstream.name),
    forwarder: new Forwarder(() => undefined),
    uploadTokens: () => tokens,
    onMirrorBranchFailure: () => undefined,
  })
}

function health(states: Record<string, UpstreamHealth['state']>): UpstreamHealth[] {
  return Object.entries(states).map(([name, state]) => ({ name, url: '', state, since: '', consecutiveFailures: 0 }))
}

function refusal(run: () => unknown): RegistryError | undefined {
  try {
    run()
  } catch (error) {
    return error instanceof RegistryError ? error : undefined
  }
  return undefined
}

const read = classify('GET', '/v2/team/app/manifests/v1')

t.test('single: one upstream, no tracking scope of its own beyond it, ready only when it is up', async (t) => {
  const single = strategy('', [a])
  t.equal(single.name, 'single')
  t.equal(single.describe(), undefined, 'nothing to say at start-up')
  t.equal(single.pick(read), a)
  t.equal(single.sessionScope(a), 'a')
  t.ok(single.indexesReferrers)
  t.same(single.readiness(health({ a: 'up' })).ready, true)
  t.same(single.readiness(health({ a: 'unknown' })).ready, false, 'not checked yet is not ready')
  down.add('a')
  t.match(refusal(() => single.route(read)), { code: 'UNAVAILABLE' }, 'down: 503 at once')
  t.equal(single.pick(read), a, 'pick still names it (a mount check finds it down by itself)')
  down.clear()
})

t.test('shared: sessions are shared by every upstream; any one up is ready', async (t) => {
  const shared = strategy('shared')
  t.same(shared.describe(), { balance: 'least-in-flight' })
  t.equal(shared.sessionScope(a), 'shared')
  t.equal(shared.sessionScope(b), 'shared', 'one scope for all: a chunk may go to another upstream')
  const chunk = shared.route(classify('PATCH', `/v2/team/app/blobs/uploads/${uuid}`))
  t.match(chunk, { kind: 'forward', fallbacks: [] }, 'an upload chunk goes anywhere, and never moves')
  t.same(shared.readiness(health({ a: 'down', b: 'down', c: 'up' })).ready, true)
  t.same(shared.readiness(health({ a: 'down', b: 'down', c: 'unknown' })).ready, false)
})

t.test('by-repository: the owner serves; uploads are pinned by signed URLs; a mirrored URL is not its own', async (t) => {
  const byRepository = strategy('by-repository')
  const owner = rendezvousOwner([a, b, c], 'team/app')
  t.equal(byRepository.pick(read), owner)
  t.equal(byRepository.sessionScope(owner), owner.name)
  const signedTwice = tokens.clientPath('team/app', [{ upstream: 'a', uuid }, { upstream: 'b', uuid }])
  t.match(refusal(() => byRepository.route(classify('PATCH', signedTwice))), { code: 'BLOB_UPLOAD_UNKNOWN' }, 'two sessions: a mirror\'s URL')
  const signed = tokens.clientPath('team/app', [{ upstream: 'b', uuid, state: 'abc' }])
  t.match(byRepository.route(classify('PATCH', signed)), { kind: 'forward', upstream: b, request: { path: `/v2/team/app/blobs/uploads/${uuid}`, params: new URLSearchParams({ _state: 'abc' }) } }, 'the session\'s upstream, with its own _state')
  t.match(byRepository.readiness(health({ a: 'up', b: 'up', c: 'down' })), { ready: false, detail: { unreachable: ['repositories owned by c'] } })
})

t.test('mirror: writes to all, reads anywhere with 404 moving on, uploads from the signed URL, quorum readiness', async (t) => {
  const mirror = strategy('mirror')
  t.same(mirror.describe(), { require: 'quorum' })
  t.equal(mirror.sessionScope(a), 'a', 'mirrored sessions live in the signed URL; their newest state is remembered per upstream (an old URL goes on from it)')
  t.ok(mirror.indexesReferrers, 'mirrors keep the referrers index too (on every mirror)')
  const signed = tokens.clientPath('team/app', [{ upstream: 'a', uuid, state: 's1' }, { upstream: 'c', uuid, state: 's2' }])
  const chunk = mirror.route(classify('PATCH', signed))
  t.match(chunk, { kind: 'mirror', upstreams: [a, b, c] })
  if (chunk.kind === 'mirror') {
    t.same(chunk.sessions?.map((target) => [target.upstream.name, target.path]), [
      ['a', `/v2/team/app/blobs/uploads/${uuid}?_state=s1`],
      ['c', `/v2/team/app/blobs/uploads/${uuid}?_state=s2`],
    ], 'each session\'s own path, from the token')
  }
  down.add('a')
  t.match(mirror.route(classify('GET', signed)), { kind: 'forward', upstream: c }, 'status from the first session whose upstream is up')
  t.equal(mirror.pick(read), b)
  down.clear()
  t.same(mirror.readiness(health({ a: 'up', b: 'up', c: 'down' })).ready, true, 'two of three: a quorum')
  t.same(strategy('mirror', [a, b, c], 'all').readiness(health({ a: 'up', b: 'up', c: 'down' })).ready, false, 'require all: every one')
})
