// Builds the record side of the gateway from config: metrics, upstream health checks, the upstream observer, the recorder.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import { Metrics, type CertificateInfo } from '../observe/metrics.js'
import { RecentPushes } from '../observe/recent.js'
import { Recorder } from '../observe/record.js'
import { reportInternalError } from '../observe/internal-errors.js'
import { observeUpstreams } from '../observe/upstream-events.js'
import { HealthMonitor } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import type { Acme } from '../tls/acme/index.js'

export interface Observability {
  metrics: Metrics | undefined
  health: HealthMonitor
  recorder: Recorder
  recent: RecentPushes
  /** Exports the expiry of the served certificates (read at every scrape). */
  watchCertificates(list: () => readonly CertificateInfo[]): void
  /** Counts ACME issuances, renewals and failures. */
  watchAcme(acme: Acme): void
  close(): void
}

export function createObservability(config: Config, upstreams: Upstream[], log: Logger): Observability {
  const metrics = config.metrics.enabled
    ? new Metrics({ perRepository: config.metrics.per_repository, maxRepositories: config.metrics.max_repositories })
    : undefined
  for (const upstream of upstreams) metrics?.upstreamUp.set({ upstream: upstream.name }, 0)

  const health = new HealthMonitor(
    upstreams,
    {
      interval: config.health.interval,
      timeout: config.health.timeout,
      failureThreshold: config.health.failure_threshold,
      successThreshold: config.health.success_threshold,
    },
    {
      onCheck: (upstream, ok) => metrics?.healthChecks.inc({ upstream: upstream.name, result: ok ? 'success' : 'failure' }),
      onChange: (upstream, state, previous, reason) => {
        metrics?.upstreamUp.set({ upstream: upstream.name }, state === 'up' ? 1 : 0)
        const line = { upstream: upstream.name, url: upstream.origin, state, previous, reason }
        if (state === 'down') log.error(line, 'upstream marked down')
        else if (previous === 'down') log.info(line, 'upstream is back up')
        else log.info(line, 'upstream is up')
      },
      onInternalError: (_upstream, error) => reportInternalError(log, metrics, 'health_check', error),
    },
  )
  const unsubscribe = observeUpstreams(upstreams, {
    started: (upstream) => metrics?.upstreamInFlight.inc({ upstream: upstream.name }),
    answered: (upstream, seconds) => metrics?.upstreamDuration.observe({ upstream: upstream.name }, seconds),
    ended: (upstream) => metrics?.upstreamInFlight.dec({ upstream: upstream.name }),
    failed: (upstream, kind, code) => {
      metrics?.upstreamErrors.inc({ upstream: upstream.name, kind })
      if (kind === 'connect') health.reportConnectFailure(upstream, code)
      else if (code === 'UND_ERR_HEADERS_TIMEOUT') health.reportTimeout(upstream, 'no response headers within timeouts.upstream_headers')
    },
  })
  health.start()

  const recent = new RecentPushes()
  return {
    metrics,
    health,
    recent,
    recorder: new Recorder(log, metrics, recent),
    watchCertificates: (list) => metrics?.watchCertificates(list),
    watchAcme(acme) {
      if (!metrics) return
      acme.onEvent((event) => {
        if (event.type === 'issued' || event.type === 'renewed') metrics.acmeCertificates.inc({ kind: event.type })
        else if (event.type === 'failed') metrics.acmeFailures.inc()
      })
    },
    close() {
      unsubscribe()
      health.close()
    },
  }
}
