// The lock scheduled housekeeping takes across instances, against real engines: Redis (shared.redis) and PostgreSQL advisory locks (store.url); each scheduled time runs at exactly one instance, and nothing runs while the engine is down.
import t, { type Test } from 'tap'
import pino from 'pino'
import { createRedisShared } from '../../src/shared/redis.js'
import type { Locks } from '../../src/shared/types.js'
import { AdvisoryLocks, advisoryKey } from '../../src/store/advisory-locks.js'
import { claimTurn, TURN_MIGRATIONS } from '../../src/store/turns.js'
import { RunLocks, RunLockUnavailable, RunningElsewhere, type TurnOutcome } from '../../src/housekeeping/run-lock.js'
import { nextAlignedRun } from '../../src/housekeeping/gc-schedule.js'
import { redisFixture, type RedisHandle } from '../helpers/redis.js'
import { ENGINES, openEngine, sharedPostgres } from '../helpers/store-engines.js'
import { postgresBin } from '../helpers/postgres.js'
import { sleep } from '../helpers/gwclient.js'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/app/config.js'
import { ConfigError } from '../../src/config/index.js'

const silent = pino({ level: 'silent' })

function redisLocks(t: Test, redis: RedisHandle): { locks: Locks; connected: Promise<boolean> } {
  const shared = createRedisShared({ url: redis.url, username: '', password: '', ca: undefined, keyPrefix: 'unit:', connectTimeoutMs: 2000, commandTimeoutMs: 500, staleAfterMs: 60_000, log: silent })
  t.teardown(() => shared.close())
  return { locks: shared.locks as Locks, connected: shared.connected() }
}

/** Three instances' RunLocks racing for the same scheduled times: the outcomes by instance. */
async function race(instances: RunLocks[], job: string, times: number[], workMs: number): Promise<{ ran: number[]; outcomes: TurnOutcome[][] }> {
  const ran = instances.map(() => 0)
  const outcomes: TurnOutcome[][] = []
  for (const plannedAt of times) {
    outcomes.push(await Promise.all(instances.map((locks, index) => locks.turn(job, job, plannedAt, async () => {
      ran[index] = (ran[index] ?? 0) + 1
      await sleep(workMs)
    }))))
  }
  return { ran, outcomes }
}

t.test('scheduled times are the same at every instance', async (t) => {
  t.equal(nextAlignedRun({ kind: 'interval', ms: 10_000 }, 1_000_003_456), 1_000_010_000)
  t.equal(nextAlignedRun({ kind: 'interval', ms: 10_000 }, 1_000_010_000), 1_000_020_000, 'a time already reached is not planned again')
  t.equal(nextAlignedRun({ kind: 'daily', hour: 3, minute: 30 }, Date.UTC(2026, 0, 1, 2, 0, 7)), Date.UTC(2026, 0, 1, 3, 30))
})

t.test('Redis: one holder at a time, renewed while held, freed by release or after its TTL', async (t) => {
  const redis = await redisFixture(t)
  const a = redisLocks(t, redis)
  const b = redisLocks(t, redis)
  t.ok(await a.connected)
  t.ok(await b.connected)
  const held = await a.locks.tryAcquire('housekeeping:gc', 1000)
  t.ok(held, 'A takes the lock')
  t.equal(await b.locks.tryAcquire('housekeeping:gc', 1000), undefined, 'B cannot')
  t.equal(await a.locks.tryAcquire('housekeeping:gc', 1000), undefined, 'nor A a second time')
  await sleep(1600)
  t.equal(await b.locks.tryAcquire('housekeeping:gc', 1000), undefined, 'still held past its TTL: A renews it')
  await held?.release()
  const taken = await b.locks.tryAcquire('housekeeping:gc', 1000)
  t.ok(taken, 'B takes it once A released it')
  // A holder that dies stops renewing: the key is left to expire (as a SIGKILLed instance's is).
  const pttl = Number((await redis.command('PTTL', 'unit:lock:housekeeping:gc')).slice(1))
  t.ok(pttl > 0 && pttl <= 1000, `the lock has a TTL (${pttl} ms)`)
  await redis.command('DEL', 'unit:lock:housekeeping:gc')
  t.ok(await a.locks.tryAcquire('housekeeping:gc', 1000), 'a lock whose holder is gone is free again')

  t.equal(await a.locks.claimTurn('housekeeping:gc', 5000), true, 'the first claim of a time wins')
  t.equal(await b.locks.claimTurn('housekeeping:gc', 5000), false, 'the same time again loses')
  t.equal(await b.locks.claimTurn('housekeeping:gc', 4000), false, 'an earlier time loses')
  t.equal(await b.locks.claimTurn('housekeeping:gc', 6000), true, 'a later time wins')
})

