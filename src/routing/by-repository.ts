// Upstreams with storage of their own: each repository lives on one of them (rendezvous hashing), and upload sessions are pinned by signed URLs.
import type { RegistryRequest } from '../registry/classify.js'
import { sessionRequest } from '../uploads/token.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { rendezvousOwner } from './hash.js'
import { forwardTo, newUploadOps, sessionOps, type Route } from './route.js'
import { SignedUploads, uploadUnknown } from './signed-uploads.js'
import { upAndDown, type Readiness, type RoutingStrategy, type UpstreamChoice } from './strategy.js'

export class ByRepository implements RoutingStrategy {
  readonly name = 'by-repository'
  readonly indexesReferrers = true

  constructor(
    private readonly upstreams: UpstreamChoice,
    private readonly signed: SignedUploads,
  ) {}

  route(request: RegistryRequest): Route {
    const repository = request.repository
    if (repository === undefined) {
      if (request.op === 'catalog') return this.upstreams.catalog()
      return this.upstreams.anyAvailable(request, false)
    }
    if (sessionOps.has(request.op)) {
      const [only, ...others] = this.signed.sessions(request)
      if (!only || others.length > 0) throw uploadUnknown('this upload belongs to a mirrored push')
      this.upstreams.needAvailable(only.upstream, repository)
      return { ...forwardTo(only.upstream, sessionRequest(request, only.session)), uploadLocation: this.signed.locationSigner(repository, [only.session], 0) }
    }
    const owner = this.owner(repository)
    // Writes never move: only the owner holds the repository, so reads cannot move either.
    this.upstreams.needAvailable(owner, repository)
    const route = forwardTo(owner, request)
    if (newUploadOps.has(request.op)) route.uploadLocation = this.signed.locationSigner(repository, [], 0)
    return route
  }

  pick(request: RegistryRequest): Upstream {
    if (request.repository !== undefined) return this.owner(request.repository)
    return this.upstreams.available()[0] ?? this.upstreams.first
  }

  /** Every upstream holds repositories nobody else has: all must be up. */
  readiness(states: UpstreamHealth[]): Readiness {
    const { down } = upAndDown(states)
    return {
      ready: down.length === 0,
      detail: {
        strategy: 'by-repository',
        needed: states.length,
        upstreams: states,
        ...(down.length > 0 ? { unreachable: down.map((name) => `repositories owned by ${name}`) } : {}),
      },
    }
  }

  sessionScope(upstream: Upstream): string {
    return upstream.name
  }

  describe(): Record<string, unknown> {
    return {}
  }

  private owner(repository: string): Upstream {
    return rendezvousOwner(this.upstreams.all, repository)
  }
}
