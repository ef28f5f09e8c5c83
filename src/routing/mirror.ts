// Every upstream holds a copy: writes go to all (routing.mirror.require decides when one succeeded), reads to any that has it.
import type { RegistryRequest } from '../registry/classify.js'
import type { MirrorRoute, MirrorWriter } from '../forward/mirror.js'
import { sessionRequest } from '../uploads/token.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { forwardTo, readOps, sessionOps, type Route } from './route.js'
import type { SignedUploads } from './signed-uploads.js'
import { upAndDown, type Readiness, type RoutingStrategy, type UpstreamChoice } from './strategy.js'

export type MirrorRequire = 'all' | 'quorum'

export class Mirror implements RoutingStrategy {
  readonly name = 'mirror'
  /** The referrers index: GET /referrers/ from any mirror's fallback tag; manifest PUTs list referrers on every mirror (the mirror writer). */
  readonly indexesReferrers = true

  constructor(
    private readonly upstreams: UpstreamChoice,
    private readonly signed: SignedUploads,
    readonly require: MirrorRequire,
    /** Carries out the mirrored writes this strategy routes (routing.mirror.require decides their success). */
    readonly writer: MirrorWriter,
  ) {}

  route(request: RegistryRequest): Route {
    const repository = request.repository
    if (repository === undefined) {
      if (request.op === 'catalog') return this.upstreams.catalog()
      return this.upstreams.anyAvailable(request, false)
    }
    if (request.op === 'tags.list') {
      const upstreams = this.upstreams.available()
      if (upstreams.length === 0) throw this.upstreams.noneAvailable()
      return { kind: 'tags', upstreams }
    }
    if (readOps.has(request.op)) return this.upstreams.anyAvailable(request, true)
    if (request.op === 'upload.status') {
      const sessions = this.signed.sessions(request)
      const index = sessions.findIndex((ref) => this.upstreams.up(ref.upstream))
      const chosen = sessions[index]
      if (!chosen) throw this.upstreams.noneAvailable()
      return {
        ...forwardTo(chosen.upstream, sessionRequest(request, chosen.session)),
        uploadLocation: this.signed.locationSigner(repository, sessions.map((ref) => ref.session), index),
      }
    }
    const route: MirrorRoute = { kind: 'mirror', request, upstreams: [...this.upstreams.all], writer: this.writer }
    if (sessionOps.has(request.op)) route.sessions = this.signed.sessions(request)
    return route
  }

  pick(): Upstream {
    return this.upstreams.available()[0] ?? this.upstreams.first
  }

  readiness(states: UpstreamHealth[]): Readiness {
    const needed = this.writer.needed(states.length)
    return { ready: upAndDown(states).up.length >= needed, detail: { strategy: 'mirror', require: this.require, needed, upstreams: states } }
  }

  /** Mirrored sessions are kept in the signed URL itself; their newest states per upstream, to answer an old URL. */
  sessionScope(upstream: Upstream): string {
    return upstream.name
  }

  describe(): Record<string, unknown> {
    return { require: this.require }
  }
}
