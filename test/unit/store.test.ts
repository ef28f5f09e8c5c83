// The persistent store (src/store/store.ts) on a real file: WAL, migrations per module (in order, once, newer versions refused), batched writes, read-only opening.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store, StoreError } from '../../src/store/store.js'
import { sleep } from '../helpers/gwclient.js'

function tempPath(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'portier-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, 'nested', 'portier.db')
}

/** Keeps the thread busy for `ms` of wall-clock time: a write that takes that long. */
function busy(ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) {
    // spin
  }
}

/** Queues `count` inserts (n0, n1, …) that take 0.1 ms each. */
function enqueueSlowWrites(store: Store, count: number): void {
  for (let i = 0; i < count; i++) {
    store.enqueue((s) => {
      busy(0.1)
      s.statement('INSERT INTO things (name) VALUES (?)').run(`n${i}`)
    })
  }
}

const STEPS = [
  'CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)',
  'ALTER TABLE things ADD COLUMN size INTEGER NOT NULL DEFAULT 0',
]

t.test('opens a new file in WAL mode with synchronous NORMAL and foreign keys on', async (t) => {
  const store = Store.open(tempPath(t))
  t.teardown(() => store.close())
  t.same(store.db.prepare('PRAGMA journal_mode').get(), { journal_mode: 'wal' })
  t.same(store.db.prepare('PRAGMA synchronous').get(), { synchronous: 1 }, '1 is NORMAL')
  t.same(store.db.prepare('PRAGMA foreign_keys').get(), { foreign_keys: 1 })
  t.same(store.db.prepare('PRAGMA busy_timeout').get(), { timeout: 5000 })
})

t.test('migrations run in order, once, and are recorded per module', async (t) => {
  const path = tempPath(t)
  const store = Store.open(path)
  t.equal(store.version('things'), 0)
  t.equal(store.migrate('things', STEPS.slice(0, 1)), 1)
  store.db.prepare('INSERT INTO things (name) VALUES (?)').run('kept')
  t.equal(store.migrate('things', STEPS), 2, 'the second step is applied on its own')
  t.equal(store.migrate('things', STEPS), 2, 'again: nothing to do')
  t.equal(store.migrate('other', ['CREATE TABLE other (x)']), 1, 'modules are versioned apart')
  const rows = store.db.prepare('SELECT module, version FROM schema_migrations ORDER BY module, version').all()
  t.same(rows.map((row) => ({ ...row })), [{ module: 'other', version: 1 }, { module: 'things', version: 1 }, { module: 'things', version: 2 }])
  t.same({ ...store.db.prepare('SELECT name, size FROM things').get() }, { name: 'kept', size: 0 }, 'data survives the migration')
  store.close()

  const reopened = Store.open(path)
  t.teardown(() => reopened.close())
  t.equal(reopened.migrate('things', STEPS), 2, 'a restart applies nothing again')
})

t.test('a failing migration leaves the module at its old version, nothing half-applied', async (t) => {
  const store = Store.open(tempPath(t))
  t.teardown(() => store.close())
  t.throws(() => store.migrate('things', [STEPS[0] as string, 'NOT SQL AT ALL']), StoreError)
  t.equal(store.version('things'), 0)
  t.notOk(store.db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'things'").get(), 'the first step was rolled back too')
})

t.test('a store written by a newer Portier is refused with a clear error', async (t) => {
  const path = tempPath(t)
  const newer = Store.open(path)
  newer.migrate('things', [...STEPS, 'ALTER TABLE things ADD COLUMN later TEXT'])
  newer.close()
  const older = Store.open(path)
  t.teardown(() => older.close())
  t.throws(() => older.migrate('things', STEPS), { name: 'StoreError', message: /things schema version 3, written by a newer Portier; this one knows up to version 2/ })
})

t.test('queued writes commit together in one transaction per flush', async (t) => {
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  for (let i = 0; i < 500; i++) store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run(`n${i}`))
  t.equal(store.queued, 500)
  t.same({ ...store.db.prepare('SELECT count(*) AS n FROM things').get() }, { n: 0 }, 'nothing written before the flush')
  t.equal(store.flush(), 500)
  t.equal(store.committedBatches, 1, 'one transaction for 500 writes')
  t.same({ ...store.db.prepare('SELECT count(*) AS n FROM things').get() }, { n: 500 })
})

t.test('the queue is bounded: a full queue starts committing at once, in the caller\'s turn', async (t) => {
  const path = tempPath(t)
  const store = Store.open(path, { flushIntervalMs: 60_000, maxPending: 100 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  for (let i = 0; i < 250; i++) store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run(`n${i}`))
  // Each full queue commits a slice (all 100 on a quiet machine, at least 32 on a stalled one) before enqueue returns.
  t.ok(store.committedBatches >= 2, `committed before the tick (${store.committedBatches} transactions)`)
  t.ok(store.queued < 100, `the queue stayed under its bound (${store.queued})`)
  store.close()
  t.equal(store.queued, 0, 'close commits the rest')
  const reader = Store.open(path, { readOnly: true })
  t.teardown(() => reader.close())
  t.same(reader.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), Array.from({ length: 250 }, (_, i) => `n${i}`), 'all, in order')
})

