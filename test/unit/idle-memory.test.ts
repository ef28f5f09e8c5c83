// Once requests stop, one small allocation on V8's C++ heap, so that V8's memory reducer sees a low
// allocation rate and gives back what the busy stretch grew (src/lib/idle-memory.ts).
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { IDLE_CHECK_MS, idleStretches, requestEnded, requestStarted } from '../../src/lib/idle-memory.js'
import { run } from '../helpers/exec.js'

const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
// Enough for the check to see the requests, then the stillness (two periods), with room to spare.
const AFTER_IDLE = IDLE_CHECK_MS * 3 + 200

t.test('nothing while a request is in flight, once after it ends, not again while idle', async (t) => {
  const before = idleStretches()
  requestStarted()
  await wait(AFTER_IDLE)
  t.equal(idleStretches(), before, 'a request in flight: not idle however long it lasts')
  requestEnded()
  await wait(AFTER_IDLE)
  t.equal(idleStretches(), before + 1, 'the request ended and nothing came after: one idle stretch')
  await wait(AFTER_IDLE)
  t.equal(idleStretches(), before + 1, 'still idle: not counted again')
  for (let i = 0; i < 100; i++) {
    requestStarted()
    requestEnded()
  }
  await wait(AFTER_IDLE)
  t.equal(idleStretches(), before + 2, 'a burst of requests, then idle: one more')
})

t.test('the check does not keep the process alive', async (t) => {
  const timers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
  const before = timers()
  requestStarted()
  // Unreferenced timers are not listed: the check's interval runs now and must not be among them.
  t.equal(timers(), before, 'no referenced timer added while a request is in flight')
  requestEnded()
  await wait(AFTER_IDLE)
})

// What the module is for, in a real V8: a process allocates for 2 s (as a load does), its requests end, and
// it idles. V8's memory reducer (traced) runs its memory-reducing collections only where the module ran.
const built = fileURLToPath(new URL('../../dist/lib/idle-memory.js', import.meta.url))
const child = (withModule: boolean): string => `
  const { requestStarted, requestEnded } = await import(${JSON.stringify(built)})
  const keep = []
  const start = Date.now()
  ${withModule ? 'requestStarted()' : ''}
  while (Date.now() - start < 2000) {
    for (let i = 0; i < 20000; i++) keep.push({ i, s: 'x' + i })
    if (keep.length > 200000) keep.splice(0, 100000)
    await new Promise((resolve) => setImmediate(resolve))
  }
  keep.length = 0
  ${withModule ? 'requestEnded()' : ''}
  setTimeout(() => process.exit(0), 19000)
`

t.test('V8 gives memory back after a busy stretch only with the idle allocation', async (t) => {
  const args = ['--trace-memory-reducer', '--input-type=module', '-e']
  const [withIt, without] = await Promise.all([
    run(process.execPath, [...args, child(true)], { timeoutMs: 60_000 }),
    run(process.execPath, [...args, child(false)], { timeoutMs: 60_000 }),
  ])
  t.equal(withIt.code, 0, withIt.stderr)
  t.equal(without.code, 0, without.stderr)
  t.match(without.stdout, /Memory reducer: high alloc/, 'without it the reducer is traced, and finds the rate high')
  t.notMatch(without.stdout, /Memory reducer: started GC/, 'without it V8 never starts a memory-reducing collection')
  t.match(withIt.stdout, /Memory reducer: started GC #1/, 'with it V8 starts its memory-reducing collections')
})
