// The record side in isolation: metric labels stay bounded, request ids are sane, pretty logs read well, health thresholds hold.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Pool } from 'undici'
import { Metrics } from '../../src/observe/metrics.js'
import { registerGcMetrics } from '../../src/housekeeping/gc-metrics.js'
import { registerRetentionMetrics } from '../../src/housekeeping/retention-metrics.js'
import { registerUsageMetrics } from '../../src/housekeeping/usage-metrics.js'
import { eventMetrics } from '../../src/events/index.js'
import { CacheMetrics } from '../../src/cache/metrics.js'
import { requestIdFrom } from '../../src/observe/record.js'
import { formatPretty } from '../../src/observe/log.js'
import { errorKind } from '../../src/observe/upstream-events.js'
import { HealthMonitor, type HealthState } from '../../src/upstreams/health.js'
import type { Upstream } from '../../src/upstreams/upstreams.js'
import { refusedOrigin } from '../helpers/ports.js'
import { waitUntil } from '../helpers/gwclient.js'

t.test('per-repository labels stop at max_repositories; the rest count as "other"', async (t) => {
  const metrics = new Metrics({ perRepository: true, maxRepositories: 2 })
  for (const repository of ['a/one', 'b/two', 'c/three', 'd/four', 'a/one']) {
    metrics.request({ operation: 'manifest.put', method: 'PUT', status: 201, seconds: 0.01, repository, bytesReceived: 100, bytesSent: 0 })
  }
  const text = await metrics.registry.metrics()
  t.match(text, /portier_manifests_pushed_total\{repository="a\/one"\} 2/)
  t.match(text, /portier_manifests_pushed_total\{repository="b\/two"\} 1/)
  t.match(text, /portier_manifests_pushed_total\{repository="other"\} 2/)
  t.notMatch(text, /c\/three|d\/four/, 'repositories over the cap get no label of their own')
  t.match(text, /portier_received_bytes_total\{operation="manifest.put"\} 500/)
})

t.test('without per_repository, no repository label appears anywhere', async (t) => {
  const metrics = new Metrics({ perRepository: false, maxRepositories: 100 })
  metrics.request({ operation: 'blob.get', method: 'GET', status: 200, seconds: 2, repository: 'x/y', bytesReceived: 0, bytesSent: 1234 })
  metrics.request({ operation: 'blob.head', method: 'HEAD', status: 200, seconds: 0.001, repository: 'x/y', bytesReceived: 0, bytesSent: 0 })
  metrics.request({ operation: 'blob.get', method: 'GET', status: 499, seconds: 1, repository: 'x/y', bytesReceived: 0, bytesSent: 10 })
  const text = await metrics.registry.metrics()
  t.notMatch(text, /repository=/)
  t.match(text, /portier_blobs_pulled_total 1\n/, 'only the complete GET counts as a pull (not HEAD, not an abort)')
  t.match(text, /portier_requests_total\{operation="blob.get",method="GET",status_class="499"\} 1/, 'client aborts have their own class')
  t.match(text, /portier_sent_bytes_total\{operation="blob.get"\} 1244/)
})

t.test('request ids: a sane client id is kept, anything else replaced by a UUID', async (t) => {
  t.equal(requestIdFrom('abc-123_x.y:z'), 'abc-123_x.y:z')
  t.equal(requestIdFrom(['first', 'second']), 'first')
  for (const bad of [undefined, '', 'with space', 'x'.repeat(129), 'line\nbreak', '<script>']) {
    t.match(requestIdFrom(bad), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, `replaced: ${JSON.stringify(bad)}`)
  }
})

t.test('pretty log lines: time, level, message, then fields', async (t) => {
  const line = formatPretty(JSON.stringify({ level: 40, time: '2026-11-23T12:34:56.789Z', service: 'portier', msg: 'upstream marked down', upstream: 'a', detail: { x: 1 } }))
  t.equal(line, '12:34:56.789 WARN  upstream marked down  upstream=a detail={"x":1}\n')
  t.equal(formatPretty('not json'), 'not json', 'anything else passes through')
})

t.test('upstream error kinds', async (t) => {
  t.equal(errorKind('ECONNREFUSED'), 'connect')
  t.equal(errorKind('UND_ERR_HEADERS_TIMEOUT'), 'timeout')
  t.equal(errorKind('ECONNRESET'), 'reset')
  t.equal(errorKind('UND_ERR_ABORTED'), undefined, 'a request the client abandoned is not an upstream error')
  t.equal(errorKind('EWHATEVER'), 'other')
})

function upstreamAt(origin: string, name: string): Upstream {
  return { name, origin, forwardAuthorization: false, weight: 1, pool: new Pool(origin, { connect: { timeout: 1000 } }), healthPool: new Pool(origin, { connect: { timeout: 1000 } }) }
}

