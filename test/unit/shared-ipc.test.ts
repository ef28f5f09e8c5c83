// The shared state of server.workers over real message channels (node:worker_threads MessageChannel, structured
// clone, asynchronous like the cluster's IPC): what one worker does, the others see; the primary holds it.
import t from 'tap'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import { createIpcShared, SharedHost, type IpcChannel } from '../../src/shared/ipc.js'
import type { SharedState } from '../../src/shared/types.js'

function end(port: MessagePort): IpcChannel {
  return {
    send: (message) => port.postMessage(message),
    onMessage(listener) {
      port.on('message', listener)
      return () => port.off('message', listener)
    },
  }
}

interface Attached {
  shared: SharedState
  detach: () => void
}

/** A worker attached to `host` as `name`: its shared state, and how the primary forgets it (the worker died). */
function attach(host: SharedHost, name: string, timeoutMs = 2000): Attached {
  const { port1, port2 } = new MessageChannel()
  const detach = host.attach(name, end(port1))
  const shared = createIpcShared(end(port2), { timeoutMs })
  t.teardown(async () => {
    await shared.close()
    detach()
    port1.close()
    port2.close()
  })
  return { shared, detach }
}

async function eventually(check: () => boolean, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (check()) return true
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return check()
}

const rule = { limit: 3, windowMs: 60_000, lockMs: 30_000 }

t.test('counters: hits from two workers add up; past the limit both see the lock; a locked key is not counted', async (t) => {
  const host = new SharedHost()
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  t.equal(await a.counters?.hit('alice|10.0.0.1', rule), 0)
  t.equal(await b.counters?.hit('alice|10.0.0.1', rule), 0)
  t.equal(await a.counters?.hit('alice|10.0.0.1', rule), 0)
  t.equal(await b.counters?.lockedFor(['alice|10.0.0.1']), 0, 'three hits: at the limit, not past it')
  t.equal(await b.counters?.hit('alice|10.0.0.1', rule), 30_000, 'the fourth hit (from the other worker) locks')
  const lockedAtB = await b.counters?.lockedFor(['alice|10.0.0.1'])
  t.ok(lockedAtB !== undefined && lockedAtB > 29_000, 'the worker that locked it sees the lock')
  let locked = 0
  t.ok(await eventually(() => {
    a.counters?.lockedFor(['other', 'alice|10.0.0.1']).then((ms) => (locked = ms), () => undefined)
    return locked > 29_000 && locked <= 30_000
  }), `the first worker is told of the lock (${locked} ms), and answers from its copy`)
  const late = attach(host, 'late').shared
  t.equal(await late.connected(), true)
  const lateLocked = await late.counters?.lockedFor(['alice|10.0.0.1'])
  t.ok(lateLocked !== undefined && lateLocked > 29_000, 'a worker started later learns the locks in force')
  const again = await a.counters?.hit('alice|10.0.0.1', rule)
  t.ok(again !== undefined && again > 29_000, 'a hit on a locked key answers the remaining lock')
  t.equal(await a.counters?.lockedFor(['bob|10.0.0.1']), 0, 'other keys are not locked')
})

t.test('counters: a window ends, and reset forgets the count', async (t) => {
  let now = 1_000_000
  const host = new SharedHost(() => now)
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  for (let i = 0; i < 3; i++) await a.counters?.hit('k', rule)
  await b.counters?.reset('k')
  t.equal(await b.counters?.hit('k', rule), 0, 'counting starts over after reset')
  for (let i = 0; i < 2; i++) await a.counters?.hit('k', rule)
  now += 61_000
  t.equal(await a.counters?.hit('k', rule), 0, 'a new window after windowMs')
  t.equal(await a.counters?.hit('k', rule), 0)
  t.equal(await a.counters?.hit('k', rule), 0)
  t.equal(await a.counters?.hit('k', rule), 30_000, 'the fourth in the new window locks')
  now += 30_001
  t.equal(await b.counters?.hit('k', rule), 0, 'the lock ends after lockMs: counted again')
})

t.test('rate-limit buckets: requests at two workers take from one bucket in the primary', async (t) => {
  let now = 1_000_000
  const host = new SharedHost(() => now)
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  const bucket = { intervalMs: 1000, burst: 3 }
  const waits = [await a.counters?.take('k', bucket), await b.counters?.take('k', bucket), await a.counters?.take('k', bucket), await b.counters?.take('k', bucket)]
  t.same(waits, [0, 0, 0, 1000], 'three in all, the fourth (at the other worker) waits one interval')
  t.equal(await a.counters?.take('other', bucket), 0, 'another key has its own bucket')
  now += 1000
  t.equal(await a.counters?.take('k', bucket), 0, 'one interval later one more goes')
})

