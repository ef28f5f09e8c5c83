// The admin endpoints never reject: a failing metrics exposition is answered 500 (JSON), logged once and counted.
import t from 'tap'
import { createServer, type Server } from 'node:http'
import pino from 'pino'
import { createAdminHandler } from '../../src/observe/admin.js'
import { Metrics } from '../../src/observe/metrics.js'

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

t.test('a metrics exposition that rejects: 500 with a JSON body, one error log line, portier_internal_errors_total{kind="admin_handler"} 1', async (t) => {
  const metrics = new Metrics({ perRepository: false, maxRepositories: 10 })
  const counted = metrics.registry
  // A collector that fails (a bug in a gauge's collect, say) makes the exposition reject.
  metrics.exposition = () => Promise.reject(new TypeError("Cannot read properties of undefined (reading 'names')"))
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const admin = createAdminHandler({ metrics, allow: undefined, users: undefined, readiness: () => [], log })
  let settled: Promise<unknown> | undefined
  const server = createServer((req, res) => {
    settled = admin(req, res).then(() => 'resolved', (error: unknown) => error)
  })
  t.teardown(() => server.close())
  const port = await listen(server)

  // Bounded: without the fix no answer ever comes.
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) })
  t.equal(response.status, 500, 'the scrape is answered 500')
  t.match(response.headers.get('content-type'), /^application\/json/)
  t.same(await response.json(), { error: 'internal error; see the gateway log', code: 'ADMIN_INTERNAL' })
  t.equal(await settled, 'resolved', 'the handler does not reject (a rejection here used to end the process)')
  const errors = lines.filter((line) => line.msg === 'internal error')
  t.equal(errors.length, 1, 'logged once')
  t.match(errors[0], { kind: 'admin_handler', method: 'GET', path: '/metrics', err: { message: /reading 'names'/ } })
  const counter = await counted.getSingleMetricAsString('portier_internal_errors_total')
  t.match(counter, /portier_internal_errors_total\{kind="admin_handler"\} 1/, 'counted')
  t.match(counter, /portier_internal_errors_total\{kind="uncaught_exception"\} 0/, 'every kind is exported from the start')

  const health = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.status, 200, 'the other endpoints still answer')
})
