// Upstreams that share storage and http.secret: whichever is available serves every request, upload chunks included; balanced by load or weighted round robin.
import type { RegistryRequest } from '../registry/classify.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { forwardTo, isRead, type Route } from './route.js'
import { upAndDown, type Readiness, type RoutingStrategy, type UpstreamChoice } from './strategy.js'

export type Balance = 'least-in-flight' | 'round-robin'

export class SharedStorage implements RoutingStrategy {
  readonly name = 'shared'
  readonly indexesReferrers = true
  /** Smooth weighted round robin state (balance: round-robin). */
  private readonly current = new Map<Upstream, number>()
  private rotation = 0

  constructor(
    private readonly upstreams: UpstreamChoice,
    private readonly balance: Balance,
  ) {}

  route(request: RegistryRequest): Route {
    const [first, ...rest] = this.balanced()
    if (!first) throw this.upstreams.noneAvailable()
    return forwardTo(first, request, isRead(request) ? rest : [])
  }

  pick(): Upstream {
    return this.upstreams.available()[0] ?? this.upstreams.first
  }

  /** Any upstream serves any request. */
  readiness(states: UpstreamHealth[]): Readiness {
    return { ready: upAndDown(states).up.length >= 1, detail: { strategy: 'shared', needed: 1, upstreams: states } }
  }

  /** Upstreams that share storage share upload sessions too. */
  sessionScope(): string {
    return 'shared'
  }

  describe(): Record<string, unknown> {
    return { balance: this.balance }
  }

  /** Available upstreams, the preferred one first: fewest requests in flight per weight, or weighted round robin. */
  private balanced(): Upstream[] {
    const available = this.upstreams.available()
    if (available.length <= 1) return available
    if (this.balance === 'round-robin') {
      // Smooth weighted round robin: every upstream gains its weight, the leader pays the total.
      let total = 0
      let best: Upstream | undefined
      let bestValue = -Infinity
      for (const upstream of available) {
        const value = (this.current.get(upstream) ?? 0) + upstream.weight
        this.current.set(upstream, value)
        total += upstream.weight
        if (value > bestValue) {
          best = upstream
          bestValue = value
        }
      }
      if (!best) return available
      this.current.set(best, bestValue - total)
      const chosen = best
      return [chosen, ...available.filter((upstream) => upstream !== chosen)]
    }
    // Ties (the common case when idle) rotate, so idle traffic still spreads over every upstream.
    const start = this.rotation++ % available.length
    const rotated = [...available.slice(start), ...available.slice(0, start)]
    return rotated.sort((a, b) => a.pool.stats.running / a.weight - b.pool.stats.running / b.weight)
  }
}
