// Preload (NODE_OPTIONS=--require) that writes a V8 CPU profile of the process on exit to $BENCH_CPU_PROFILE:
// Node 20 refuses --cpu-prof in NODE_OPTIONS, and the bench starts the gateway through the test helper.
const { Session } = require('node:inspector')
const { writeFileSync } = require('node:fs')
const target = process.env.BENCH_CPU_PROFILE
if (target) {
  const session = new Session()
  session.connect()
  session.post('Profiler.enable')
  session.post('Profiler.setSamplingInterval', { interval: 500 })
  session.post('Profiler.start')
  // Same-thread inspector sessions answer synchronously, so this works in an 'exit' handler.
  process.on('exit', () => {
    session.post('Profiler.stop', (error, result) => {
      if (!error) writeFileSync(target, JSON.stringify(result.profile))
    })
  })
}