t.test('the timer flushes; a write that throws is undone alone and reported', async (t) => {
  const errors: unknown[] = []
  const store = Store.open(tempPath(t), { flushIntervalMs: 10, onError: (error) => errors.push(error) })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run('before'))
  store.enqueue((s) => {
    s.statement('INSERT INTO things (name) VALUES (?)').run('half')
    throw new Error('boom')
  })
  store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run('after'))
  for (let i = 0; i < 200 && store.queued > 0; i++) await new Promise((done) => setTimeout(done, 10))
  t.equal(store.queued, 0)
  t.same(store.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), ['before', 'after'])
  t.equal(errors.length, 1)
})

t.test('a queued statement that fails is undone alone, without a savepoint, and the rest commit in order (OR FAIL keeps one; OR ROLLBACK requeues)', async (t) => {
  const errors: unknown[] = []
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000, onError: (error) => errors.push(error) })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  const insert = 'INSERT INTO things (name) VALUES (?)'
  // A statement is queued as it is; a function (or several statements) runs under a savepoint of its own.
  const statements: string[] = []
  const traced = store.db.prepare.bind(store.db)
  store.db.prepare = (sql: string) => {
    statements.push(sql)
    return traced(sql)
  }
  store.write({ sql: insert, params: ['before'] })
  store.write({ sql: insert, params: [null] }) // NOT NULL: SQLite ends this statement only
  store.write({ sql: insert, params: ['between'] }, { sql: insert, params: ['pair'] })
  store.write({ sql: insert, params: ['after'] })
  t.equal(store.queued, 4)
  t.equal(store.flush(), 4, 'the failed statement counts as run')
  t.same(store.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), ['before', 'between', 'pair', 'after'])
  t.equal(errors.length, 1, 'reported once')
  t.match(String(errors[0]), /NOT NULL/)
  t.equal(store.db.isTransaction, false, 'committed')
  t.equal(store.committedBatches, 1, 'in one transaction')
  t.notOk(statements.includes('ROLLBACK TO queued_write'), 'no savepoint was rolled back: SQLite undid the statement')

  // OR FAIL keeps the rows before the failing one: that statement keeps its savepoint, all or none.
  store.write({ sql: "INSERT OR FAIL INTO things (name) VALUES ('p1'), (NULL), ('p3')" })
  store.write({ sql: insert, params: ['last'] })
  t.equal(store.flush(), 2)
  t.ok(statements.includes('ROLLBACK TO queued_write'), 'the OR FAIL statement was undone by its savepoint')
  t.equal(errors.length, 2)
  // OR ROLLBACK ends the whole transaction: the writes before it go back to the queue, unreported, and commit next time.
  store.write({ sql: insert, params: ['kept'] })
  store.write({ sql: 'INSERT OR ROLLBACK INTO things (name) VALUES (NULL)' })
  store.write({ sql: insert, params: ['kept too'] })
  t.equal(store.flush(), 0, 'the transaction ended')
  t.equal(errors.length, 3, 'the failing statement is reported once')
  t.equal(store.queued, 2)
  t.equal(store.flush(), 2)
  t.same(store.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), ['before', 'between', 'pair', 'after', 'last', 'kept', 'kept too'])
})

t.test('a full disk keeps the whole batch, the failing write included, for the next tick', async (t) => {
  const dropped: number[] = []
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000, onError: (_error, context) => dropped.push(context.dropped) })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  const insert = 'INSERT INTO things (name) VALUES (?)'
  // SQLITE_FULL without filling a disk: the file may not grow by a page.
  const pages = Number((store.db.prepare('PRAGMA page_count').get() as { page_count: number }).page_count)
  store.db.exec(`PRAGMA max_page_count = ${pages}`)
  store.enqueue((s) => s.statement(insert).run('a'.repeat(5000)))
  store.write({ sql: insert, params: ['b'.repeat(5000)] })
  store.write({ sql: insert, params: ['c'] })
  t.equal(store.flush(), 0, 'nothing committed')
  t.equal(store.queued, 3, 'every write kept, the one that met the full disk included')
  t.same(dropped, [0], 'reported once, nothing dropped')
  store.db.exec('PRAGMA max_page_count = 1073741823')
  t.equal(store.flush(), 3)
  t.same(store.db.prepare('SELECT substr(name, 1, 1) AS first FROM things ORDER BY id').all().map((row) => row.first), ['a', 'b', 'c'], 'in order')
})

