// Shared values through the store (shared_values), on both engines: a value set by one instance reaches the other's listeners on its next read, never its own; a late listener gets the stored value; a set the store refused is stored on a later read.
import t, { type Test } from 'tap'
import type { Logger } from '../../src/observe/log.js'
import type { Result, Statement, StoreEngine } from '../../src/store/engine.js'
import { StoreValues } from '../../src/store/shared-values.js'
import { Maintenance } from '../../src/housekeeping/maintenance.js'
import { shareMaintenance } from '../../src/app/shared.js'
import { ENGINES, openEngine } from '../helpers/store-engines.js'

const warnings: string[] = []
const log = { warn: (_fields: unknown, message: string) => warnings.push(message), info: () => undefined } as unknown as Logger

/** An instance that reads only when the test says (a long poll interval), stopped when the test ends. */
async function instance(t: Test, store: StoreEngine, logger: Logger = log): Promise<StoreValues> {
  const values = new StoreValues(store, 60_000, logger)
  await values.start()
  t.teardown(() => values.stop())
  return values
}

for (const engine of ENGINES) {
  t.test(`${engine}: two instances follow each other's values`, async (t) => {
    const store = await openEngine(t, engine, { flushIntervalMs: 50 })
    const a = await instance(t, store)
    const b = await instance(t, store)
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
    const c = await instance(t, store)
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
  const a = await instance(t, flaky)
  const b = await instance(t, store)
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

const quiet = { warn: () => undefined, info: () => undefined, child: () => quiet } as unknown as Logger
const maintenanceOff = (by: string): string => JSON.stringify({ on: false, message: 'x', by })

t.test('maintenance.enabled at start is stored, so a stored "off" from an earlier run does not cancel it', async (t) => {
  const store = await openEngine(t, 'sqlite', { flushIntervalMs: 50 })
  const earlier = new StoreValues(store, 60_000, quiet)
  await earlier.start()
  await earlier.set('maintenance', maintenanceOff('gc'))
  earlier.stop()
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000 })
  maintenance.enter({ by: 'config' })
  const values = await instance(t, store, quiet)
  const sharing = shareMaintenance(maintenance, values, quiet, 0)
  await sharing.announced()
  await values.poll()
  t.equal(maintenance.isOn, true, 'the configuration\'s maintenance stays on')
  const [row] = await store.all("SELECT value FROM shared_values WHERE name = 'maintenance'")
  t.match(JSON.parse(String(row?.value)), { on: true, by: 'config' }, 'and is stored for the others')
})

t.test('a read whose SELECT ran before a switch made here does not undo it', async (t) => {
  const store = await openEngine(t, 'sqlite', { flushIntervalMs: 50 })
  const other = await instance(t, store, quiet)
  await other.set('maintenance', maintenanceOff('other'))
  // The SELECT runs, then waits for the test to let its rows through.
  let release: (() => void) | undefined
  const slow: StoreEngine = Object.create(store) as StoreEngine
  slow.all = async (sql, params) => {
    const rows = await store.all(sql, params)
    await new Promise<void>((resolve) => {
      release = resolve
    })
    return rows
  }
  const waitForSelect = async (): Promise<() => void> => {
    for (let i = 0; i < 400 && release === undefined; i++) await new Promise((resolve) => setTimeout(resolve, 5))
    const go = release
    release = undefined
    if (!go) throw new Error('no read started')
    return go
  }
  const maintenance = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000 })
  const values = await instance(t, slow, quiet)
  const sharing = shareMaintenance(maintenance, values, quiet, 0)
  ;(await waitForSelect())()
  await values.poll()
  const read = values.poll()
  const go = await waitForSelect()
  maintenance.enter({ by: 'gc' })
  await sharing.announced()
  go()
  await read
  t.equal(maintenance.isOn, true, 'the switch made here survives the read that began before it')
  const next = values.poll()
  ;(await waitForSelect())()
  await next
  t.equal(maintenance.isOn, true, 'and the next read')
  const [row] = await store.all("SELECT value FROM shared_values WHERE name = 'maintenance'")
  t.match(JSON.parse(String(row?.value)), { on: true }, 'the store holds it too')
})

t.test('a collection\'s cut-off reaches the other instances: what was begun there before is refused from then on', async (t) => {
  const store = await openEngine(t, 'sqlite', { flushIntervalMs: 50 })
  const a = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 60_000 })
  const b = new Maintenance({ message: 'm', retryAfterMs: 0, drainTimeoutMs: 600_000 })
  const valuesA = await instance(t, store, quiet)
  const valuesB = await instance(t, store, quiet)
  const sharingA = shareMaintenance(a, valuesA, quiet, 0)
  shareMaintenance(b, valuesB, quiet, 0)
  b.uploadStarted('u1', 'x/app')
  b.blobCommitted('x/app')

  a.enter({ by: 'gc', drainTimeoutMs: 30_000 })
  await sharingA.announced()
  await valuesB.poll()
  t.equal(b.isOn, true, 'B follows the switch')
  t.ok(b.admitsUpload('u1'), 'an upload B began before may go on')
  t.ok(b.admitsNewUpload('x/app'), 'and so may the rest of its push')
  const window = Date.parse(b.status().drainUntil ?? '') - Date.now()
  t.ok(window > 25_000 && window <= 30_000, `B's window is the collection's (30 s), not its own maintenance.drain_timeout (${window} ms)`)

  a.closeDrain()
  await sharingA.announced()
  await valuesB.poll()
  t.notOk(b.admitsUpload('u1'), 'after the cut-off B refuses the upload begun before')
  t.notOk(b.admitsNewUpload('x/app'), 'and the rest of that push')
  t.notOk(b.admitsManifest('x/app'), 'and its manifest')
  t.equal(b.isOn, true, 'still in maintenance')
})
