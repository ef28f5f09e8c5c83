// Maintenance: the switch's state, Retry-After, upload sessions and writes in flight, drain() and its cut-off, and the pipeline stage's verdicts.
import t from 'tap'
import { Maintenance, type MaintenanceChange } from '../../src/housekeeping/maintenance.js'
import { createMaintenanceGate, uploadIdFromLocation } from '../../src/pipeline/maintenance-gate.js'
import { classify } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'

function clock(start = Date.parse('2026-12-04T03:00:00Z')): { now: () => number; advance: (ms: number) => void } {
  let now = start
  return { now: () => now, advance: (ms) => (now += ms) }
}

t.test('enter, update and leave: message, since, by, until and Retry-After; listeners told each change', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'default message', retryAfterMs: 0, drainTimeoutMs: 60_000, now: time.now })
  const changes: MaintenanceChange[] = []
  maintenance.onChange((change) => changes.push(change))
  maintenance.onChange(() => {
    throw new Error('a broken listener')
  })
  t.same(maintenance.status(), { on: false, message: 'default message', inFlight: { uploads: 0, writes: 0 } })
  t.equal(maintenance.retryAfterSeconds(), undefined)

  const entered = maintenance.enter({ by: 'alice', message: 'moving disks' })
  t.equal(entered.on, true)
  t.equal(entered.message, 'moving disks')
  t.equal(entered.by, 'alice')
  t.equal(entered.since, '2026-12-04T03:00:00.000Z')
  t.equal(entered.drainUntil, '2026-12-04T03:01:00.000Z')
  t.equal(entered.until, undefined, 'no expected end by default (retry_after 0)')
  t.equal(maintenance.retryAfterSeconds(), undefined, 'no Retry-After without an expected end')

  time.advance(30_000)
  const updated = maintenance.enter({ by: 'bob', retryAfterMs: 10 * 60_000 })
  t.equal(updated.since, '2026-12-04T03:00:00.000Z', 'since stays when already on')
  t.equal(updated.message, 'default message', 'an update without a message goes back to the default')
  t.equal(updated.until, '2026-12-04T03:10:30.000Z')
  t.equal(updated.retryAfterSeconds, 600)
  time.advance(11 * 60_000)
  t.equal(maintenance.retryAfterSeconds(), 5, 'past the expected end: a small Retry-After, never 0')

  const left = maintenance.leave('carol')
  t.same(left, { on: false, message: 'default message', inFlight: { uploads: 0, writes: 0 } })
  t.same(changes.map((c) => [c.change, c.by]), [['entered', 'alice'], ['updated', 'bob'], ['left', 'carol']])
  maintenance.leave('carol')
  t.equal(changes.length, 3, 'leaving while off changes nothing')
})

t.test('upload sessions: begun before maintenance they may finish until the drain deadline; new ones are refused', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000, now: time.now })
  maintenance.uploadStarted('old')
  t.same(maintenance.inFlight(), { uploads: 1, writes: 0 })
  t.ok(maintenance.admitsUpload('never-seen'), 'while off every upload goes on')
  maintenance.enter()
  t.ok(maintenance.admitsUpload('old'), 'an upload begun before maintenance may go on')
  t.notOk(maintenance.admitsUpload('never-seen'), 'an upload this gateway did not see start is refused')
  t.notOk(maintenance.admitsUpload(undefined))
  time.advance(60_000)
  t.notOk(maintenance.admitsUpload('old'), 'after the drain timeout its chunks are refused too')
  maintenance.uploadEnded('old')
  t.same(maintenance.inFlight(), { uploads: 0, writes: 0 })
})

t.test('a session idle for an hour is forgotten, unless one of its requests is still streaming', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000, now: time.now })
  maintenance.uploadStarted('walked-away')
  maintenance.uploadStarted('streaming')
  const endPatch = maintenance.uploadRequest('streaming')
  t.ok(endPatch)
  t.equal(maintenance.uploadRequest('unknown'), undefined)
  time.advance(61 * 60_000)
  t.same(maintenance.inFlight(), { uploads: 2, writes: 0 }, 'forgotten lazily, not yet')
  t.equal(maintenance.status().inFlight.uploads, 1, 'the idle one is gone; the one with a request in flight stays')
  endPatch?.()
  endPatch?.()
  t.equal(maintenance.status().inFlight.uploads, 1, 'the end of its request counts as activity')
})

t.test('drain() resolves when the writes in flight finish, and counts them', async (t) => {
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000 })
  maintenance.uploadStarted('u1')
  const write = maintenance.writeStarted()
  maintenance.enter()
  const drained = maintenance.drain(30_000)
  setTimeout(() => write(), 20)
  setTimeout(() => maintenance.uploadEnded('u1'), 40)
  t.same(await drained, { finished: 2, remaining: 0 })
  t.ok(maintenance.admitsUpload('u1') === false, 'the ended session is not admitted any more')
  t.same(await maintenance.drain(10), { finished: 0, remaining: 0 }, 'nothing in flight: at once')
})