t.test('health: down after failure_threshold failed checks, up after success_threshold passes; 401 is healthy', async (t) => {
  let answer = 401
  const server = createServer((_req, res) => {
    res.writeHead(answer, { 'content-type': 'application/json' })
    res.end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const live = upstreamAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'live')
  // Held by refusedOrigin: a port from freePort() could be taken by a test running beside this one.
  const refused = await refusedOrigin()
  t.teardown(refused.release)
  const dead = upstreamAt(refused.url, 'dead')
  t.teardown(() => Promise.all([live, dead].flatMap((upstream) => [upstream.pool.close(), upstream.healthPool.close()])))
  const changes: Array<[string, HealthState]> = []
  const monitor = new HealthMonitor([live, dead], { interval: 20, timeout: 1000, failureThreshold: 3, successThreshold: 2 }, {
    onChange: (upstream, state) => changes.push([upstream.name, state]),
  })
  t.teardown(() => monitor.close())
  t.equal(monitor.stateOf(dead), 'unknown')
  t.ok(monitor.isAvailable(dead), 'an unchecked upstream is still routed to')
  monitor.start()
  t.ok(await waitUntil(() => monitor.stateOf(live) === 'up' && monitor.stateOf(dead) === 'down', 5000), 'live is up (401 counts as healthy), dead is down')
  t.notOk(monitor.isAvailable(dead))
  t.match(monitor.snapshot().find((entry) => entry.name === 'dead'), { state: 'down', lastCheck: { ok: false, error: 'ECONNREFUSED' } }, 'the snapshot says why')

  answer = 500
  t.ok(await waitUntil(() => monitor.stateOf(live) === 'down', 5000), 'a 500 on /v2/ fails the check')
  answer = 200
  t.ok(await waitUntil(() => monitor.stateOf(live) === 'up', 5000), 'back up after two passed checks')
  t.same(changes.filter(([name]) => name === 'live').map(([, state]) => state), ['up', 'down', 'up'], 'every change reported once')
  t.same(changes.filter(([name]) => name === 'dead').map(([, state]) => state), ['down'])
})

t.test('health: requests that time out together count as one failure; the check they trigger decides', async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const slow = upstreamAt(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'slow')
  t.teardown(() => Promise.all([slow.pool.close(), slow.healthPool.close()]))
  const changes: HealthState[] = []
  const monitor = new HealthMonitor([slow], { interval: 60_000, timeout: 1000, failureThreshold: 3, successThreshold: 1 }, {
    onChange: (_upstream, state) => changes.push(state),
  })
  t.teardown(() => monitor.close())
  monitor.start()
  t.ok(await waitUntil(() => monitor.stateOf(slow) === 'up', 5000), 'up after the first check')
  // Three large finishes that outlast upstream_headers at the same moment: the registry itself still answers.
  for (let i = 0; i < 3; i++) monitor.reportTimeout(slow, 'UND_ERR_HEADERS_TIMEOUT')
  t.ok(await waitUntil(() => monitor.snapshot()[0]?.consecutiveFailures === 0, 5000), 'the immediate check passed')
  t.equal(monitor.stateOf(slow), 'up', 'never marked down')
  t.same(changes, ['up'])
})

t.test('the Grafana dashboard only queries metrics Portier exports', async (t) => {
  const { readFile } = await import('node:fs/promises')
  const dashboard = JSON.parse(await readFile(new URL('../../config/grafana/portier.json', import.meta.url), 'utf8')) as {
    panels: Array<{ targets?: Array<{ expr: string }> }>
  }
  const metrics = new Metrics({ perRepository: true, maxRepositories: 10 })
  // Modules that register their own metrics on the gateway's registry (garbage collection).
  registerGcMetrics(metrics.registry)
  registerRetentionMetrics(metrics.registry)
  registerUsageMetrics(metrics.registry)
  // Webhooks and pull-through caches (their rows read these).
  eventMetrics(metrics, () => Promise.resolve([]))
  new CacheMetrics(metrics.registry)
  const exported = new Set((await metrics.registry.getMetricsAsJSON()).map((m) => m.name))
  const queried = new Set(
    dashboard.panels.flatMap((panel) => panel.targets ?? []).flatMap((target) => [...target.expr.matchAll(/\b((?:portier|process|nodejs)_[a-z_]+)/g)].map((m) => m[1] as string)),
  )
  t.ok(queried.size >= 15, `the dashboard queries ${queried.size} metrics`)
  for (const name of queried) t.ok(exported.has(name.replace(/_(bucket|count|sum)$/, '')), `${name} is exported`)
})
