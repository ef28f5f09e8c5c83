// A garbage collection run's steps around the collector: maintenance entered and always left (also on failure and at shutdown), one run at a time, an operator's maintenance left on.
import t from 'tap'
import { appendFileSync, chmodSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { GarbageCollector, GcBusy, type MaintenanceSwitch } from '../../src/housekeeping/gc.js'
import { createLogger } from '../../src/observe/log.js'

function fakeMaintenance(on = false): MaintenanceSwitch & { calls: string[] } {
  const calls: string[] = []
  let state = on
  return {
    calls,
    get isOn() {
      return state
    },
    enter: () => {
      calls.push('enter')
      state = true
    },
    leave: () => {
      calls.push('leave')
      state = false
    },
    drain: async () => {
      calls.push('drain')
      return { finished: 0, remaining: 0 }
    },
    inFlight: () => ({ uploads: 0, writes: 0 }),
  }
}

/** A stand-in for the registry binary: prints what 2.8.2 prints, then exits with `code` (or sleeps). */
function fakeCollector(dir: string, script: string): string {
  const path = join(dir, 'registry')
  writeFileSync(path, `#!/bin/sh\n${script}\n`)
  chmodSync(path, 0o755)
  return path
}

const log = createLogger('silent')

/** A storage something was pushed to: registry 2.8 has made docker/registry/v2/blobs. */
const PUSHED_TO = { storage: { docker: { registry: { v2: { blobs: {}, repositories: {} } } } } }

t.test('a run enters maintenance, drains, collects, leaves, and reports the collector\'s totals', async (t) => {
  const dir = t.testdir(PUSHED_TO)
  const binary = fakeCollector(dir, 'echo "lib/a"; echo "3 blobs marked, 2 blobs and 0 manifests eligible for deletion"; echo "blob eligible for deletion: sha256:aa"; exit 0')
  const maintenance = fakeMaintenance()
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: join(dir, 'c.yml'), storageRoot: join(dir, 'storage') }), maintenance, drainTimeoutMs: 1000, log })
  const phases: string[] = []
  const run = await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => phases.push(progress.phase))
  t.equal(run.result, 'success')
  t.equal(run.blobsEligible, 2)
  t.equal(run.blobsDeleted, 2, 'no "Deleting blob" lines: the eligible count of a successful run')
  t.same(maintenance.calls, ['enter', 'drain', 'leave'])
  t.same([...new Set(phases)], ['maintenance', 'draining', 'measuring', 'collecting', 'leaving', 'done'])
  t.equal(gc.history()[0]?.id, run.id)
})

t.test('a failing collector still leaves maintenance, and the run says why', async (t) => {
  const dir = t.testdir(PUSHED_TO)
  const binary = fakeCollector(dir, 'echo "Error: configuration error: open /nope.yml: no such file or directory" >&2; exit 1')
  const maintenance = fakeMaintenance()
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: '/nope.yml', storageRoot: join(dir, 'storage') }), maintenance, drainTimeoutMs: 1000, log })
  const run = await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' })
  t.equal(run.result, 'failure')
  t.match(run.error, /exited with code 1: Error: configuration error/)
  t.same(maintenance.calls, ['enter', 'drain', 'leave'], 'left after the failure')
  t.equal(maintenance.isOn, false)
})

t.test('maintenance an operator switched on stays on; a dry run never touches it', async (t) => {
  const dir = t.testdir(PUSHED_TO)
  const binary = fakeCollector(dir, 'echo "0 blobs marked, 0 blobs and 0 manifests eligible for deletion"')
  const already = fakeMaintenance(true)
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: 'c', storageRoot: join(dir, 'storage') }), maintenance: already, drainTimeoutMs: 1000, log })
  await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' })
  t.same(already.calls, ['drain'], 'no enter, no leave')
  t.equal(already.isOn, true)
  const off = fakeMaintenance()
  const dry = new GarbageCollector({ target: () => ({ binary, configPath: 'c', storageRoot: join(dir, 'storage') }), maintenance: off, drainTimeoutMs: 1000, log })
  await dry.run({ dryRun: true, deleteUntagged: false, trigger: 'api' })
  t.same(off.calls, [], 'a dry run pauses no writes')
})

