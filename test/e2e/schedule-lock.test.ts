// Three gateway instances in front of one registry with gc.schedule and retention.schedule at 15s, sharing a real redis-server (issue 20):
// each scheduled time runs at exactly one instance; a holder SIGKILLed mid-collection leaves the next time to another instance once
// the lock's TTL has passed, which also takes over the maintenance it left on; with Redis down nothing runs.
import t from 'tap'
import { registryFixture, REGISTRY_BIN } from '../helpers/registry.js'
import { redisFixture } from '../helpers/redis.js'
import { waitUntil } from '../helpers/gwclient.js'
import { admin, nextRun, openUpload, outcomes, ranTurns, seedImage, startInstances, type Instance } from '../helpers/schedule.js'

// A collection holds maintenance for its drain (4 s here, for open uploads) plus its look at the storage,
// the cut-off announced to every instance and the collector: several seconds. 15 s leaves a gap between two.
const TICK_MS = 15_000
const EVERY = `${TICK_MS / 1000}s`
const LOCK_TTL_MS = 3_000

t.test('three instances, one registry, one Redis: each scheduled GC and retention runs at one instance', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  await seedImage(registry.url, 'kept/app')
  const config = {
    upstreams: [{ url: registry.url }],
    store: { scan: false },
    gc: { registry_config: registry.configFile, binary: REGISTRY_BIN, schedule: EVERY, drain_timeout: '4s', usage_interval: EVERY },
    retention: { schedule: EVERY, rules: [{ repositories: 'nothing/**', keep_last: 1 }] },
    shared: { redis: { url: redis.url, key_prefix: 'sched:', lock_ttl: `${LOCK_TTL_MS}ms` } },
  }
  const instances = await startInstances(t, ['A', 'B', 'C'], config)
  const allUp = Date.now()
  const live = (): Instance[] => instances.filter((instance) => !instance.killed)
  const after = (turns: Map<string, string[]>, from: number): Array<[string, string[]]> => [...turns].filter(([turn]) => Date.parse(turn) > from)

  t.test('three scheduled times with all three up: each job ran once per time', async (t) => {
    // Bounded: three times come within four ticks.
    const enough = await waitUntil(() => ['gc', 'retention', 'usage'].every((job) => after(ranTurns(instances, job), allUp).length >= 3), 4 * TICK_MS + 5_000)
    t.ok(enough, 'three times of each job ran within 45 s')
    for (const instance of instances) await instance.gateway.logsSettled()
    for (const job of ['gc', 'retention', 'usage']) {
      const turns = [...ranTurns(instances, job)]
      for (const [turn, ran] of turns) t.equal(ran.length, 1, `${job} at ${turn}: ran at ${ran.join(', ')}`)
      const perInstance = instances.map((instance) => `${instance.name} ${turns.filter(([, ran]) => ran.includes(instance.name)).length}`)
      t.comment(`${job}: ${turns.length} scheduled times, runs per instance: ${perInstance.join(', ')}`)
      const counts = await Promise.all(instances.map((instance) => outcomes(instance, job)))
      t.equal(counts.reduce((sum, count) => sum + (count.ran ?? 0), 0), turns.length, `${job}: the instances' ran counters add up to the times run`)
      for (const [index, count] of counts.entries()) {
        const skipped = (count.skipped_locked ?? 0) + (count.skipped_ran_elsewhere ?? 0)
        t.ok((count.ran ?? 0) + skipped >= 3, `${job} at ${instances[index]?.name}: took part in every time (${JSON.stringify(count)})`)
        t.equal(count.skipped_lock_unavailable ?? 0, 0, 'the lock always answered')
      }
    }
    // The collections themselves: one per time, no more (the store of each instance keeps its own; the log says each).
    const collections = instances.flatMap((instance) => instance.gateway.logs.filter((line) => line.msg === 'garbage collection started' && line.trigger === 'schedule'))
    t.equal(collections.length, ranTurns(instances, 'gc').size, `${collections.length} scheduled collections for ${ranTurns(instances, 'gc').size} times`)
    // A run logs its start at once and its end a few seconds later (two looks at the storage, the cut-off): the third may still run.
    const finished = (): number => instances.flatMap((instance) => instance.gateway.logs.filter((line) => line.msg === 'garbage collection finished' && line.trigger === 'schedule')).length
    await waitUntil(() => finished() >= 3, 15_000)
    t.ok(finished() >= 3, `${finished()} of them finished with success`)
  })

  t.test('the holder killed mid-collection: a manual run elsewhere gets 409, the others refuse writes, the next time runs at another instance', async (t) => {
    // An upload open at every instance: whichever collects waits for it (gc.drain_timeout 4s), long enough to be killed mid-run.
    for (const instance of instances) t.equal(await openUpload(instance, 'held/app'), 202, `${instance.name}: an upload session open`)
    const seen = new Set(ranTurns(instances, 'gc').keys())
    const started = await nextRun(instances, 'gc', seen, TICK_MS + 5_000)
    if (!started) return t.fail('no instance started the next scheduled collection')
    const { holder, turn: killedTurn } = started
    const others = instances.filter((instance) => instance !== holder)
    const [other] = others as [Instance]
    t.comment(`collection at ${killedTurn} runs at ${holder.name}`)

    const manual = await admin(other, 'POST', '/admin/api/gc', {})
    t.equal(manual.status, 409, `a manual run at ${other.name} while ${holder.name} collects: 409`)
    t.equal(manual.json.code, 'ADMIN_CONFLICT')
    t.equal(manual.json.running_elsewhere, true)
    t.match(String(manual.json.error), /running on another instance/)

    t.ok(await waitUntil(async () => (await admin(other, 'GET', '/admin/api/maintenance')).json.on === true, 3000), `${other.name} follows the maintenance switch`)
    const refused = await other.client.send('POST', '/v2/during/gc/blobs/uploads/')
    t.equal(refused.status, 405, `${other.name} refuses a new push during the collection (405, as distribution in read-only mode)`)

    holder.gateway.child.kill('SIGKILL')
    holder.killed = true
    const killedAt = Date.now()
    await new Promise((resolve) => holder?.gateway.child.exitCode !== null || holder?.gateway.child.signalCode !== null ? resolve(undefined) : holder?.gateway.child.once('exit', resolve))

    // The dead holder's lock expires after lock_ttl; the next time (≤ one tick on) is another instance's.
    let next: [string, string[]] | undefined
    await waitUntil(() => {
      next = after(ranTurns(instances, 'gc'), Date.parse(killedTurn))[0]
      return next !== undefined
    }, TICK_MS + LOCK_TTL_MS + 10_000)
    if (!next) return t.fail('no instance ran the time after the kill')
    t.comment(`next collection at ${next[0]} ran at ${next[1].join(', ')} (${Date.parse(next[0]) - killedAt} ms after the kill)`)
    t.same(next[1].length, 1, 'at one instance')
    t.not(next[1][0], holder.name, 'not the killed one')
    t.ok(Date.parse(next[0]) >= killedAt, 'the next scheduled time, not a retry of the killed one')
    t.same(ranTurns(instances, 'gc').get(killedTurn), [holder.name], 'the killed time was not run again elsewhere')
    const runner = others.find((instance) => instance.name === next?.[1][0]) as Instance
    const finished = await runner.gateway.waitForLog((line) => /^garbage collection (finished|failed)$/.test(line.msg) && line.trigger === 'schedule' && Date.parse(String(line.startedAt)) >= Date.parse(next?.[0] ?? ''), 20_000)
    t.equal(finished.result, 'success', `the collection at ${runner.name} succeeded (${typeof finished.error === 'string' ? finished.error : 'no error'})`)
    t.ok(runner.gateway.logs.some((line) => /left on by a collection that did not finish/.test(line.msg)), `${runner.name} took over the maintenance the killed collection left on`)
    for (const instance of others) {
      t.ok(await waitUntil(async () => (await admin(instance, 'GET', '/admin/api/maintenance')).json.on === false, 5000), `${instance.name}: writes accepted again`)
      const pushed = await instance.client.send('POST', '/v2/after/gc/blobs/uploads/')
      t.equal(pushed.status, 202, `${instance.name}: a push starts again`)
    }
  })

  t.test('Redis down: no instance runs a scheduled time, a manual run is refused with 503', async (t) => {
    for (const instance of live()) await instance.gateway.logsSettled()
    const before = ranTurns(live(), 'gc').size
    await redis.kill()
    const down = Date.now()
    const skipped = await waitUntil(async () => {
      const counts = await Promise.all(live().map((instance) => outcomes(instance, 'gc')))
      return counts.every((count) => (count.skipped_lock_unavailable ?? 0) >= 1)
    }, TICK_MS + 5_000)
    t.ok(skipped, 'every live instance skipped a time: portier_scheduled_runs_total{outcome="skipped_lock_unavailable"}')
    for (const instance of live()) await instance.gateway.logsSettled()
    t.equal(after(ranTurns(live(), 'gc'), down).length, 0, 'no collection ran after Redis went down')
    t.equal(ranTurns(live(), 'gc').size, before)
    const [first] = live() as [Instance]
    const manual = await admin(first, 'POST', '/admin/api/gc', {})
    t.equal(manual.status, 503, 'a manual collection without the lock: 503')
    t.equal(manual.json.code, 'HOUSEKEEPING_LOCK_UNAVAILABLE')
    t.ok(first.gateway.logs.some((line) => line.outcome === 'skipped_lock_unavailable' && line.level >= 40), 'said in the log as a warning')
  })
})