t.test('drain() gives up at its timeout; the uploads left are refused from then on', async (t) => {
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60 * 60_000 })
  maintenance.uploadStarted('slow')
  maintenance.uploadStarted('quick')
  maintenance.enter()
  t.ok(maintenance.admitsUpload('slow'))
  setTimeout(() => maintenance.uploadEnded('quick'), 10)
  t.same(await maintenance.drain(150), { finished: 1, remaining: 1 })
  t.notOk(maintenance.admitsUpload('slow'), 'cut off: what runs after the drain cannot race it')
})

t.test('the pipeline stage: reads pass, new writes are refused with 405 READ_ONLY, sessions are followed from POST to PUT', async (t) => {
  const maintenance = new Maintenance({ message: 'garbage collection', retryAfterMs: 0, drainTimeoutMs: 60_000 })
  const gate = createMaintenanceGate(maintenance)
  const request = (method: string, url: string) => classify(method, url)

  const post = gate(request('POST', '/v2/app/blobs/uploads/'))
  t.ok(post, 'a POST is a write in flight')
  t.same(maintenance.inFlight(), { uploads: 0, writes: 1 })
  post?.done(202, '/v2/app/blobs/uploads/abc-123?_state=xyz')
  t.same(maintenance.inFlight(), { uploads: 1, writes: 0 }, 'the 202 opened a session named by its Location')

  maintenance.enter({ retryAfterMs: 120_000 })
  for (const [method, url] of [['GET', '/v2/'], ['GET', '/v2/app/manifests/latest'], ['HEAD', '/v2/app/blobs/sha256:' + 'a'.repeat(64)], ['GET', '/v2/app/tags/list'], ['GET', '/v2/_catalog']] as const) {
    t.equal(gate(request(method, url)), undefined, `${method} ${url} passes`)
  }
  // New uploads and manifests where no push is in flight (app's, begun before, may go on: see below).
  for (const [method, url] of [
    ['POST', '/v2/other/blobs/uploads/'],
    ['POST', `/v2/other/blobs/uploads/?mount=sha256:${'b'.repeat(64)}&from=app`],
    ['POST', `/v2/other/blobs/uploads/?digest=sha256:${'b'.repeat(64)}`],
    ['PUT', '/v2/other/manifests/latest'],
    ['DELETE', `/v2/app/manifests/sha256:${'c'.repeat(64)}`],
    ['DELETE', `/v2/app/blobs/sha256:${'c'.repeat(64)}`],
    ['PATCH', '/v2/app/blobs/uploads/new-session'],
    ['PUT', `/v2/app/blobs/uploads/new-session?digest=sha256:${'d'.repeat(64)}`],
  ] as const) {
    try {
      gate(request(method, url))
      t.fail(`${method} ${url} should be refused`)
    } catch (error) {
      t.ok(error instanceof RegistryError, `${method} ${url} refused`)
      const refusal = error as RegistryError
      t.equal(refusal.status, 405)
      t.equal(refusal.wireCode, 'UNSUPPORTED')
      t.equal(refusal.code, 'READ_ONLY')
      t.equal(refusal.headers['Retry-After'], '120')
      t.match(refusal.message, /read-only mode.*garbage collection/)
    }
  }

  const patch = gate(request('PATCH', '/v2/app/blobs/uploads/abc-123?_state=xyz'))
  t.ok(patch, 'the session begun before maintenance may send its chunk')
  patch?.done(202, '/v2/app/blobs/uploads/abc-123?_state=next')
  const put = gate(request('PUT', `/v2/app/blobs/uploads/abc-123?_state=next&digest=sha256:${'e'.repeat(64)}`))
  put?.done(201, `/v2/app/blobs/sha256:${'e'.repeat(64)}`)
  t.same(maintenance.inFlight(), { uploads: 0, writes: 0 }, 'the 201 ended the session')
})

t.test('upload ids from Location headers', async (t) => {
  t.equal(uploadIdFromLocation('https://gw.example/v2/a/b/blobs/uploads/5f0e-1?_state=x'), '5f0e-1')
  t.equal(uploadIdFromLocation('/v2/a/blobs/uploads/id'), 'id')
  t.equal(uploadIdFromLocation('/v2/a/blobs/sha256:abc'), undefined)
  t.equal(uploadIdFromLocation(undefined), undefined)
})

