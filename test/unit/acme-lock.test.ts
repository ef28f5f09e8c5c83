// The order lock in shared storage: one holder at a time, stale locks taken over, release only by the holder.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync, existsSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { tryLock } from '../../src/tls/acme/lock.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-acme-lock-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('the first caller holds it; a second waits and is told who holds it; release frees it', async (t) => {
  const path = join(dir, 'a.lock')
  const first = tryLock(path, 60_000)
  t.ok(first.acquired)
  t.equal(statSync(path).mode & 0o777, 0o600)
  const holder = JSON.parse(readFileSync(path, 'utf8')) as { host: string; pid: number }
  t.same({ host: holder.host, pid: holder.pid }, { host: hostname(), pid: process.pid })
  // Another process would see this: simulate one by writing another holder into a second lock.
  const other = join(dir, 'b.lock')
  writeFileSync(other, JSON.stringify({ host: 'elsewhere', pid: 4242, since: new Date().toISOString() }))
  const second = tryLock(other, 60_000)
  t.notOk(second.acquired, 'a fresh lock of another holder is respected')
  if (!second.acquired) t.equal(second.holder?.host, 'elsewhere')
  if (first.acquired) first.lock.release()
  t.notOk(existsSync(path), 'release removes the file')
})

t.test('a lock nobody touched for longer than the stale time is taken over', async (t) => {
  const path = join(dir, 'stale.lock')
  writeFileSync(path, JSON.stringify({ host: 'crashed-host', pid: 1, since: '2020-01-01T00:00:00Z' }))
  const old = new Date(Date.now() - 10 * 60_000)
  utimesSync(path, old, old)
  const attempt = tryLock(path, 2 * 60_000)
  t.ok(attempt.acquired, 'taken over')
  t.equal((JSON.parse(readFileSync(path, 'utf8')) as { pid: number }).pid, process.pid)
  if (attempt.acquired) attempt.lock.release()
})

t.test('the holder keeps touching the lock, so a long order is not mistaken for a dead one', async (t) => {
  const path = join(dir, 'touched.lock')
  const attempt = tryLock(path, 60_000, 50)
  t.ok(attempt.acquired)
  const old = new Date(Date.now() - 30_000)
  utimesSync(path, old, old)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.ok(Date.now() - statSync(path).mtimeMs < 5_000, 'mtime refreshed by the holder')
  if (attempt.acquired) attempt.lock.release()
})

t.test('release does not remove a lock someone else took over meanwhile', async (t) => {
  const path = join(dir, 'taken.lock')
  const attempt = tryLock(path, 60_000)
  t.ok(attempt.acquired)
  writeFileSync(path, JSON.stringify({ host: 'elsewhere', pid: 7, since: new Date().toISOString() }))
  if (attempt.acquired) attempt.lock.release()
  t.ok(existsSync(path), 'the other holder keeps its lock')
})
