// A bug inside the request pipeline (a TypeError in a handler): 500 in the registry's error format, logged once with the request, counted; the gateway keeps serving.
import t from 'tap'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import pino from 'pino'
import { createGateway } from '../../src/pipeline/gateway.js'
import { Metrics } from '../../src/observe/metrics.js'
import { Recorder } from '../../src/observe/record.js'
import { RecentPushes } from '../../src/observe/recent.js'
import { createTrustedProxies } from '../../src/forward/headers.js'
import { createPublicHosts } from '../../src/pipeline/public-hosts.js'
import type { Router } from '../../src/routing/router.js'
import type { Acl, Authenticator } from '../../src/auth/index.js'
import type { Limits } from '../../src/pipeline/limits.js'

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

t.test('a TypeError thrown by a handler is answered 500 UNKNOWN, logged with its request id and counted as request_handler', async (t) => {
  const metrics = new Metrics({ perRepository: false, maxRepositories: 10 })
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  // The web UI route is the shortest way into the pipeline: its handler here has a bug on /ui/broken.
  const ui = {
    owns: (req: IncomingMessage) => (req.url ?? '').startsWith('/ui/'),
    handle: async (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/ui/broken') {
        // A header that is not there, read as if it were: TypeError.
        const missing = (req.headers as Record<string, { name: string } | undefined>)['x-absent'] as { name: string }
        res.end(missing.name)
        return
      }
      res.end('fine')
    },
  }
  const gateway = createGateway({
    // Not reached on the UI route.
    router: {} as Router,
    authenticator: {} as Authenticator,
    acl: {} as Acl,
    limits: {} as Limits,
    ui,
    trustedProxies: createTrustedProxies([]),
    publicUrl: '',
    hosts: createPublicHosts({ hosts: [], defaultName: () => '127.0.0.1', port: () => 0 }),
    log,
    recorder: new Recorder(log, metrics, new RecentPushes()),
    metrics,
    authMode: 'none',
  })
  const server = createServer(gateway)
  t.teardown(() => server.close())
  const port = await listen(server)

  const broken = await fetch(`http://127.0.0.1:${port}/ui/broken`, { headers: { 'x-request-id': 'bug-1' }, signal: AbortSignal.timeout(10_000) })
  t.equal(broken.status, 500, '500, not 502: the upstream did nothing wrong')
  t.equal(broken.headers.get('docker-distribution-api-version'), 'registry/2.0')
  t.same(await broken.json(), { errors: [{ code: 'UNKNOWN', message: 'internal error in the gateway', detail: { request_id: 'bug-1' } }] }, 'the registry error format')
  const reported = lines.filter((line) => line.msg === 'internal error')
  t.equal(reported.length, 1, 'logged once as an internal error (with its stack)')
  t.match(reported[0], { kind: 'request_handler', request_id: 'bug-1', method: 'GET', path: '/ui/broken', err: { stack: /TypeError/ } })
  t.match(await metrics.registry.getSingleMetricAsString('portier_internal_errors_total'), /portier_internal_errors_total\{kind="request_handler"\} 1/, 'counted')

  const fine = await fetch(`http://127.0.0.1:${port}/ui/fine`, { signal: AbortSignal.timeout(10_000) })
  t.equal(await fine.text(), 'fine', 'the next request is served')
})
