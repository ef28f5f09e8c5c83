// The batched stdout logger gets every line out under backpressure, also a line logged while a write waits on a full pipe (a guard: the race it guards, a timer flush meeting a write in flight, did not reproduce here).
import t from 'tap'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const FILLER = Number(process.env.FILLER ?? 140)
const logModule = fileURLToPath(new URL('../../dist/observe/log.js', import.meta.url))

t.test('a short line logged while a large write waits on a full pipe still arrives without further logging', async (t) => {
  // The child logs ~200 KiB (more than a pipe holds, so the write waits on us), then one short line, then stays idle.
  const script = `const FILLER = ${FILLER};
    const { createLogger } = await import(${JSON.stringify(logModule)})
    const log = createLogger('info')
    for (let i = 0; i < FILLER; i++) log.info({ filler: 'x'.repeat(1000) }, 'filler')
    setTimeout(() => log.info('the last line'), 300)
    setTimeout(() => {}, 10_000)
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  const stdout = child.stdout
  // Not reading for a while: the pipe fills, the write is in flight when the 100 ms timer fires.
  stdout.pause()
  await new Promise((resolve) => setTimeout(resolve, 700))
  let text = ''
  const arrived = await new Promise<boolean>((resolve) => {
    // A bound, not a speed check: on a loaded machine the child may still be starting (it logged 134 of 140 lines after 3 s once).
    const timer = setTimeout(() => resolve(false), 20_000)
    stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
      if (text.includes('the last line')) {
        clearTimeout(timer)
        resolve(true)
      }
    })
    stdout.resume()
  })
  t.ok(arrived, 'the last line was written while the process stayed idle')
  t.equal(text.split('\n').filter((line) => line.includes('"filler"')).length, FILLER, 'every filler line too')
})