t.test('Redis: three instances, twenty scheduled times, each run exactly once', async (t) => {
  const redis = await redisFixture(t)
  const instances = [0, 1, 2].map(() => redisLocks(t, redis))
  for (const instance of instances) t.ok(await instance.connected)
  const told: string[] = []
  const runLocks = instances.map(({ locks }, index) => new RunLocks({ engine: 'redis', locks, ttlMs: 2000, log: silent, onTurn: (job, outcome) => told.push(`${index}:${job}:${outcome}`) }))
  const times = Array.from({ length: 20 }, (_, index) => 1_000_000 + index * 10_000)
  const { ran, outcomes } = await race(runLocks, 'gc', times, 20)
  for (const [index, outcome] of outcomes.entries()) t.equal(outcome.filter((entry) => entry === 'ran').length, 1, `time ${index}: one instance ran it (${outcome.join(', ')})`)
  t.equal(ran.reduce((sum, count) => sum + count, 0), 20, `runs per instance: ${ran.join(', ')}`)
  t.equal(told.length, 60, 'every outcome told (the metric)')
  // A time that already ran does not run again at a late instance (its clock behind, or its timer late).
  t.equal(await runLocks[0]?.turn('gc', 'gc', times[19] as number, async () => { t.fail('ran twice') }), 'skipped_ran_elsewhere')

  t.test('a manual run holds the lock: the schedule skips, a second manual run is refused', async (t) => {
    const [first, second] = runLocks as [RunLocks, RunLocks]
    const held = await first.hold('gc', 'a garbage collection')
    await t.rejects(second.hold('gc', 'a garbage collection'), RunningElsewhere)
    t.equal(await second.turn('gc', 'gc', 2_000_000_000_000, async () => { t.fail('ran beside a manual run') }), 'skipped_locked')
    await held.release()
    t.equal(await second.turn('gc', 'gc', 2_000_000_010_000, async () => undefined), 'ran')
  })

  t.test('Redis down: nothing runs, a manual run is refused', async (t) => {
    await redis.kill()
    const [first] = runLocks as [RunLocks]
    t.equal(await first.turn('gc', 'gc', 3_000_000_000_000, async () => { t.fail('ran without the lock') }), 'skipped_lock_unavailable')
    await t.rejects(first.hold('retention', 'a retention run'), RunLockUnavailable)
    t.ok(told.includes('0:gc:skipped_lock_unavailable'))
  })
})

t.test('without a shared engine: runs as one instance always did', async (t) => {
  const local = new RunLocks({ engine: 'local', locks: undefined, ttlMs: 1000, log: silent })
  t.equal(local.shared, false)
  let runs = 0
  t.equal(await local.turn('gc', 'gc', 1, async () => void runs++), 'ran')
  t.equal(await local.turn('gc', 'gc', 1, async () => void runs++), 'ran', 'no claims: every time runs')
  t.equal(runs, 2)
  await (await local.hold('gc', 'gc')).release()
})

for (const engine of ENGINES) {
  t.test(`turns claimed in the store (${engine})`, async (t) => {
    const store = await openEngine(t, engine)
    await store.migrateModule('schedule', TURN_MIGRATIONS)
    t.equal(await claimTurn(store, 'housekeeping:gc', 10_000), true)
    t.equal(await claimTurn(store, 'housekeeping:gc', 10_000), false)
    t.equal(await claimTurn(store, 'housekeeping:gc', 9_000), false)
    t.equal(await claimTurn(store, 'housekeeping:retention', 10_000), true, 'each job its own')
    t.equal(await claimTurn(store, 'housekeeping:gc', 20_000), true)
  })
}