t.test('one run at a time; close() at shutdown kills the collector and leaves maintenance', async (t) => {
  const dir = t.testdir(PUSHED_TO)
  const binary = fakeCollector(dir, 'echo "lib/a"; exec sleep 30')
  const maintenance = fakeMaintenance()
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: 'c', storageRoot: join(dir, 'storage') }), maintenance, drainTimeoutMs: 1000, log })
  const collecting = new Promise<void>((resolve) => {
    const first = gc.start({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => {
      if (progress.phase === 'collecting') resolve()
    })
    t.teardown(() => first.finished.then(() => undefined))
  })
  await collecting
  let refusal: unknown
  try {
    gc.start({ dryRun: true, deleteUntagged: false, trigger: 'api' })
  } catch (error) {
    refusal = error
  }
  t.ok(refusal instanceof GcBusy, 'a second run is refused while one runs')
  await gc.close()
  const run = gc.history()[0]
  t.equal(run?.result, 'failure')
  t.match(run?.error, /signal SIGTERM/, 'the collector was killed (it would sleep 30 s)')
  t.same(maintenance.calls, ['enter', 'drain', 'leave'])
  t.equal(gc.current(), undefined)
})

t.test('a storage nothing was pushed to yet: no collector (registry 2.8\'s fails there with "Path not found"), a successful run that freed nothing', async (t) => {
  const dir = t.testdir({ storage: { docker: { registry: { v2: { repositories: {} } } } } })
  const binary = fakeCollector(dir, 'echo "failed to garbage collect: error enumerating blobs: filesystem: Path not found: /docker/registry/v2/blobs" >&2; exit 1')
  const maintenance = fakeMaintenance()
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: join(dir, 'c.yml'), storageRoot: join(dir, 'storage') }), maintenance, drainTimeoutMs: 1000, log })
  const messages: string[] = []
  const run = await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => messages.push(progress.message))
  t.equal(run.result, 'success', String(run.error))
  t.equal(run.blobsDeleted, 0)
  t.ok(messages.includes('the storage holds no blobs yet: nothing to collect'))
  t.same(maintenance.calls, ['enter', 'drain', 'leave'])

  // No docker/registry/v2 at all: the storage is not where the config says (a volume not mounted); the collector runs and the run fails.
  const empty = t.testdir({ storage: {} })
  const failing = fakeCollector(empty, 'echo "failed to garbage collect: error enumerating blobs: filesystem: Path not found: /docker/registry/v2/blobs" >&2; exit 1')
  const wrong = new GarbageCollector({ target: () => ({ binary: failing, configPath: join(empty, 'c.yml'), storageRoot: join(empty, 'storage') }), maintenance: fakeMaintenance(), drainTimeoutMs: 1000, log })
  const failed = await wrong.run({ dryRun: false, deleteUntagged: false, trigger: 'api' })
  t.equal(failed.result, 'failure', 'a storage root without the registry\'s tree is not "nothing to collect"')
  t.match(failed.error, /Path not found/)
})

