// The store engines' shared pieces: SQL placeholders for PostgreSQL, shell globs as regular expressions, the store.url/password_file config and what check-config says about them.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { fileProblems } from '../../src/app/config-files.js'
import { dollarParams, globRegex } from '../../src/store/engine.js'
import { inlineStatements, isConnectionError, redactedUrl } from '../../src/store/postgres.js'
import { ENGINES, openEngine } from '../helpers/store-engines.js'
import { storePassword } from '../../src/store/open.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-store-engine-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function yamlFile(name: string, text: string): string {
  const file = join(dir, name)
  writeFileSync(file, text)
  return file
}

function problemsOf(file: string): ConfigProblem[] {
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

t.test('placeholders: ? in order and ?N by number become $N', async (t) => {
  t.equal(dollarParams('SELECT * FROM x WHERE a = ? AND b = ? LIMIT ?'), 'SELECT * FROM x WHERE a = $1 AND b = $2 LIMIT $3')
  t.equal(dollarParams('SELECT ?2, ?, ?1, ?'), 'SELECT $2, $3, $1, $4', "a bare ? is one past the largest so far (SQLite's numbering)")
  t.equal(dollarParams('INSERT INTO t VALUES (?1, ?2, ?3, ?3) ON CONFLICT DO UPDATE SET a = coalesce(?2, a)'), 'INSERT INTO t VALUES ($1, $2, $3, $3) ON CONFLICT DO UPDATE SET a = coalesce($2, a)')
})

t.test("globs match as SQLite's GLOB does", async (t) => {
  const matches = (pattern: string, value: string): boolean => new RegExp(globRegex(pattern)).test(value)
  t.ok(matches('team/*', 'team/app'))
  t.ok(matches('team/*', 'team/app/sub'), '* crosses slashes, as in GLOB')
  t.notOk(matches('team/*', 'other/team/app'), 'anchored')
  t.ok(matches('app?', 'app1'))
  t.notOk(matches('app?', 'app12'))
  t.ok(matches('v[0-9].x', 'v1.x'))
  t.notOk(matches('v[0-9].x', 'v1yx'), 'a dot is a dot')
  t.ok(matches('a+b(c)', 'a+b(c)'), 'regex characters are literal')
  t.notOk(matches('[^a]x', 'ax'))
})

t.test('store.url must be a postgres:// URL naming a server and a database; the password stays out of logs', async (t) => {
  const bad = (url: string): ConfigProblem | undefined => problemsOf(yamlFile(`bad-${Math.random()}.yaml`, `store:\n  url: ${JSON.stringify(url)}\n`)).find((problem) => problem.key === 'store.url')
  t.match(bad('mysql://db/portier'), { key: 'store.url', expected: /postgres:\/\// })
  t.match(bad('not a url'), { key: 'store.url', expected: /postgres:\/\/portier@/ })
  t.match(bad('postgres://db.example:5432'), { key: 'store.url', expected: /naming the database/ })
  t.same(problemsOf(yamlFile('good.yaml', 'store:\n  url: postgres://portier@db.example:5432/portier\n  pool_size: 20\n  connect_timeout: 3s\n')), [])
  const { config } = loadConfig({ file: yamlFile('good2.yaml', 'store:\n  url: postgresql://portier:pw@db.example/portier\n'), env: {} })
  t.equal(config.store.pool_size, 10)
  t.equal(config.store.connect_timeout, 5000)
  t.equal(redactedUrl(config.store.url), 'postgresql://portier:redacted@db.example/portier')
  t.match(problemsOf(yamlFile('pool.yaml', 'store:\n  pool_size: 0\n')), [{ key: 'store.pool_size' }])
})

t.test('check-config: an unreadable store.password_file is a problem naming the key; a readable one gives its first line', async (t) => {
  const file = yamlFile('pw.yaml', `store:\n  url: postgres://portier@127.0.0.1:5432/portier\n  password_file: ${JSON.stringify(join(dir, 'no-such-password'))}\n`)
  const { config } = loadConfig({ file, env: {} })
  const problems = (await fileProblems(config, file)).filter((problem) => problem.key.startsWith('store.'))
  t.same(problems.map((problem) => [problem.key, problem.expected]), [['store.password_file', 'a readable file holding the PostgreSQL password']])
  t.match(problems[0]?.found, /no-such-password.*no such file/)
  writeFileSync(join(dir, 'password'), 's3cret\nignored\n')
  t.equal(storePassword({ ...config.store, password_file: join(dir, 'password') }), 's3cret')
})

t.test('connection errors are told apart from failing statements', async (t) => {
  t.ok(isConnectionError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })))
  t.ok(isConnectionError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })))
  t.ok(isConnectionError(new Error('Connection terminated unexpectedly')))
  t.notOk(isConnectionError(Object.assign(new Error('duplicate key value violates unique constraint'), { code: '23505' })))
  t.notOk(isConnectionError('a string'))
})