t.test('PostgreSQL advisory locks: one holder at a time, freed by release or when its connection ends', { skip: postgresBin() ? false : 'PostgreSQL is not installed' }, async (t) => {
  const postgres = await sharedPostgres()
  const url = await postgres.createDatabase(`locks_${process.pid}`)
  const store = await openEngine(t, 'postgres')
  await store.migrateModule('schedule', TURN_MIGRATIONS)
  const lost: string[] = []
  const open = (): AdvisoryLocks => {
    const locks = new AdvisoryLocks({ url, connectTimeoutMs: 2000, claimTurn: (name, turn) => claimTurn(store, name, turn), onLost: (names) => lost.push(...names) })
    t.teardown(() => locks.close())
    return locks
  }
  const a = open()
  const b = open()
  const held = await a.tryAcquire('housekeeping:gc')
  t.ok(held, 'A takes the lock')
  t.equal(await b.tryAcquire('housekeeping:gc'), undefined, 'B cannot')
  t.equal(await a.tryAcquire('housekeeping:gc'), undefined, 'nor A again (advisory locks are re-entrant per session; an instance\'s are not)')
  t.ok(await b.tryAcquire('housekeeping:retention'), 'another job\'s lock is its own')
  await held?.release()
  const again = await b.tryAcquire('housekeeping:gc')
  t.ok(again, 'B takes it once A released it')
  // The holder's connection ends (its instance was killed): the server frees the lock at once.
  const killer = new (await import('pg')).default.Client({ connectionString: url })
  await killer.connect()
  t.teardown(() => killer.end())
  // A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
  const key = BigInt.asUintN(64, BigInt(advisoryKey('housekeeping:gc')))
  const { rowCount } = await killer.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1::oid AND objid = $2::oid", [String(key >> 32n), String(key & 0xffffffffn)])
  t.equal(rowCount, 1, 'the holder\'s backend found by its advisory lock and ended')
  let taken: Awaited<ReturnType<AdvisoryLocks['tryAcquire']>>
  for (let attempt = 0; attempt < 50 && !taken; attempt++) {
    taken = await a.tryAcquire('housekeeping:gc').catch(() => undefined)
    if (!taken) await sleep(100)
  }
  t.ok(taken, 'A takes the lock its dead holder had')
  for (let attempt = 0; attempt < 50 && lost.length === 0; attempt++) await sleep(50)
  t.same(lost.sort(), ['housekeeping:gc', 'housekeeping:retention'], 'B was told it lost what it held')

  t.test('three instances, twenty scheduled times, each run exactly once', async (t) => {
    const runLocks = [open(), open(), open()].map((locks) => new RunLocks({ engine: 'postgres', locks, ttlMs: 2000, log: silent }))
    const times = Array.from({ length: 20 }, (_, index) => 1_000_000 + index * 10_000)
    const { ran, outcomes } = await race(runLocks, 'retention', times, 20)
    for (const [index, outcome] of outcomes.entries()) t.equal(outcome.filter((entry) => entry === 'ran').length, 1, `time ${index}: one instance ran it (${outcome.join(', ')})`)
    t.equal(ran.reduce((sum, count) => sum + count, 0), 20, `runs per instance: ${ran.join(', ')}`)
  })

  t.test('PostgreSQL down: nothing runs', async (t) => {
    const locks = new AdvisoryLocks({ url: url.replace(/:(\d+)\//, ':1/'), connectTimeoutMs: 500, claimTurn: async () => true })
    t.teardown(() => locks.close())
    const runLocks = new RunLocks({ engine: 'postgres', locks, ttlMs: 2000, log: silent })
    t.equal(await runLocks.turn('gc', 'gc', 1, async () => { t.fail('ran without the lock') }), 'skipped_lock_unavailable')
  })
})

t.test('shared.redis.lock_ttl: a duration of at least 1s, 30s by default; check-config names a bad one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-lock-ttl-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (text: string): string => {
    const path = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`)
    writeFileSync(path, text)
    return path
  }
  t.equal(loadConfig({ file: file(''), env: {} }).config.shared.redis.lock_ttl, 30_000)
  t.equal(loadConfig({ file: file('shared:\n  redis:\n    lock_ttl: 3s\n'), env: {} }).config.shared.redis.lock_ttl, 3000)
  for (const [value, expected] of [['100ms', /at least 1s/], ['soon', /a duration like/]] as const) {
    try {
      loadConfig({ file: file(`shared:\n  redis:\n    lock_ttl: ${value}\n`), env: {} })
      t.fail(`lock_ttl ${value} accepted`)
    } catch (error) {
      t.ok(error instanceof ConfigError, `lock_ttl ${value}: a ConfigError`)
      const problem = (error as ConfigError).problems.find((entry) => entry.key === 'shared.redis.lock_ttl')
      t.match(problem?.expected ?? '', expected, `lock_ttl ${value}: ${problem?.expected ?? 'no problem named'}`)
    }
  }
})