t.test('a push in flight may store its manifest during the drain; other manifest PUTs are refused; the drain waits for it', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000, now: time.now })
  const gate = createMaintenanceGate(maintenance)
  const put = (repository: string) => classify('PUT', `/v2/${repository}/manifests/v1`)

  const post = gate(classify('POST', '/v2/app/blobs/uploads/'))
  post?.done(202, '/v2/app/blobs/uploads/s1')
  maintenance.enter()
  const finish = gate(classify('PUT', `/v2/app/blobs/uploads/s1?digest=sha256:${'e'.repeat(64)}`))
  finish?.done(201, undefined)
  t.ok(maintenance.admitsManifest('app'), 'the push whose blob just went in may store its manifest')
  t.notOk(maintenance.admitsManifest('other'), 'a repository with no push in flight may not')
  t.throws(() => gate(put('other')), /read-only mode/)
  const manifest = gate(put('app'))
  t.ok(manifest, 'admitted by the stage')
  manifest?.done(201, undefined)
  time.advance(61_000)
  t.notOk(maintenance.admitsManifest('app'), 'a minute after its last blob it is no push in flight any more')
  t.throws(() => gate(put('app')), /read-only mode/)
})

t.test('during the drain a push in flight may begin more uploads (its next layers, its config blob); no other repository may, nor anyone after the drain', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000, now: time.now })
  const gate = createMaintenanceGate(maintenance)
  const post = (repository: string) => classify('POST', `/v2/${repository}/blobs/uploads/`)

  gate(post('app'))?.done(202, '/v2/app/blobs/uploads/s1')
  maintenance.enter()
  const next = gate(post('app'))
  t.ok(next, 'a second layer of the push whose first upload is open')
  next?.done(202, '/v2/app/blobs/uploads/s2')
  const config = gate(classify('POST', `/v2/app/blobs/uploads/?digest=sha256:${'c'.repeat(64)}`))
  t.ok(config, 'its config blob in one request')
  config?.done(201, undefined)
  t.throws(() => gate(post('other')), /read-only mode/, 'a repository with no push in flight')
  t.throws(() => gate(classify('DELETE', `/v2/app/blobs/sha256:${'d'.repeat(64)}`)), /read-only mode/, 'deletes stay refused, even there')
  // Both sessions end, the drain is over: nothing new is admitted afterwards, so a collection cannot race it.
  gate(classify('DELETE', '/v2/app/blobs/uploads/s1'))?.done(204, undefined)
  gate(classify('DELETE', '/v2/app/blobs/uploads/s2'))?.done(204, undefined)
  time.advance(3_000)
  const drained = maintenance.drain(1)
  time.advance(61_000)
  await drained
  t.throws(() => gate(post('app')), /read-only mode/, 'after the drain, not even the push that was in flight')
})

t.test('drain() waits for the manifest of a push whose blobs are in, then cuts everything off', async (t) => {
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60 * 60_000 })
  maintenance.blobCommitted('app')
  maintenance.enter()
  let drained = false
  const draining = maintenance.drain(30_000).then((result) => {
    drained = true
    return result
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.notOk(drained, 'still waiting for the manifest')
  t.ok(maintenance.admitsManifest('app'))
  maintenance.manifestStored('app')
  t.same(await draining, { finished: 0, remaining: 0 }, 'done a moment after the manifest (more may follow it)')
  t.notOk(maintenance.admitsManifest('app'), 'after the drain nothing begun before is admitted')
})

t.test('a caller that waits longer than maintenance.drain_timeout (a GC) sets the drain deadline: a session and its push\'s manifest are admitted until then', async (t) => {
  const time = clock()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 1000, now: time.now })
  const gate = createMaintenanceGate(maintenance)
  maintenance.uploadStarted('u1')
  const entered = maintenance.enter({ by: 'gc (api)', drainTimeoutMs: 60_000 })
  t.equal(entered.drainUntil, '2026-12-04T03:01:00.000Z', 'the caller\'s timeout, not the configured 1 s')
  time.advance(30_000)
  const finish = gate(classify('PUT', '/v2/team/app/blobs/uploads/u1'))
  t.ok(finish, 'the session\'s last request is admitted 30 s in')
  finish?.done(201, undefined)
  const manifest = gate(classify('PUT', '/v2/team/app/manifests/v1'))
  t.ok(manifest, 'and its manifest')
  manifest?.done(201, undefined)
  t.throws(() => gate(classify('PUT', '/v2/team/other/manifests/v1')), RegistryError, 'a manifest of no push in flight is refused')
  time.advance(31_000)
  maintenance.uploadStarted('u2')
  t.throws(() => gate(classify('PATCH', '/v2/team/app/blobs/uploads/u2')), RegistryError, 'past the deadline nothing is admitted')
})
