// One small allocation on V8's C++ heap now and then, so that V8's memory reducer can give back what a busy
// stretch grew once the process is quiet (src/lib/memory-reducer.ts).
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { keepMemoryReducerAwake, memoryReducerPokes } from '../../src/lib/memory-reducer.js'
import { run } from '../helpers/exec.js'
import { sleep } from '../helpers/gwclient.js'

t.test('allocates at once, then every period, until stopped; its timer does not keep the process alive', async (t) => {
  const timers = (): number => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
  const before = memoryReducerPokes()
  const referenced = timers()
  const aid = keepMemoryReducerAwake(100)
  t.equal(memoryReducerPokes(), before + 1, 'one allocation at once')
  // Unreferenced timers are not listed.
  t.equal(timers(), referenced, 'no referenced timer added')
  await sleep(350)
  t.ok(memoryReducerPokes() >= before + 3, `then one per period (${memoryReducerPokes() - before} in 350 ms at 100 ms)`)
  aid.stop()
  const stopped = memoryReducerPokes()
  await sleep(250)
  t.equal(memoryReducerPokes(), stopped, 'none after stop()')
})

// What the module is for, in a real V8: a process allocates for 2 s (as a load does) and then idles, with
// V8's memory reducer traced. It runs its memory-reducing collections only where the module runs. (This
// relies on nothing in Node's own start-up allocating on the C++ heap within two minutes; Node 24 does not.)
const built = fileURLToPath(new URL('../../dist/lib/memory-reducer.js', import.meta.url))
const child = (withModule: boolean): string => `
  const { keepMemoryReducerAwake } = await import(${JSON.stringify(built)})
  ${withModule ? 'keepMemoryReducerAwake()' : ''}
  const keep = []
  const start = Date.now()
  while (Date.now() - start < 2000) {
    for (let i = 0; i < 20000; i++) keep.push({ i, s: 'x' + i })
    if (keep.length > 200000) keep.splice(0, 100000)
    await new Promise((resolve) => setImmediate(resolve))
  }
  keep.length = 0
  setTimeout(() => process.exit(0), 28000)
`

t.test('V8 gives memory back after a busy stretch only with the module', async (t) => {
  const args = ['--trace-memory-reducer', '--input-type=module', '-e']
  const [withIt, without] = await Promise.all([
    run(process.execPath, [...args, child(true)], { timeoutMs: 90_000 }),
    run(process.execPath, [...args, child(false)], { timeoutMs: 90_000 }),
  ])
  t.equal(withIt.code, 0, withIt.stderr)
  t.equal(without.code, 0, without.stderr)
  t.match(without.stdout, /Memory reducer: high alloc/, 'without it the reducer is traced, and finds the rate high')
  t.notMatch(without.stdout, /Memory reducer: started GC/, 'without it V8 never starts a memory-reducing collection')
  t.match(withIt.stdout, /Memory reducer: started GC #1/, 'with it V8 starts its memory-reducing collections')
})