t.test('uploads written into the storage elsewhere are waited for (up to the drain timeout) before the collector runs', async (t) => {
  const dir = t.testdir({ ...PUSHED_TO, 'collector-ran': '' })
  const ran = join(dir, 'collector-ran')
  const binary = fakeCollector(dir, `date +%s%3N > ${ran}; echo "0 blobs marked, 0 blobs and 0 manifests eligible for deletion"`)
  const repository = join(dir, 'storage', 'docker', 'registry', 'v2', 'repositories', 'a', 'b')
  const session = join(repository, '_uploads', 'u1')
  mkdirSync(session, { recursive: true })
  writeFileSync(join(session, 'data'), 'x')
  // Another writer: appends every 100 ms for 1 s, pauses 6 s (longer than the 5 s an idle session is given), then commits.
  let ticks = 0
  const writer = setInterval(() => {
    ticks += 1
    if (ticks <= 10) appendFileSync(join(session, 'data'), 'x')
    else if (ticks === 70) {
      clearInterval(writer)
      rmSync(session, { recursive: true, force: true })
    }
  }, 100)
  t.teardown(() => clearInterval(writer))
  const maintenance = fakeMaintenance()
  const gc = new GarbageCollector({ target: () => ({ binary, configPath: join(dir, 'c.yml'), storageRoot: join(dir, 'storage') }), maintenance: { ...maintenance, closeDrain: () => maintenance.calls.push('closeDrain') }, drainTimeoutMs: 20_000, log })
  const messages: string[] = []
  const started = Date.now()
  const run = await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => messages.push(progress.message))
  t.equal(run.result, 'success')
  t.ok(messages.some((message) => /waiting for 1 upload\(s\) and 0 push\(es\) being written into the storage elsewhere/.test(message)), 'said what it waits for')
  const collectorAt = Number(readFileSync(ran, 'utf8'))
  t.ok(collectorAt - started >= 6_900, `the collector ran once the session was gone, not when it went idle (${collectorAt - started} ms after the start)`)
  t.same(maintenance.calls, ['enter', 'drain', 'closeDrain', 'leave'], 'the window for writes begun before is closed (everywhere) before the collector')

  // A push whose blob came but whose manifest has not: waited for until the manifest (a new revision) is in.
  const layers = join(repository, '_layers', 'sha256')
  const revisions = join(repository, '_manifests', 'revisions', 'sha256')
  mkdirSync(revisions, { recursive: true })
  const past = (Date.now() - 120_000) / 1000
  utimesSync(revisions, past, past)
  const manifestLater = setTimeout(() => mkdirSync(join(revisions, 'c'.repeat(64)), { recursive: true }), 2_000)
  t.teardown(() => clearTimeout(manifestLater))
  mkdirSync(join(layers, 'b'.repeat(64)), { recursive: true })
  const pushMessages: string[] = []
  const pushStarted = Date.now()
  await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => pushMessages.push(progress.message))
  t.ok(pushMessages.some((message) => /0 upload\(s\) and 1 push\(es\)/.test(message)), 'said it waits for a push')
  t.ok(Number(readFileSync(ran, 'utf8')) - pushStarted >= 1_900, 'the collector ran once the manifest was in')

  // A session nobody has written to since well before the switch (its client went away) holds nothing up.
  const stale = join(repository, '_uploads', 'u2')
  mkdirSync(stale, { recursive: true })
  writeFileSync(join(stale, 'data'), 'x')
  const old = (Date.now() - 60_000) / 1000
  utimesSync(join(stale, 'data'), old, old)
  const quick = Date.now()
  t.equal((await gc.run({ dryRun: false, deleteUntagged: false, trigger: 'api' })).result, 'success')
  t.ok(Date.now() - quick < 3_000, `an abandoned session holds nothing up (${Date.now() - quick} ms: two looks a second apart, and the cut-off's moment)`)

  // One whose time is old but which keeps growing (a shared file system whose clock runs behind) is seen moving between two looks.
  const behind = setInterval(() => {
    appendFileSync(join(stale, 'data'), 'x')
    utimesSync(join(stale, 'data'), old, old)
  }, 100)
  t.teardown(() => clearInterval(behind))
  const short = new GarbageCollector({ target: () => ({ binary, configPath: join(dir, 'c.yml'), storageRoot: join(dir, 'storage') }), maintenance: fakeMaintenance(), drainTimeoutMs: 2_500, log })
  const bounded = Date.now()
  const skewed: string[] = []
  t.equal((await short.run({ dryRun: false, deleteUntagged: false, trigger: 'api' }, (progress) => skewed.push(progress.message))).result, 'success', 'a session written for ever: the run goes on at the drain timeout')
  clearInterval(behind)
  const waited = Date.now() - bounded
  t.ok(skewed.some((message) => /waiting for 1 upload/.test(message)), 'the growing session was waited for')
  t.ok(waited >= 2_400 && waited < 5_000, `until the drain timeout (2.5 s), not longer (${waited} ms)`)
})
