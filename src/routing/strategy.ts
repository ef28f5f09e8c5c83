// What every routing strategy answers (where a request goes, which upstream a read would use, what readiness means), and the upstream set they all choose from.
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { RETRY_AFTER_SECONDS } from '../forward/failure.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { forwardTo, isRead, type CatalogRoute, type ForwardRoute, type Route } from './route.js'

export interface Readiness {
  ready: boolean
  detail: unknown
}

/**
 * One way of spreading requests over upstreams. A strategy is provisioned from config once; the
 * router asks it where each request goes and executes the route it answers.
 */
export interface RoutingStrategy {
  /** routing.strategy as configured ('single' when one upstream and none chosen). */
  readonly name: string
  /** Where a request goes. Throws 404 BLOB_UPLOAD_UNKNOWN for an upload URL it did not sign, 503 when the upstream it needs is down. */
  route(request: RegistryRequest): Route
  /** The one upstream a read would go to first (the size check of a cross-repository mount). */
  pick(request: RegistryRequest): Upstream
  /** Whether enough upstreams are up to serve every request. */
  readiness(states: UpstreamHealth[]): Readiness
  /**
   * The key under which the newest state of an upload session on `upstream` is remembered, or
   * undefined when this strategy does not track sessions (see UploadOffsets).
   */
  sessionScope(upstream: Upstream): string | undefined
  /** Whether the gateway keeps the OCI referrers index (the fallback tag) up to date and answers GET /referrers/ from it. */
  readonly indexesReferrers: boolean
  /** What the start-up log says about the strategy; undefined when there is nothing to route. */
  describe(): Record<string, unknown> | undefined
}

/** The configured upstreams as routing sees them: health decides which are available. */
export class UpstreamChoice {
  readonly byName: ReadonlyMap<string, Upstream>

  constructor(
    readonly all: readonly Upstream[],
    private readonly isAvailable: (upstream: Upstream) => boolean,
  ) {
    if (all.length === 0) throw new Error('routing needs at least one upstream')
    this.byName = new Map(all.map((upstream) => [upstream.name, upstream]))
  }

  get first(): Upstream {
    return this.all[0] ?? this.noUpstream()
  }

  available(): Upstream[] {
    return this.all.filter((upstream) => this.isAvailable(upstream))
  }

  up(upstream: Upstream): boolean {
    return this.isAvailable(upstream)
  }

  /** The first available upstream in configuration order, the rest as fallbacks for reads. */
  anyAvailable(request: RegistryRequest, nextOnNotFound: boolean): ForwardRoute {
    const [first, ...rest] = this.available()
    if (!first) throw this.noneAvailable()
    return forwardTo(first, request, isRead(request) ? rest : [], nextOnNotFound)
  }

  /** Every available upstream's catalog, merged. */
  catalog(): CatalogRoute {
    const upstreams = this.available()
    if (upstreams.length === 0) throw this.noneAvailable()
    return { kind: 'catalog', upstreams }
  }

  needAvailable(upstream: Upstream, repository: string): void {
    if (this.isAvailable(upstream)) return
    throw new RegistryError(
      'UNAVAILABLE',
      { upstream: upstream.name, repository },
      { 'Retry-After': RETRY_AFTER_SECONDS },
      `the upstream that holds ${repository} (${upstream.name}) is down`,
    )
  }

  noneAvailable(): RegistryError {
    return new RegistryError('UNAVAILABLE', { upstreams: this.all.map((upstream) => upstream.name) }, { 'Retry-After': RETRY_AFTER_SECONDS }, 'no upstream registry is up')
  }

  private noUpstream(): never {
    throw new Error('routing needs at least one upstream')
  }
}

/** Up and not-up names of a health snapshot. */
export function upAndDown(states: UpstreamHealth[]): { up: string[]; down: string[] } {
  return {
    up: states.filter((state) => state.state === 'up').map((state) => state.name),
    down: states.filter((state) => state.state !== 'up').map((state) => state.name),
  }
}
