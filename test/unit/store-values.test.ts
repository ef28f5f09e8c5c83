// Shared values through the store (shared_values), on both engines: a value set by one instance reaches the other's listeners on its next read, never its own; a late listener gets the stored value; a set the store refused is stored on a later read.
import t from 'tap'
import type { Logger } from '../../src/observe/log.js'
import type { Result, Statement, StoreEngine } from '../../src/store/engine.js'
import { StoreValues } from '../../src/store/shared-values.js'
import { ENGINES, openEngine } from '../helpers/store-engines.js'

const warnings: string[] = []
const log = { warn: (_fields: unknown, message: string) => warnings.push(message), info: () => undefined } as unknown as Logger

for (const engine of ENGINES) {
  t.test(`${engine}: two instances follow each other's values`, async (t) => {
    const store = await openEngine(t, engine, { flushIntervalMs: 50 })
    // Long poll intervals: the test reads by hand.
    const a = new StoreValues(store, 60_000, log)
    const b = new StoreValues(store, 60_000, log)
    await a.start()
    await b.start()
    t.teardown(() => {
      a.stop()
      b.stop()
    })
    const toldA: string[] = []
    const toldB: string[] = []
    a.watch('maintenance', (value) => toldA.push(value))
    b.watch('maintenance', (value) => toldB.push(value))
    await Promise.all([a.poll(), b.poll()])
    t.same([toldA, toldB], [[], []], 'nothing stored yet')

    await a.set('maintenance', 'on')
    await Promise.all([a.poll(), b.poll()])
    t.same(toldB, ['on'], 'B is told of what A set')
    t.same(toldA, [], 'A is not told of its own value')
    await b.poll()
    t.same(toldB, ['on'], 'once')

    await b.set('maintenance', 'off')
    await Promise.all([a.poll(), b.poll()])
    t.same(toldA, ['off'])
    t.same(toldB, ['on'])

    // A third instance (a restart) is told the stored value on its first read.
    const c = new StoreValues(store, 60_000, log)
    await c.start()
    t.teardown(() => c.stop())
    const toldC: string[] = []
    c.watch('maintenance', (value) => toldC.push(value))
    await c.poll()
    t.same(toldC, ['off'], 'a starting instance reads the current value')
  })
}

t.test('a set the store refuses is held and stored on a later read', async (t) => {
  const store = await openEngine(t, 'sqlite', { flushIntervalMs: 50 })
  let refuse = false
  const flaky: StoreEngine = Object.create(store) as StoreEngine
  flaky.atomic = (statements: readonly Statement[]): Promise<Result[]> => (refuse ? Promise.reject(new Error('store down')) : store.atomic(statements))
  const a = new StoreValues(flaky, 60_000, log)
  const b = new StoreValues(store, 60_000, log)
  await a.start()
  await b.start()
  t.teardown(() => {
    a.stop()
    b.stop()
  })
  const toldB: string[] = []
  b.watch('maintenance', (value) => toldB.push(value))
  refuse = true
  await a.set('maintenance', 'on')
  t.match(warnings.at(-1), /not stored/, 'said once, never thrown')
  await b.poll()
  t.same(toldB, [], 'not stored yet')
  refuse = false
  await a.poll()
  await b.poll()
  t.same(toldB, ['on'], 'stored on the next read and followed')
})
