// Jobs that instances sharing a PostgreSQL store run once per window (the start-up scan, audit pruning): the first instance to ask runs it.
import t from 'tap'
import { PostgresStore } from '../../src/store/postgres.js'
import { firstInWindow, giveBackWindow } from '../../src/store/turns.js'
import { AuditTrail, startAudit } from '../../src/store/audit.js'
import { ENGINES, openEngine, sharedPostgres } from '../helpers/store-engines.js'

const WINDOW = 600_000
const T0 = Date.UTC(2026, 0, 10, 12) // a window's start

t.test('SQLite (one instance): every ask runs the job', async (t) => {
  const store = await openEngine(t, 'sqlite')
  t.equal(await firstInWindow(store, 'store:scan', WINDOW, T0), true)
  t.equal(await firstInWindow(store, 'store:scan', WINDOW, T0 + 1), true)
  t.equal(await firstInWindow(store, 'audit:prune', 0, T0), true, 'no window (an interval of 0): runs')
})

if (ENGINES.includes('postgres')) {
  t.test('PostgreSQL: of three instances asking in one window, the first runs the job; the next window runs it again; jobs are apart', async (t) => {
    const postgres = await sharedPostgres()
    const url = await postgres.createDatabase(`window_${process.pid}`)
    const stores = await Promise.all([0, 1, 2].map(() => PostgresStore.open({ url })))
    t.teardown(() => Promise.all(stores.map((store) => store.close())))
    const asked = await Promise.all(stores.map((store, i) => firstInWindow(store, 'store:scan', WINDOW, T0 + i * 1000)))
    t.same(asked.filter(Boolean).length, 1, `one of three runs it (${asked.join(', ')})`)
    t.equal(await firstInWindow(stores[1]!, 'store:scan', WINDOW, T0 + WINDOW - 1), false, 'later in the same window: no')
    t.equal(await firstInWindow(stores[2]!, 'store:scan', WINDOW, T0 + WINDOW), true, 'the next window: yes, at whichever instance asks first')
    t.equal(await firstInWindow(stores[0]!, 'store:scan', WINDOW, T0 + WINDOW + 5), false)
    t.equal(await firstInWindow(stores[0]!, 'audit:prune', WINDOW, T0 + WINDOW + 5), true, 'another job has turns of its own')

    // A job that did not finish gives its window back: the next instance to ask in it runs the job.
    t.equal(await firstInWindow(stores[0]!, 'store:scan', WINDOW, T0 + 2 * WINDOW), true)
    t.equal(await firstInWindow(stores[1]!, 'store:scan', WINDOW, T0 + 2 * WINDOW + 1), false)
    await giveBackWindow(stores[0]!, 'store:scan', WINDOW, T0 + 2 * WINDOW)
    t.equal(await firstInWindow(stores[1]!, 'store:scan', WINDOW, T0 + 2 * WINDOW + 2), true, 'given back: claimed again in the same window')
    t.equal(await firstInWindow(stores[2]!, 'store:scan', WINDOW, T0 + 2 * WINDOW + 3), false, 'once')
  })

  t.test('PostgreSQL that does not answer the claim: the job runs, and the error is told', async (t) => {
    const postgres = await sharedPostgres()
    const url = await postgres.createDatabase(`down_${process.pid}`)
    const store = await PostgresStore.open({ url, connectTimeoutMs: 500 })
    await store.close()
    const errors: unknown[] = []
    t.equal(await firstInWindow(store, 'store:scan', WINDOW, T0, (error) => errors.push(error)), true)
    t.equal(errors.length, 1, 'onError heard why')
  })

  t.test('PostgreSQL: audit pruning runs at one instance per interval', async (t) => {
    const postgres = await sharedPostgres()
    const url = await postgres.createDatabase(`prune_${process.pid}`)
    const stores = await Promise.all([0, 1].map(() => PostgresStore.open({ url })))
    t.teardown(() => Promise.all(stores.map((store) => store.close())))
    const trails = stores.map((store) => new AuditTrail(store))
    await Promise.all(trails.map((trail) => trail.ready))
    const at = Date.now()
    trails[0]!.record({ at: at - 10 * 86_400_000, action: 'login', outcome: 'success', status: 200, user: 'old', client: '203.0.113.9', userAgent: undefined, requestId: 'r1', repository: undefined, tag: undefined, digest: undefined, size: undefined, sourceRepository: undefined })
    await stores[0]!.commit()
    const pruned: number[] = []
    const deletes: string[] = []
    for (const [index, trail] of trails.entries()) {
      const prune = trail.prune.bind(trail)
      trail.prune = async (retentionMs) => {
        deletes.push(`instance ${index}`)
        return prune(retentionMs)
      }
    }
    const runs = trails.map((trail, index) =>
      // One instant for both claims: an hour boundary between two real clock readings would make two windows.
      startAudit(trail, { retentionMs: 86_400_000, pruneIntervalMs: 3_600_000, claim: () => firstInWindow(stores[index]!, 'audit:prune', 3_600_000, at), onPruned: (count) => pruned.push(count) }),
    )
    t.teardown(() => runs.forEach((run) => run.stop()))
    await t.resolves(async () => {
      for (let i = 0; i < 100 && deletes.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      await new Promise((resolve) => setTimeout(resolve, 300))
    })
    t.equal(deletes.length, 1, `one instance pruned (${deletes.join(', ')})`)
    t.same(pruned, [1], 'the old entry deleted once')
  })
}
