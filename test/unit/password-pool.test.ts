// bcrypt checks run in native code on Node's thread pool (the bcrypt module), never on the thread that serves
// requests, a bounded number at once; they answer as bcryptjs (what hashes the htpasswd files) does.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import bcryptjs from 'bcryptjs'
import { createPasswordPool, maxChecksAtOnce, PoolBusyError, threadPoolSize } from '../../src/auth/password-pool.js'
import { hashPassword } from '../../src/auth/hashes.js'

/** CPU ticks (user + system) of this process's threads, by name: the main thread is the one whose id is the pid. */
function threadTicks(): { main: number; pool: number } {
  let main = 0
  let pool = 0
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ticks = Number(fields[11]) + Number(fields[12])
    if (Number(tid) === process.pid) main += ticks
    else if (name === 'libuv-worker') pool += ticks
  }
  return { main, pool }
}

t.test('a check runs on a thread of Node\'s pool, not on the thread that serves requests', { skip: existsSync('/proc/self/task') ? false : 'needs Linux /proc' }, async (t) => {
  const pool = createPasswordPool({ workers: 1, queue: 0 })
  t.teardown(() => pool.close())
  const hash = bcryptjs.hashSync('slow-password', 13)
  const before = threadTicks()
  t.equal(await pool.compare('slow-password', hash), true)
  const after = threadTicks()
  const used = { main: after.main - before.main, pool: after.pool - before.pool }
  // Cost 13 takes several hundred ms of CPU; one tick is 10 ms.
  t.ok(used.pool >= 10, `the pool's threads did the work (${used.pool} ticks)`)
  t.ok(used.main * 4 < used.pool, `the main thread did a small part of it (${used.main} ticks against ${used.pool})`)
})

t.test('at most `workers` checks at once, never more than half of the thread pool; the rest queue, then are refused', async (t) => {
  // UV_THREADPOOL_SIZE as libuv reads it (atoi; 0 is 1; negative or over 1024 is 1024), checked against Node 24's thread counts.
  const sizes: Array<[string | undefined, number]> = [[undefined, 4], ['16', 16], [' 8', 8], ['8.5', 8], ['1e1', 1], ['many', 1], ['', 1], ['0', 1], ['-1', 1024], ['5000', 1024]]
  for (const [value, threads] of sizes) t.equal(threadPoolSize(value === undefined ? {} : { UV_THREADPOOL_SIZE: value }), threads, `UV_THREADPOOL_SIZE=${JSON.stringify(value)}: ${threads} threads`)
  t.equal(maxChecksAtOnce({}), 2, 'the default pool of 4 threads: 2')
  t.equal(maxChecksAtOnce({ UV_THREADPOOL_SIZE: '16' }), 8)
  t.equal(maxChecksAtOnce({ UV_THREADPOOL_SIZE: '1' }), 1, 'a pool of one thread: one, at least')
  t.equal(maxChecksAtOnce({ UV_THREADPOOL_SIZE: 'many' }), 1, 'a value atoi reads as 0: libuv starts one thread')
  const capped = createPasswordPool({ workers: 64, queue: 0 })
  t.equal(capped.size, maxChecksAtOnce(), `64 asked for, ${capped.size} at once`)
  await capped.close()

  const pool = createPasswordPool({ workers: 2, queue: 1 })
  t.teardown(() => pool.close())
  const hash = await hashPassword('pool-password', 8)
  const running = [pool.compare('pool-password', hash), pool.compare('a', hash), pool.compare('pool-password', hash)]
  t.equal(pool.pending, 3, 'two running, one queued')
  t.equal(pool.hasRoom(), false)
  await t.rejects(pool.compare('b', hash), PoolBusyError, 'the fourth is refused at once')
  t.same(await Promise.all(running), [true, false, true])
  t.equal(pool.pending, 0)
  t.equal(pool.hasRoom(), true)
})

t.test('close() refuses the checks running and waiting, and every later one', async (t) => {
  const pool = createPasswordPool({ workers: 1, queue: 4 })
  const hash = bcryptjs.hashSync('x', 10)
  const checks = [pool.compare('x', hash), pool.compare('x', hash)]
  await pool.close()
  for (const check of checks) await t.rejects(check, PoolBusyError)
  t.equal(pool.pending, 0)
  t.equal(pool.hasRoom(), false)
  await t.rejects(pool.compare('x', hash), PoolBusyError)
})

t.test('answers as bcryptjs does: $2a$, $2b$ and $2y$, past 72 bytes, non-ASCII, malformed hashes', async (t) => {
  const pool = createPasswordPool({ workers: 2, queue: 64 })
  t.teardown(() => pool.close())
  // 255 bytes and more: the native module's own $2a$ wraps the length around (OpenBSD's old bug); bcryptjs and Go do not.
  const passwords = ['secret', '', 'üñí€ode 𝄞', 'x'.repeat(72), 'x'.repeat(73), 'a\u0000b', ...[254, 255, 256, 300, 600].map((length) => 'k'.repeat(70) + 'pq'.repeat(length).slice(0, length - 70))]
  let compared = 0
  for (const password of passwords) {
    const hash = bcryptjs.hashSync(password, 4)
    for (const prefix of ['$2a$', '$2b$', '$2y$']) {
      const stored = prefix + hash.slice(4)
      for (const attempt of [password, `${password}z`, password.slice(0, -1)]) {
        t.equal(await pool.compare(attempt, stored), bcryptjs.compareSync(attempt, stored), `${JSON.stringify(attempt).slice(0, 24)} against ${prefix}`)
        compared++
      }
    }
  }
  t.equal(compared, 99)
  const long = bcryptjs.hashSync(`${'x'.repeat(254)}y`, 4).replace(/^\$2b\$/, '$2a$')
  t.equal(await pool.compare(`x${'q'.repeat(254)}`, long), false, 'a $2a$ hash of a 255-byte password does not match another whose first bytes differ')
  t.equal(await pool.compare(`${'x'.repeat(254)}y`, long), true, 'and matches its own password')
  for (const broken of ['$2y$08$not-a-valid-hash', 'nonsense', `$2y$99$${'a'.repeat(53)}`]) t.equal(await pool.compare('x', broken), false, `${broken.slice(0, 16)}: a mismatch, not an error`)
})
