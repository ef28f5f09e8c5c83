// One upstream and no strategy chosen: everything goes to it, exactly as without routing.
import type { RegistryRequest } from '../registry/classify.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { forwardTo, type Route } from './route.js'
import type { Readiness, RoutingStrategy, UpstreamChoice } from './strategy.js'

export class SingleUpstream implements RoutingStrategy {
  readonly name = 'single'
  readonly indexesReferrers = true

  constructor(private readonly upstreams: UpstreamChoice) {}

  /**
   * The one upstream serves everything, unless health checks found it down: then a client gets 503
   * at once instead of waiting on an upstream that stopped answering (a stopped process still
   * accepts connections, so each request would hang until timeouts.upstream_headers).
   */
  route(request: RegistryRequest): Route {
    const upstream = this.upstreams.first
    if (!this.upstreams.up(upstream)) throw this.upstreams.noneAvailable()
    return forwardTo(upstream, request)
  }

  pick(): Upstream {
    return this.upstreams.first
  }

  readiness(states: UpstreamHealth[]): Readiness {
    return { ready: states.every((state) => state.state === 'up'), detail: states }
  }

  sessionScope(upstream: Upstream): string {
    return upstream.name
  }

  /** Nothing to say: routing over one upstream is no routing. */
  describe(): undefined {
    return undefined
  }
}