t.test('revocations: seen by the other workers, and by a worker that starts later', async (t) => {
  const host = new SharedHost()
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  await Promise.all([a.connected(), b.connected()])
  const until = Date.now() + 60_000
  await a.revocations.revoke('ui-session', 's1', until)
  t.ok(a.revocations.isRevoked('ui-session', 's1'), 'at once where it was revoked')
  t.ok(await eventually(() => b.revocations.isRevoked('ui-session', 's1')), 'the other worker sees it')
  t.notOk(b.revocations.isRevoked('access-token', 's1'), 'by kind')
  const late = attach(host, 'c').shared
  t.equal(await late.connected(), true)
  t.ok(late.revocations.isRevoked('ui-session', 's1'), 'a worker started later gets it from the primary')
  t.notOk(late.revocations.isRevoked('ui-session', 's1', until + 1), 'until it would have expired')
})

t.test('bus: a message goes to the other workers, not back to its sender', async (t) => {
  const host = new SharedHost()
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  const c = attach(host, 'c').shared
  await Promise.all([a.connected(), b.connected(), c.connected()])
  const heard: Record<string, string[]> = { a: [], b: [], c: [] }
  for (const [name, shared] of [['a', a], ['b', b], ['c', c]] as const) shared.bus.subscribe('tags.moved', (message) => heard[name]?.push(message))
  b.bus.subscribe('other', (message) => heard.b?.push(`other:${message}`))
  a.bus.publish('tags.moved', '["library/alpine","latest"]')
  t.ok(await eventually(() => heard.b?.length === 1 && heard.c?.length === 1))
  t.same(heard.b, ['["library/alpine","latest"]'])
  t.same(heard.c, ['["library/alpine","latest"]'])
  t.same(heard.a, [], 'the sender has done the work itself')
})

t.test('values: watchers elsewhere are told; a worker started later learns the stored value', async (t) => {
  const host = new SharedHost()
  const a = attach(host, 'a').shared
  const b = attach(host, 'b').shared
  await Promise.all([a.connected(), b.connected()])
  const told: string[] = []
  b.values.watch('maintenance', (value) => told.push(value))
  const own: string[] = []
  a.values.watch('maintenance', (value) => own.push(value))
  await a.values.set('maintenance', '{"on":true}')
  t.ok(await eventually(() => told.length === 1))
  t.same(told, ['{"on":true}'])
  const late = attach(host, 'c').shared
  t.equal(await late.connected(), true)
  const lateTold: string[] = []
  late.values.watch('maintenance', (value) => lateTold.push(value))
  t.ok(await eventually(() => lateTold.length === 1), 'a watcher that comes after the start is told the stored value')
  t.same(lateTold, ['{"on":true}'])
  t.same(own, [], 'the worker that set it is not told its own value')
})

t.test('locks: one holder at a time; released, or freed when the holder dies', async (t) => {
  const host = new SharedHost()
  const a = attach(host, 'a')
  const b = attach(host, 'b')
  const held = await a.shared.locks?.tryAcquire('acme:example.com', 60_000)
  t.ok(held, 'the first one gets it')
  t.equal(await b.shared.locks?.tryAcquire('acme:example.com', 60_000), undefined, 'the other one does not')
  await held?.release()
  const second = await b.shared.locks?.tryAcquire('acme:example.com', 60_000)
  t.ok(second, 'free once released')
  t.equal(await a.shared.locks?.tryAcquire('acme:example.com', 60_000), undefined)
  b.detach()
  t.ok(await a.shared.locks?.tryAcquire('acme:example.com', 60_000), 'a dead worker\'s lock is freed')
})

t.test('without an answer from the primary, requests reject in time and the rest never throws', async (t) => {
  const { port1, port2 } = new MessageChannel()
  const shared = createIpcShared(end(port2), { timeoutMs: 100 })
  t.teardown(async () => {
    await shared.close()
    port1.close()
    port2.close()
  })
  await t.rejects(async () => {
    await shared.counters?.hit('k', rule)
  }, /did not answer within 100 ms/)
  await t.rejects(async () => {
    await shared.locks?.tryAcquire('x', 1000)
  }, /did not answer/)
  await shared.revocations.revoke('ui-session', 's', Date.now() + 1000)
  t.ok(shared.revocations.isRevoked('ui-session', 's'), 'a revocation holds here even so')
  await shared.values.set('maintenance', 'x')
  t.equal(await shared.connected(), false, 'never connected')
  t.equal(shared.engine, 'cluster')
})
