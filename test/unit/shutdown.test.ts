// The stop steps of the composition root: last started first, each once, however often close() is called.
import t from 'tap'
import { Shutdown } from '../../src/app/shutdown.js'

function recorder(): { shutdown: Shutdown; ran: string[]; step: (name: string, wait?: Promise<void>) => () => Promise<void> } {
  const shutdown = new Shutdown()
  const ran: string[] = []
  const step = (name: string, wait?: Promise<void>) => async (): Promise<void> => {
    ran.push(`${name}:start`)
    await wait
    ran.push(`${name}:end`)
  }
  return { shutdown, ran, step }
}

t.test('close() runs the steps last started first, and a second close() runs none of them again', async (t) => {
  const { shutdown, ran, step } = recorder()
  for (const name of ['registry', 'upstreams', 'auth', 'listener']) shutdown.defer(step(name))
  const first = shutdown.close()
  const second = shutdown.close()
  t.equal(second, first, 'the same promise')
  await first
  t.same(ran, ['listener:start', 'listener:end', 'auth:start', 'auth:end', 'upstreams:start', 'upstreams:end', 'registry:start', 'registry:end'])
  await shutdown.close()
  t.equal(ran.length, 8, 'a third close() after the first finished runs nothing')
  t.ok(shutdown.closed)
})

t.test('a close() during a slow step (the listener draining) does not stop the registry under it', async (t) => {
  const { shutdown, ran, step } = recorder()
  let drained: () => void = () => undefined
  const draining = new Promise<void>((resolve) => (drained = resolve))
  shutdown.defer(step('registry'))
  shutdown.defer(step('listener', draining))
  const first = shutdown.close()
  const second = shutdown.close()
  await Promise.resolve()
  t.same(ran, ['listener:start'], 'only the drain has begun')
  drained()
  await Promise.all([first, second])
  t.same(ran, ['listener:start', 'listener:end', 'registry:start', 'registry:end'])
})

t.test('a failing step does not keep the others from running; close() rejects with its error', async (t) => {
  const { shutdown, ran, step } = recorder()
  shutdown.defer(step('registry'))
  shutdown.defer(() => {
    throw new Error('listener would not close')
  })
  shutdown.defer(step('certificates'))
  await t.rejects(shutdown.close(), { message: 'listener would not close' })
  t.same(ran, ['certificates:start', 'certificates:end', 'registry:start', 'registry:end'])
  await t.rejects(shutdown.close(), { message: 'listener would not close' }, 'later calls answer the same outcome')
})

t.test('a step started after close() finished (a start-up still under way) is undone at once', async (t) => {
  const { shutdown, ran, step } = recorder()
  shutdown.defer(step('upstreams'))
  await shutdown.close()
  shutdown.defer(step('late listener'))
  await shutdown.close()
  t.same(ran, ['upstreams:start', 'upstreams:end', 'late listener:start', 'late listener:end'])
})
