// Three gateway instances in front of one registry sharing one PostgreSQL store and no Redis (issue 20): scheduled GC, retention and
// storage samples run at one instance per scheduled time (advisory locks on a connection of their own, times claimed in schedule_turns),
// counted in the shared store itself; the maintenance switch (GC's too) is followed through the store's shared_values; the holder
// SIGKILLed mid-collection frees its lock at once, and the next time runs elsewhere and ends the maintenance it left on.
import t from 'tap'
import pg from 'pg'
import { registryFixture, REGISTRY_BIN } from '../helpers/registry.js'
import { postgresBin, startPostgres } from '../helpers/postgres.js'
import { waitUntil } from '../helpers/gwclient.js'
import { admin, nextRun, openUpload, outcomes, ranTurns, seedImage, startInstances, type Instance } from '../helpers/schedule.js'

// A collection holds maintenance for its drain (4 s here, for open uploads) plus its look at the storage,
// the cut-off announced to every instance and the collector: several seconds. 15 s leaves a gap between two.
const TICK_MS = 15_000
const EVERY = `${TICK_MS / 1000}s`

t.test('three instances, one registry, one PostgreSQL store, no Redis', { skip: postgresBin() ? false : 'PostgreSQL is not installed' }, async (t) => {
  const postgres = await startPostgres()
  t.teardown(() => postgres.stop())
  const registry = await registryFixture(t)
  await seedImage(registry.url, 'kept/app')
  const config = {
    upstreams: [{ url: registry.url }],
    store: { url: postgres.urlWithoutPassword, password_file: postgres.passwordFile, flush_interval: '200ms', scan: true, connect_timeout: '2s' },
    gc: { registry_config: registry.configFile, binary: REGISTRY_BIN, schedule: EVERY, drain_timeout: '4s', usage_interval: EVERY },
    retention: { schedule: EVERY, rules: [{ repositories: 'nothing/**', keep_last: 1 }] },
  }
  const instances = await startInstances(t, ['A', 'B', 'C'], config)
  const allUp = Date.now()
  const db = new pg.Client({ connectionString: postgres.url })
  await db.connect()
  t.teardown(() => db.end())

  t.test('the start-up scan ran at one instance of the three (the others skipped it), once per 10-minute window they started in', async (t) => {
    const SCAN_WINDOW_MS = 600_000
    // The line each instance logs right after its claim: the scan begins, or is skipped.
    const begins = (line: { msg: string }): boolean => line.msg.startsWith('store scan: reading every repository')
    const outcome = await Promise.all(instances.map((instance) =>
      instance.gateway.waitForLog((line) => begins(line) || line.msg.startsWith('store scan: skipped'), 30_000)))
    const scanned = outcome.filter(begins).length
    // The instances start one after the other within seconds: a window boundary between two starts makes it two scans.
    const windows = new Set(outcome.map((line) => Math.floor(Date.parse(String(line.time)) / SCAN_WINDOW_MS))).size
    t.equal(scanned, windows, `${scanned} scan(s) for ${windows} window(s): ${outcome.map((line) => line.msg).join('; ')}`)
    t.ok(scanned >= 1 && scanned < instances.length, 'at least one instance scanned, not all three')
  })

  t.test('maintenance switched at one instance is followed by the others through the store (shared_values), on and off', async (t) => {
    const [a, b, c] = instances as [Instance, Instance, Instance]
    t.equal((await admin(a, 'PUT', '/admin/api/maintenance', { on: true, message: 'moving disks' })).status, 200, 'switched on at A')
    for (const other of [b, c]) {
      t.ok(await waitUntil(async () => (await admin(other, 'GET', '/admin/api/maintenance')).json.on === true, 5000), `${other.name} follows within a few seconds`)
      t.equal((await other.client.send('POST', '/v2/during/maintenance/blobs/uploads/')).status, 405, `${other.name} refuses a push`)
    }
    t.equal((await admin(b, 'PUT', '/admin/api/maintenance', { on: false })).status, 200, 'switched off at B')
    // A scheduled collection (every tick) may hold maintenance on for a moment of its own once it is off: waits allow for it.
    // Its hold says so (by "gc (schedule)"); the switch followed is the one B turned off, which no longer shows anywhere.
    const switchedOff = (json: Record<string, unknown>): boolean => json.on === false || String(json.by).startsWith('gc (')
    for (const other of [a, c]) {
      t.ok(await waitUntil(async () => switchedOff((await admin(other, 'GET', '/admin/api/maintenance')).json), 10_000), `${other.name} follows the switch off`)
      t.ok(await waitUntil(async () => (await other.client.send('POST', '/v2/after/maintenance/blobs/uploads/')).status === 202, 12_000), `${other.name} accepts a push again`)
    }
    const stored = (await db.query<{ value: string; version: string }>("SELECT value, version FROM shared_values WHERE name = 'maintenance'")).rows[0]
    t.ok(Number(stored?.version) >= 2, `the store holds a version per switch (${String(stored?.version)})`)
  })

  t.test('each scheduled time ran once: the store holds one collection and one storage sample per time', async (t) => {
    const enough = await waitUntil(() => ['gc', 'retention', 'usage'].every((job) => [...ranTurns(instances, job).keys()].filter((turn) => Date.parse(turn) > allUp).length >= 3), 4 * TICK_MS + 5_000)
    t.ok(enough, 'three times of each job ran within 45 s')
    for (const instance of instances) await instance.gateway.logsSettled()
    for (const job of ['gc', 'retention', 'usage']) {
      const turns = [...ranTurns(instances, job)]
      for (const [turn, ran] of turns) t.equal(ran.length, 1, `${job} at ${turn}: ran at ${ran.join(', ')}`)
      const counts = await Promise.all(instances.map((instance) => outcomes(instance, job)))
      t.comment(`${job}: ${turns.length} scheduled times, runs per instance: ${instances.map((instance, index) => `${instance.name} ${counts[index]?.ran ?? 0}`).join(', ')}`)
      t.equal(counts.reduce((sum, count) => sum + (count.ran ?? 0), 0), turns.length, `${job}: the ran counters add up to the times run`)
    }
    // The shared store: the history of every instance's collections, and the storage chart's samples.
    await waitUntil(async () => Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM gc_runs WHERE report LIKE '%\"trigger\":\"schedule\"%'")).rows[0]?.n) >= ranTurns(instances, 'gc').size, 10_000)
    const runs = (await db.query<{ report: string }>('SELECT report FROM gc_runs')).rows.map((row) => JSON.parse(row.report) as { trigger: string; startedAt: string; result: string })
    const scheduled = runs.filter((run) => run.trigger === 'schedule')
    const perTime = new Map<number, number>()
    for (const run of scheduled) {
      const time = Math.floor(Date.parse(run.startedAt) / TICK_MS) * TICK_MS
      perTime.set(time, (perTime.get(time) ?? 0) + 1)
    }
    t.equal(scheduled.length, ranTurns(instances, 'gc').size, `gc_runs: ${scheduled.length} scheduled collections for ${ranTurns(instances, 'gc').size} times`)
    t.same([...perTime.values()].filter((count) => count !== 1), [], 'one row per scheduled time')
    t.ok(scheduled.filter((run) => run.result === 'success').length >= 3, 'and they succeeded')
    const samples = (await db.query<{ at: string }>("SELECT at FROM storage_samples WHERE reason = 'schedule'")).rows.map((row) => Number(row.at))
    const sampleTimes = new Set(samples.map((at) => Math.floor(at / TICK_MS)))
    t.equal(samples.length, sampleTimes.size, `storage_samples: ${samples.length} scheduled samples in ${sampleTimes.size} distinct times (one each)`)
    const claimed = (await db.query<{ job: string; turn: string }>('SELECT job, turn FROM schedule_turns ORDER BY job')).rows
    t.same(claimed.map((row) => row.job), ['audit:prune', 'housekeeping:gc', 'housekeeping:retention', 'housekeeping:usage', 'store:scan'], 'schedule_turns: the last time claimed per job (the schedules, audit pruning, the start-up scan)')
  })

  t.test('the holder killed mid-collection: its lock is freed at once, the next time runs at another instance', async (t) => {
    for (const instance of instances) t.equal(await openUpload(instance, 'held/app'), 202, `${instance.name}: an upload session open`)
    const seen = new Set(ranTurns(instances, 'gc').keys())
    const started = await nextRun(instances, 'gc', seen, TICK_MS + 5_000)
    if (!started) return t.fail('no instance started the next scheduled collection')
    const { holder, turn: killedTurn } = started
    const [other] = instances.filter((instance) => instance !== holder) as [Instance]
    const manual = await admin(other, 'POST', '/admin/api/gc', {})
    t.equal(manual.status, 409, `a manual run at ${other.name} while ${holder.name} collects: 409`)
    t.equal(manual.json.code, 'ADMIN_CONFLICT')
    t.ok(await waitUntil(async () => (await admin(other, 'GET', '/admin/api/maintenance')).json.on === true, 5000), `${other.name} follows the collection's maintenance switch (through the store)`)
    t.equal((await other.client.send('POST', '/v2/during/gc/blobs/uploads/')).status, 405, `${other.name} refuses a new push during the collection`)
    holder.gateway.child.kill('SIGKILL')
    holder.killed = true
    const killedAt = Date.now()
    let next: [string, string[]] | undefined
    await waitUntil(() => {
      next = [...ranTurns(instances, 'gc')].find(([turn]) => Date.parse(turn) > Date.parse(killedTurn))
      return next !== undefined
    }, TICK_MS + 10_000)
    if (!next) return t.fail('no instance ran the time after the kill')
    t.comment(`collection at ${killedTurn} killed at ${holder.name}; the next, at ${next[0]}, ran at ${next[1].join(', ')} (${Date.parse(next[0]) - killedAt} ms after the kill)`)
    t.equal(next[1].length, 1, 'at one instance')
    t.not(next[1][0], holder.name, 'not the killed one')
    t.equal(Date.parse(next[0]), Date.parse(killedTurn) + TICK_MS, 'the very next time: PostgreSQL freed the dead holder\'s lock at once')
    const runner = instances.find((instance) => instance.name === next?.[1][0]) as Instance
    const finished = await runner.gateway.waitForLog((line) => /^garbage collection (finished|failed)$/.test(line.msg) && line.trigger === 'schedule' && Date.parse(String(line.startedAt)) >= Date.parse(next?.[0] ?? ''), 20_000)
    t.equal(finished.result, 'success', `the collection at ${runner.name} succeeded`)
    t.ok(runner.gateway.logs.some((line) => /left on by a collection that did not finish/.test(line.msg)), `${runner.name} took over the maintenance the killed collection left on`)
    for (const instance of instances.filter((candidate) => candidate !== holder)) {
      t.ok(await waitUntil(async () => (await admin(instance, 'GET', '/admin/api/maintenance')).json.on === false, 5000), `${instance.name}: writes accepted again`)
      t.equal((await instance.client.send('POST', '/v2/after/gc/blobs/uploads/')).status, 202, `${instance.name}: a push starts again`)
    }
  })
})
