// The bcrypt worker threads run at a lower CPU priority than the thread that serves requests (Linux nice is per
// thread), so on a small machine the kernel runs the event loop first and cached requests do not queue behind bcrypt.
import t from 'tap'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { getPriority } from 'node:os'
import { createPasswordPool } from '../../src/auth/password-pool.js'
import { hashPassword } from '../../src/auth/hashes.js'

/** Nice value of every thread of this process, from /proc/self/task/<tid>/stat (field 19). */
function threadNices(): number[] {
  return readdirSync('/proc/self/task').map((tid) => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[16]))
}

t.test('worker threads run at nice 10, the serving thread keeps its priority', { skip: existsSync('/proc/self/task') ? false : 'needs Linux /proc' }, async (t) => {
  const before = getPriority()
  const nicesBefore = threadNices()
  const pool = createPasswordPool({ workers: 2, queue: 4 })
  t.teardown(() => pool.close())
  const hash = await hashPassword('secret', 4)
  // A check on each worker: both have started and run their first lines by then.
  t.same(await Promise.all([pool.compare('secret', hash), pool.compare('wrong', hash)]), [true, false], 'checks still answer')
  const lowered = Math.min(19, before + 10)
  const count = (nices: number[]): number => nices.filter((nice) => nice === lowered).length
  const nicesAfter = threadNices()
  t.equal(getPriority(), before, 'the main thread is not lowered')
  t.equal(count(nicesAfter) - count(nicesBefore), 2, `two more threads at nice ${lowered} (${nicesAfter.join(' ')})`)
})
