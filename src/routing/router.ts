// The route stage: which upstream(s) serve a request under the configured strategy, and how the answer comes back.
import type { RoutingConfig } from '../config/index.js'
import type { Operation, RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { pathOf, RETRY_AFTER_SECONDS, type ExchangeResult, type FailoverReason, type Forwarder } from '../forward/forward.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import { MergedCatalog } from '../forward/catalog.js'
import { mayHaveSubject, Referrers } from '../forward/referrers.js'
import { deleteTag, isTagDelete } from '../forward/tag-delete.js'
import { TagLists } from '../forward/tags.js'
import { rangeNotSatisfiable, UploadOffsets } from '../uploads/offsets.js'
import { rendezvousOwner } from './hash.js'
import { MirrorWriter, type BranchFailure, type MirrorRoute, type RouteContext, type SessionRef } from '../forward/mirror.js'
import { sessionFromLocation, sessionRequest, TOKEN_PARAM, type UploadSession, type UploadTokens } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'

export type { RouteContext } from '../forward/mirror.js'

/** 'single': one upstream and no strategy chosen; everything goes to it, exactly as without routing. */
export type Strategy = 'single' | 'shared' | 'by-repository' | 'mirror'

/** One upstream serves the request (reads may move on to the fallbacks). */
export interface ForwardRoute {
  kind: 'forward'
  upstream: Upstream
  /** The request as this upstream must see it (an upload session's own UUID and `_state`). */
  request: RegistryRequest
  fallbacks: Upstream[]
  nextOnNotFound: boolean
  uploadLocation?: (location: string, upstream: Upstream) => string
  served: string
}

export interface CatalogRoute {
  kind: 'catalog'
  upstreams: Upstream[]
  served: string
}

/** A tag list merged over mirrors (each may lack tags a quorum push did not reach). */
export interface TagsRoute {
  kind: 'tags'
  upstreams: Upstream[]
  served: string
}

export type Route = ForwardRoute | MirrorRoute | CatalogRoute | TagsRoute

export interface RouterEvents {
  failover?(from: Upstream, to: Upstream, reason: FailoverReason, request: RegistryRequest): void
  mirrorBranchFailed?(operation: Operation, repository: string | undefined, failure: BranchFailure): void
  catalogUpstreamFailed?(upstream: Upstream, reason: string): void
  tagsUpstreamFailed?(upstream: Upstream, reason: string): void
  referrersIndexFailed?(repository: string, subject: string, reason: string): void
}

export interface RouterDeps {
  upstreams: Upstream[]
  config: RoutingConfig
  /** Health as routing reads it: a down upstream is skipped, one not checked yet is used. */
  isAvailable(upstream: Upstream): boolean
  forwarder: Forwarder
  /** Signs upload URLs (by-repository, mirror). */
  tokens?: UploadTokens
  events?: RouterEvents
}

const readOps: ReadonlySet<Operation> = new Set(['manifest.get', 'manifest.head', 'blob.get', 'blob.head', 'tags.list', 'referrers.list'])
const sessionOps: ReadonlySet<Operation> = new Set(['upload.status', 'upload.chunk', 'upload.finish', 'upload.cancel'])
const newUploadOps: ReadonlySet<Operation> = new Set(['upload.start', 'upload.mount', 'upload.monolithic'])

export function strategyOf(config: RoutingConfig): Strategy {
  if (config.strategy === '') return 'single'
  return config.strategy
}

export class Router {
  readonly strategy: Strategy
  private readonly all: Upstream[]
  private readonly byName: Map<string, Upstream>
  private readonly mirror: MirrorWriter | undefined
  private readonly catalog: MergedCatalog
  private readonly tags: TagLists
  private readonly referrers: Referrers
  /** The newest state of each upload session this gateway relayed (all strategies but mirror). */
  private readonly offsets = new UploadOffsets()
  /** Smooth weighted round robin state (shared, balance: round-robin). */
  private readonly current = new Map<Upstream, number>()
  private rotation = 0

  constructor(private readonly deps: RouterDeps) {
    this.all = deps.upstreams
    this.strategy = strategyOf(deps.config)
    this.byName = new Map(this.all.map((upstream) => [upstream.name, upstream]))
    if ((this.strategy === 'by-repository' || this.strategy === 'mirror') && !deps.tokens) throw new Error(`routing.strategy ${this.strategy} needs a routing secret`)
    this.mirror = this.strategy === 'mirror'
      ? new MirrorWriter({
          forwarder: deps.forwarder,
          tokens: deps.tokens as UploadTokens,
          require: deps.config.mirror.require,
          isAvailable: deps.isAvailable,
          onBranchFailure: (operation, repository, failure) => deps.events?.mirrorBranchFailed?.(operation, repository, failure),
        })
      : undefined
    this.catalog = new MergedCatalog(deps.forwarder, (upstream, reason) => deps.events?.catalogUpstreamFailed?.(upstream, reason))
    this.referrers = new Referrers(deps.forwarder, {
      indexFailed: (repository, subject, reason) => deps.events?.referrersIndexFailed?.(repository, subject, reason),
    })
    this.tags = new TagLists(deps.forwarder, (upstream, reason) => deps.events?.tagsUpstreamFailed?.(upstream, reason))
  }

  /** Decides where a request goes. Throws 404 BLOB_UPLOAD_UNKNOWN for an upload URL it did not sign, 503 when the upstream it needs is down. */
  route(request: RegistryRequest): Route {
    switch (this.strategy) {
      case 'single':
        return this.only(request)
      case 'shared':
        return this.shared(request)
      case 'by-repository':
        return this.byRepository(request)
      case 'mirror':
        return this.mirrored(request)
    }
  }

  /** Serves a routed request; `route.served` names the upstream(s) that answered, for the access log. */
  async forward(route: Route, context: RouteContext): Promise<ExchangeResult> {
    switch (route.kind) {
      case 'forward':
        // registry 2.8 ignores `n` and `last`: the gateway pages tag lists itself.
        if (route.request.op === 'tags.list') return await this.tags.serve([route.upstream], context)
        if (isTagDelete(route.request)) return await deleteTag(this.deps.forwarder, { ...context, request: route.request, upstream: route.upstream })
        if (this.strategy !== 'mirror') {
          // OCI 1.1 referrers, kept by the gateway in the fallback tag (registry 2.8 has no referrers API).
          const exchange = { ...context, request: route.request, upstream: route.upstream }
          if (route.request.op === 'referrers.list') return await this.referrers.list(exchange)
          if (mayHaveSubject(route.request, context.req.headers['content-type'])) return await this.referrers.putManifest(exchange)
          if (route.request.op === 'manifest.delete') return await this.referrers.deleteManifest(exchange)
        }
        return await this.forwardOne(route, context)
      case 'mirror':
        return await (this.mirror as MirrorWriter).forward(route, context)
      case 'catalog':
        return await this.catalog.serve(route.upstreams, context)
      case 'tags':
        return await this.tags.serve(route.upstreams, context)
    }
  }

  /**
   * One upstream serves the request. Upload requests on an old URL are answered from the session's
   * newest state (see UploadOffsets); every upload Location the upstream answers is remembered.
   */
  private async forwardOne(route: ForwardRoute, context: RouteContext): Promise<ExchangeResult> {
    const tracked = this.strategy !== 'mirror'
    const signer = route.uploadLocation
    if (tracked && sessionOps.has(route.request.op)) {
      const decision = this.offsets.check(this.offsetsKey(route.upstream), route.request, context.req)
      if (decision.kind === 'refused') {
        const request = route.request
        const fresh = sessionRequest(request, { upstream: route.upstream.name, uuid: request.uploadId ?? '', state: decision.latest.state })
        const location = `${context.client.publicOrigin}${pathOf(fresh)}`
        const range = context.req.headers['content-range']
        throw rangeNotSatisfiable(request, decision.latest, signer ? signer(location, route.upstream) : location, typeof range === 'string' ? range : undefined)
      }
      if (decision.kind === 'freshened') route.request = decision.request
    }
    const result = await this.deps.forwarder.forward({
      ...context,
      request: route.request,
      upstream: route.upstream,
      ...(route.fallbacks.length > 0 ? { fallbacks: route.fallbacks, nextOnNotFound: route.nextOnNotFound } : {}),
      onFailover: (from, to, reason) => {
        route.served = to.name
        this.deps.events?.failover?.(from, to, reason, context.request)
      },
      uploadLocation: (location, upstream) => {
        if (tracked) this.offsets.note(this.offsetsKey(upstream), location)
        return signer ? signer(location, upstream) : location
      },
    })
    const op = route.request.op
    if (tracked && ((op === 'upload.finish' && result.status === 201) || (op === 'upload.cancel' && result.status === 204))) {
      this.offsets.forget(this.offsetsKey(route.upstream), route.request)
    }
    return result
  }

  /** Upstreams that share storage share upload sessions too. */
  private offsetsKey(upstream: Upstream): string {
    return this.strategy === 'shared' ? 'shared' : upstream.name
  }

  /** The client's request as the (first) upstream saw it, with its own upload `_state`: the access log reads the session's size from it. */
  upstreamView(route: Route, request: RegistryRequest): RegistryRequest {
    if (route.kind === 'forward') return route.request
    const first = route.kind === 'mirror' ? route.sessions?.[0] : undefined
    return first ? sessionRequest(request, first.session) : request
  }

  /** The one upstream a read would go to first (for the UI and other internal callers). */
  pick(request: RegistryRequest): Upstream {
    if (this.strategy === 'single') return this.all[0] as Upstream
    if (this.strategy === 'by-repository' && request.repository !== undefined) return this.owner(request.repository)
    return this.available()[0] ?? (this.all[0] as Upstream)
  }

  /** The readiness of the upstream side under this strategy: enough upstreams up to serve every request. */
  readiness(states: UpstreamHealth[]): { ready: boolean; detail: unknown } {
    const up = states.filter((state) => state.state === 'up').map((state) => state.name)
    const down = states.filter((state) => state.state !== 'up').map((state) => state.name)
    switch (this.strategy) {
      case 'single':
        return { ready: down.length === 0, detail: states }
      case 'shared':
        // Any upstream serves any request.
        return { ready: up.length >= 1, detail: { strategy: 'shared', needed: 1, upstreams: states } }
      case 'by-repository':
        return {
          ready: down.length === 0,
          detail: {
            strategy: 'by-repository',
            needed: states.length,
            upstreams: states,
            ...(down.length > 0 ? { unreachable: down.map((name) => `repositories owned by ${name}`) } : {}),
          },
        }
      case 'mirror': {
        const needed = (this.mirror as MirrorWriter).needed(states.length)
        return { ready: up.length >= needed, detail: { strategy: 'mirror', require: this.deps.config.mirror.require, needed, upstreams: states } }
      }
    }
  }

  private to(upstream: Upstream, request: RegistryRequest, fallbacks: Upstream[] = [], nextOnNotFound = false): ForwardRoute {
    return { kind: 'forward', upstream, request, fallbacks, nextOnNotFound, served: upstream.name }
  }

  /**
   * The one upstream serves everything, unless health checks found it down: then a client gets 503
   * at once instead of waiting on an upstream that stopped answering (a stopped process still
   * accepts connections, so each request would hang until timeouts.upstream_headers).
   */
  private only(request: RegistryRequest): ForwardRoute {
    const upstream = this.all[0] as Upstream
    if (!this.deps.isAvailable(upstream)) throw this.noneAvailable()
    return this.to(upstream, request)
  }

  /** Upstreams share storage and http.secret: whichever is available serves every request, upload chunks included. */
  private shared(request: RegistryRequest): ForwardRoute {
    const [first, ...rest] = this.balanced()
    if (!first) throw this.noneAvailable()
    return this.to(first, request, isRead(request) ? rest : [])
  }

  private byRepository(request: RegistryRequest): Route {
    const repository = request.repository
    if (repository === undefined) {
      if (request.op === 'catalog') return this.catalogRoute()
      return this.anyAvailable(request, false)
    }
    if (sessionOps.has(request.op)) {
      const sessions = this.sessions(request)
      const only = sessions[0] as SessionRef
      if (sessions.length !== 1) throw uploadUnknown('this upload belongs to a mirrored push')
      this.needAvailable(only.upstream, repository)
      return { ...this.to(only.upstream, sessionRequest(request, only.session)), uploadLocation: this.locationSigner(repository, [only.session], 0) }
    }
    const owner = this.owner(repository)
    // Writes never move: only the owner holds the repository, so reads cannot move either.
    this.needAvailable(owner, repository)
    const route = this.to(owner, request)
    if (newUploadOps.has(request.op)) route.uploadLocation = this.locationSigner(repository, [], 0)
    return route
  }

  private mirrored(request: RegistryRequest): Route {
    const repository = request.repository
    if (repository === undefined) {
      if (request.op === 'catalog') return this.catalogRoute()
      return this.anyAvailable(request, false)
    }
    if (request.op === 'tags.list') {
      const upstreams = this.available()
      if (upstreams.length === 0) throw this.noneAvailable()
      return { kind: 'tags', upstreams, served: upstreams.map((upstream) => upstream.name).join('+') }
    }
    if (readOps.has(request.op)) return this.anyAvailable(request, true)
    if (request.op === 'upload.status') {
      const sessions = this.sessions(request)
      const index = sessions.findIndex((ref) => this.deps.isAvailable(ref.upstream))
      const chosen = sessions[index]
      if (!chosen) throw this.noneAvailable()
      return {
        ...this.to(chosen.upstream, sessionRequest(request, chosen.session)),
        uploadLocation: this.locationSigner(repository, sessions.map((ref) => ref.session), index),
      }
    }
    const route: MirrorRoute = { kind: 'mirror', request, upstreams: this.all, served: this.all.map((upstream) => upstream.name).join('+') }
    if (sessionOps.has(request.op)) route.sessions = this.sessions(request)
    return route
  }

  private catalogRoute(): CatalogRoute {
    const upstreams = this.available()
    if (upstreams.length === 0) throw this.noneAvailable()
    return { kind: 'catalog', upstreams, served: upstreams.map((upstream) => upstream.name).join('+') }
  }

  /** The first available upstream in configuration order, the rest as fallbacks for reads. */
  private anyAvailable(request: RegistryRequest, nextOnNotFound: boolean): ForwardRoute {
    const [first, ...rest] = this.available()
    if (!first) throw this.noneAvailable()
    return this.to(first, request, isRead(request) ? rest : [], nextOnNotFound)
  }

  /** The sessions a client's upload URL names; anything not signed by us is an unknown upload. */
  private sessions(request: RegistryRequest): SessionRef[] {
    const tokens = this.deps.tokens as UploadTokens
    const sessions = tokens.read(request.repository ?? '', request.uploadId, request.params.get(TOKEN_PARAM))
    if (!sessions) throw uploadUnknown('the upload URL is not one this gateway issued, or it was altered')
    return sessions.map((session) => {
      const upstream = this.byName.get(session.upstream)
      if (!upstream) throw uploadUnknown('the upload belongs to an upstream that is no longer configured')
      return { upstream, session }
    })
  }

  /**
   * Rewrites the upload Location an upstream answered into a signed URL: the session at `index`
   * becomes the one the upstream named (its new `_state`), the others stay as they were.
   */
  private locationSigner(repository: string, sessions: UploadSession[], index: number): (location: string, upstream: Upstream) => string {
    const tokens = this.deps.tokens as UploadTokens
    return (location, upstream) => {
      const found = sessionFromLocation(upstream.name, location)
      if (!found || found.repository !== repository) return location
      const next = [...sessions]
      next[index] = found.session
      return `${new URL(location).origin}${tokens.clientPath(repository, next)}`
    }
  }

  private owner(repository: string): Upstream {
    return rendezvousOwner(this.all, repository)
  }

  private needAvailable(upstream: Upstream, repository: string): void {
    if (this.deps.isAvailable(upstream)) return
    throw new RegistryError(
      'UNAVAILABLE',
      { upstream: upstream.name, repository },
      { 'Retry-After': RETRY_AFTER_SECONDS },
      `the upstream that holds ${repository} (${upstream.name}) is down`,
    )
  }

  private noneAvailable(): RegistryError {
    return new RegistryError('UNAVAILABLE', { upstreams: this.all.map((upstream) => upstream.name) }, { 'Retry-After': RETRY_AFTER_SECONDS }, 'no upstream registry is up')
  }

  private available(): Upstream[] {
    return this.all.filter((upstream) => this.deps.isAvailable(upstream))
  }

  /** Available upstreams, the preferred one first: fewest requests in flight per weight, or weighted round robin. */
  private balanced(): Upstream[] {
    const available = this.available()
    if (available.length <= 1) return available
    if (this.deps.config.balance === 'round-robin') {
      // Smooth weighted round robin: every upstream gains its weight, the leader pays the total.
      let total = 0
      let best: Upstream | undefined
      for (const upstream of available) {
        const value = (this.current.get(upstream) ?? 0) + upstream.weight
        this.current.set(upstream, value)
        total += upstream.weight
        if (best === undefined || value > (this.current.get(best) ?? 0)) best = upstream
      }
      const chosen = best as Upstream
      this.current.set(chosen, (this.current.get(chosen) ?? 0) - total)
      return [chosen, ...available.filter((upstream) => upstream !== chosen)]
    }
    // Ties (the common case when idle) rotate, so idle traffic still spreads over every upstream.
    const start = this.rotation++ % available.length
    const rotated = [...available.slice(start), ...available.slice(0, start)]
    return rotated.sort((a, b) => a.pool.stats.running / a.weight - b.pool.stats.running / b.weight)
  }
}

function isRead(request: RegistryRequest): boolean {
  return request.method === 'GET' || request.method === 'HEAD'
}

function uploadUnknown(reason: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', { reason })
}