t.test('inlined values: quotes, backslashes and question marks stay data', async (t) => {
  t.equal(inlineStatements([{ sql: 'INSERT INTO t VALUES (?, ?2, ?)', params: ["it's", 'a\\b', null] }]), "INSERT INTO t VALUES ('it''s',  E'a\\\\b', NULL)", 'a bare ? after ?2 is the third value, as in SQLite')
  t.equal(inlineStatements([{ sql: 'SELECT ?1 + ?1', params: [5] }, { sql: 'SELECT ?', params: ['?1'] }]), "SELECT 5 + 5;\nSELECT '?1'")
  t.throws(() => inlineStatements([{ sql: 'SELECT ?', params: [Number.NaN] }]), /cannot hold/)
})

for (const engine of ENGINES) {
  t.test(`${engine}: a batch with a failing write commits the others and reports the one; awkward text round-trips; atomic() answers rows and counts`, async (t) => {
    const store = await openEngine(t, engine, { flushIntervalMs: 60_000 })
    const dropped: number[] = []
    store.watch({ committed: () => undefined, dropped: (count) => void dropped.push(count) })
    await store.migrateModule('probe', { sqlite: ['CREATE TABLE probe (id INTEGER PRIMARY KEY, value TEXT NOT NULL)'], postgres: ['CREATE TABLE probe (id BIGINT PRIMARY KEY, value TEXT NOT NULL)'] })
    const awkward = "it's a \\ back'slash; DROP TABLE probe; -- ?1 $1 \u00e9\u{1F600}"
    store.write({ sql: 'INSERT INTO probe (id, value) VALUES (?, ?)', params: [1, awkward] })
    store.write({ sql: 'INSERT INTO probe (id, value) VALUES (?, ?)', params: [2, null] })
    store.write({ sql: 'INSERT INTO probe (id, value) VALUES (?, ?)', params: [3, 'three'] })
    t.equal(store.queued, 3)
    await store.commit()
    t.same(dropped, [1], 'the NOT NULL violation alone is lost')
    t.same((await store.all('SELECT id, value FROM probe ORDER BY id')).map((row) => [Number(row.id), row.value]), [[1, awkward], [3, 'three']])
    const results = await store.atomic([
      { sql: 'UPDATE probe SET value = ? WHERE id >= ?', params: ['x', 1] },
      { sql: 'SELECT count(*) AS n FROM probe WHERE value = ?', params: ['x'] },
      { sql: 'DELETE FROM probe WHERE id = ? RETURNING id', params: [3] },
    ])
    t.same(results.map((result) => result.changes), [2, 1, 1])
    t.equal(Number(results[1]?.rows[0]?.n), 2)
    await t.rejects(store.atomic([{ sql: 'DELETE FROM probe WHERE id = ?', params: [1] }, { sql: 'INSERT INTO probe (id, value) VALUES (?, ?)', params: [9, null] }]), 'a failing statement fails the whole')
    t.same((await store.all('SELECT id FROM probe')).map((row) => Number(row.id)), [1], 'and undoes the rest')
    t.equal(await store.migrateModule('probe', { sqlite: ['CREATE TABLE probe (id INTEGER)'], postgres: ['CREATE TABLE probe (id BIGINT)'] }), 1, 'a step already applied is not run again')
  })

  t.test(`${engine}: a NUL character in client input (a form's user name) is stored, and never holds up the writes after it`, async (t) => {
    const store = await openEngine(t, engine, { flushIntervalMs: 60_000 })
    const dropped: number[] = []
    store.watch({ committed: () => undefined, dropped: (count) => void dropped.push(count) })
    await store.migrateModule('nul', { sqlite: ['CREATE TABLE nul (id INTEGER PRIMARY KEY, value TEXT NOT NULL)'], postgres: ['CREATE TABLE nul (id BIGINT PRIMARY KEY, value TEXT NOT NULL)'] })
    store.write({ sql: 'INSERT INTO nul (id, value) VALUES (?, ?)', params: [1, 'good-before'] })
    store.write({ sql: 'INSERT INTO nul (id, value) VALUES (?, ?)', params: [2, 'evil\0name'] })
    store.write({ sql: 'INSERT INTO nul (id, value) VALUES (?, ?)', params: [3, 'good-after'] })
    await store.commit()
    t.equal(store.queued, 0, 'nothing left queued')
    t.same(dropped, [], 'nothing dropped')
    const rows = (await store.all('SELECT id, value FROM nul ORDER BY id')).map((row) => [Number(row.id), row.value])
    // PostgreSQL's text holds no NUL: U+FFFD in its place; SQLite keeps it.
    t.same(rows, [[1, 'good-before'], [2, engine === 'postgres' ? 'evil\uFFFDname' : 'evil\0name'], [3, 'good-after']])
    t.same(await store.all('SELECT id FROM nul WHERE value = ?', ['no\0such']), [], 'a read with a NUL in a parameter answers')
    const [updated] = await store.atomic([{ sql: 'UPDATE nul SET value = ? WHERE id = ?', params: ['again\0', 3] }])
    t.equal(updated?.changes, 1, 'and an atomic write with one')
  })
}
