// Builds the router from config: the strategy (with the upload-URL secret when it signs uploads), health as routing reads it, and the log lines and metrics of routing events.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { Forwarder } from '../forward/forward.js'
import type { HealthMonitor } from '../upstreams/health.js'
import { Router } from '../routing/router.js'
import { createStrategy } from '../routing/strategies.js'
import { loadRoutingSecret, UploadTokens } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'

export interface RoutingDeps {
  health: HealthMonitor
  forwarder: Forwarder
  log: Logger
  metrics: Metrics | undefined
}

export function createRouter(config: Config, upstreams: Upstream[], deps: RoutingDeps): Router {
  const { health, forwarder, log, metrics } = deps
  const strategy = createStrategy(config.routing, {
    upstreams,
    isAvailable: (upstream) => health.isAvailable(upstream),
    forwarder,
    // Only strategies that pin uploads to upstreams sign upload URLs; one upstream keeps the registry's own URLs.
    uploadTokens: () => {
      const { secret, created } = loadRoutingSecret(config.routing.secret, config.routing.secret_file)
      if (created) log.info({ file: config.routing.secret_file }, 'generated the key that signs upload URLs; give every gateway instance the same one')
      return new UploadTokens(secret, upstreams.map((upstream) => upstream.name))
    },
    onMirrorBranchFailure(operation, repository, failure) {
      metrics?.mirrorBranchFailures.inc({ upstream: failure.upstream, operation })
      log.warn({ operation, repository, ...failure }, 'upstream failed its part of a mirrored write')
    },
  })
  const router = new Router({
    strategy,
    forwarder,
    events: {
      failover(from, to, reason, request) {
        metrics?.upstreamFailovers.inc({ upstream: from.name, reason })
        const line = { from: from.name, to: to.name, reason, operation: request.op, repository: request.repository }
        // Not finding content on one mirror is expected after a quorum push; an unreachable upstream is not.
        if (reason === 'connect') log.warn(line, 'read failed over to another upstream')
        else log.debug(line, 'read moved on to the next mirror')
      },
      catalogUpstreamFailed(upstream, reason) {
        log.warn({ upstream: upstream.name, reason }, 'upstream left out of the merged catalog')
      },
      tagsUpstreamFailed(upstream, reason) {
        log.warn({ upstream: upstream.name, reason }, 'upstream left out of the tag list')
      },
      referrersIndexFailed(repository, subject, reason) {
        log.warn({ repository, subject, reason }, 'referrer stored, but its subject\'s referrers index could not be updated')
      },
    },
  })
  const described = strategy.describe()
  if (described) {
    log.info(
      { strategy: strategy.name, ...described, upstreams: upstreams.map((upstream) => ({ name: upstream.name, weight: upstream.weight })) },
      'routing over several upstreams',
    )
  }
  return router
}
