// A garbage collection run's steps around the collector: maintenance entered and always left (also on failure and at shutdown), one run at a time, an operator's maintenance left on.
import t from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
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

t.test('a run enters maintenance, drains, collects, leaves, and reports the collector\'s totals', async (t) => {
  const dir = t.testdir({ storage: {} })
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
  const dir = t.testdir({ storage: {} })
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
  const dir = t.testdir({ storage: {} })
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
  const dir = t.testdir({ storage: {} })
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