t.test('the tick commits in slices of a few ms, in order, and the event loop runs between them', async (t) => {
  const store = Store.open(tempPath(t), { flushIntervalMs: 10 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  // 300 writes of 0.1 ms each: 30 ms of work, many times one slice.
  enqueueSlowWrites(store, 300)
  const count = (): number => Number((store.db.prepare('SELECT count(*) AS n FROM things').get() as { n: number }).n)
  // What other callbacks see while the queue drains: committed rows between 0 and 300 mean they ran between slices.
  const seen: number[] = []
  const probe = setInterval(() => seen.push(count()), 0)
  for (let i = 0; i < 500 && store.queued > 0; i++) await sleep(5)
  clearInterval(probe)
  t.equal(store.queued, 0, 'everything committed')
  t.ok(store.committedBatches > 1, `more than one transaction (${store.committedBatches})`)
  t.ok(seen.some((n) => n > 0 && n < 300), `other callbacks ran while part of the queue was committed (saw ${[...new Set(seen)].join(', ')})`)
  const names = store.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name)
  t.same(names, Array.from({ length: 300 }, (_, i) => `n${i}`), 'in the order queued')
  t.equal(store.flush(), 0)
})

t.test('flush() commits the whole queue in one transaction, however long it takes', async (t) => {
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  enqueueSlowWrites(store, 100)
  t.equal(store.flush(), 100)
  t.equal(store.committedBatches, 1)
  t.equal(store.queued, 0)
})

t.test('close() while slices are still to come commits the rest, and no slice runs after it', async (t) => {
  const path = tempPath(t)
  const errors: unknown[] = []
  const store = Store.open(path, { flushIntervalMs: 1, onError: (error) => errors.push(error) })
  store.migrate('things', STEPS)
  // 20 ms of writes: the tick commits a first slice and leaves the rest to the next turns.
  enqueueSlowWrites(store, 200)
  for (let i = 0; i < 2000 && store.committedBatches === 0; i++) await new Promise((done) => setImmediate(done))
  t.equal(store.committedBatches, 1, 'one slice committed')
  t.ok(store.queued > 0, `writes still queued (${store.queued}) while the next slice waits for its turn`)
  store.close()
  t.equal(store.queued, 0)
  await sleep(20)
  t.same(errors, [], 'nothing ran on the closed connection')
  const reader = Store.open(path, { readOnly: true })
  t.teardown(() => reader.close())
  t.same(reader.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), Array.from({ length: 200 }, (_, i) => `n${i}`))
})

t.test('transaction() commits queued writes first, then its own', async (t) => {
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run('queued'))
  const id = store.transaction((s) => s.statement('INSERT INTO things (name) VALUES (?)').run('now').lastInsertRowid)
  t.equal(Number(id), 2, 'after the queued write')
  t.throws(() => store.transaction((s) => {
    s.statement('INSERT INTO things (name) VALUES (?)').run('undone')
    throw new Error('no')
  }))
  t.same(store.db.prepare('SELECT name FROM things ORDER BY id').all().map((row) => row.name), ['queued', 'now'])
})

t.test('read-only: reads beside a writer, never writes, refuses an unmigrated file', async (t) => {
  const path = tempPath(t)
  const writer = Store.open(path)
  t.teardown(() => writer.close())
  writer.migrate('things', STEPS)
  writer.db.prepare('INSERT INTO things (name) VALUES (?)').run('seen')
  const reader = Store.open(path, { readOnly: true })
  t.teardown(() => reader.close())
  t.equal(reader.migrate('things', STEPS), 2)
  t.same(reader.db.prepare('SELECT name FROM things').all().map((row) => row.name), ['seen'])
  t.throws(() => reader.db.exec("INSERT INTO things (name) VALUES ('no')"), /readonly/)
  t.throws(() => reader.migrate('other', ['CREATE TABLE other (x)']), { name: 'StoreError', message: /start the gateway once/ })
})

t.test('a file that is not a database is a clear error', async (t) => {
  const path = tempPath(t)
  Store.open(path).close()
  writeFileSync(path, 'this is not sqlite, just text long enough to be read as a header'.repeat(20))
  t.throws(() => Store.open(path), { name: 'StoreError', message: /cannot use the store/ })
})

t.test('watchers hear of committed batches and of lost writes', async (t) => {
  const store = Store.open(tempPath(t), { flushIntervalMs: 60_000 })
  t.teardown(() => store.close())
  store.migrate('things', STEPS)
  const heard: Array<[string, number]> = []
  store.watch({ committed: (writes) => heard.push(['committed', writes]), dropped: (count) => heard.push(['dropped', count]) })
  store.enqueue((s) => s.statement('INSERT INTO things (name) VALUES (?)').run('a'))
  store.enqueue(() => {
    throw new Error('lost')
  })
  store.flush()
  t.same(heard, [['dropped', 1], ['committed', 1]], 'the write that threw is lost, the other committed')
})
