// The route stage: the configured strategy says where a request goes; the router carries that route out (one upstream, a mirrored write, a merged catalog or tag list).
import { Readable } from 'node:stream'
import type { RegistryRequest } from '../registry/classify.js'
import type { ExchangeResult, FailoverReason, Forwarder, RouteContext } from '../forward/forward.js'
import { pathOf } from '../forward/forward.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import { MergedCatalog } from '../forward/catalog.js'
import { mayHaveSubject, Referrers } from '../forward/referrers.js'
import { deleteTag, isTagDelete } from '../forward/tag-delete.js'
import { TagLists } from '../forward/tags.js'
import { checkMountSize, type SizeLimit } from '../pipeline/limits.js'
import { rangeNotSatisfiable, UploadOffsets } from '../uploads/offsets.js'
import { sessionRequest } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { routeNames, sessionOps, type ForwardRoute, type Route } from './route.js'
import type { Readiness, RoutingStrategy } from './strategy.js'

export type { RouteContext } from '../forward/forward.js'
export type { Route } from './route.js'

export interface RouterEvents {
  failover?(from: Upstream, to: Upstream, reason: FailoverReason, request: RegistryRequest): void
  catalogUpstreamFailed?(upstream: Upstream, reason: string): void
  tagsUpstreamFailed?(upstream: Upstream, reason: string): void
  referrersIndexFailed?(repository: string, subject: string, reason: string): void
}

export interface RouterDeps {
  strategy: RoutingStrategy
  forwarder: Forwarder
  events?: RouterEvents
}

/** A request to serve, with the target's blob limit when it is a cross-repository mount (checked against the source blob first). */
export interface ServeContext extends RouteContext {
  mountLimit?: SizeLimit
}

/**
 * What the access log reads of a routed request, kept up to date while it runs (read after it
 * ends, also on failure): the upstream(s) that served it, and the request as the (first) upstream
 * saw it — a signed upload URL hides the upstream's `_state`, which the blob size is read from.
 */
export interface RouteTrail {
  served?: string
  upstreamRequest?: RegistryRequest
}

/** An answer collected for the gateway's own requests: status, headers and the body to read. */
export interface InternalAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Readable
}

export class Router {
  readonly strategy: RoutingStrategy
  private readonly catalog: MergedCatalog
  private readonly tags: TagLists
  private readonly referrers: Referrers
  /** The newest state of each upload session this gateway relayed (strategies that give it a scope). */
  private readonly offsets = new UploadOffsets()

  constructor(private readonly deps: RouterDeps) {
    this.strategy = deps.strategy
    this.catalog = new MergedCatalog(deps.forwarder, (upstream, reason) => deps.events?.catalogUpstreamFailed?.(upstream, reason))
    this.referrers = new Referrers(deps.forwarder, {
      indexFailed: (repository, subject, reason) => deps.events?.referrersIndexFailed?.(repository, subject, reason),
    })
    this.tags = new TagLists(deps.forwarder, (upstream, reason) => deps.events?.tagsUpstreamFailed?.(upstream, reason))
  }

  /** Routes and serves one request: the one call the gateway makes. Throws RegistryError before anything is sent to the client. */
  async serve(context: ServeContext, trail: RouteTrail): Promise<ExchangeResult> {
    const { request } = context
    const route = this.strategy.route(request)
    trail.served = routeNames(route)
    trail.upstreamRequest = upstreamView(route, request)
    // A mount has no body to count: the source blob's size is checked against the target's limit first.
    if (context.mountLimit) await checkMountSize(request, context.mountLimit, this.strategy.pick(request), context.req.headers)
    const result = await this.execute(route, context, trail)
    // A read that failed over was answered by another upstream.
    if (result.served !== undefined) trail.served = result.served
    return result
  }

  /** The readiness of the upstream side under this strategy: enough upstreams up to serve every request. */
  readiness(states: UpstreamHealth[]): Readiness {
    return this.strategy.readiness(states)
  }

  /**
   * A request the gateway makes for itself (the web UI's reads and deletes), routed and carried out
   * as a client's: the strategy's choice of upstream with its failover, the merged catalog with its
   * page boundaries, merged tag lists, and mirrored deletes under routing.mirror.require. The answer
   * is collected instead of written to a client.
   */
  async answer(context: RouteContext): Promise<InternalAnswer> {
    const route = this.strategy.route(context.request)
    switch (route.kind) {
      case 'forward': {
        if (route.request.op === 'tags.list') return await this.tagAnswer([route.upstream], context)
        const { response } = await this.deps.forwarder.read({
          ...context,
          request: route.request,
          upstream: route.upstream,
          fallbacks: route.fallbacks,
          nextOnNotFound: route.nextOnNotFound,
          onFailover: (from, to, reason) => this.deps.events?.failover?.(from, to, reason, context.request),
        })
        return { status: response.statusCode, headers: response.headers, body: response.body }
      }
      case 'mirror': {
        if (route.request.op !== 'manifest.delete' && route.request.op !== 'blob.delete') throw new Error(`${route.request.op} is not an internal request`)
        const { answer } = await route.writer.remove(route, context)
        return { status: answer.status, headers: answer.headers, body: Readable.from([answer.body]) }
      }
      case 'catalog': {
        const { body, headers } = await this.catalog.answer(route.upstreams, context)
        return { status: 200, headers, body: Readable.from([body]) }
      }
      case 'tags':
        return await this.tagAnswer(route.upstreams, context)
    }
  }

  private async tagAnswer(upstreams: Upstream[], context: RouteContext): Promise<InternalAnswer> {
    const listing = await this.tags.list(upstreams, context)
    if (listing.kind === 'refused') return { status: listing.response.statusCode, headers: listing.response.headers, body: listing.response.body }
    return { status: 200, headers: listing.headers, body: Readable.from([listing.body]) }
  }

  private async execute(route: Route, context: RouteContext, trail: RouteTrail): Promise<ExchangeResult> {
    switch (route.kind) {
      case 'forward': {
        const exchange = { ...context, request: route.request, upstream: route.upstream }
        // registry 2.8 ignores `n` and `last`: the gateway pages tag lists itself.
        if (route.request.op === 'tags.list') return await this.tags.serve([route.upstream], context)
        if (isTagDelete(route.request)) return await deleteTag(this.deps.forwarder, exchange)
        if (this.strategy.indexesReferrers) {
          // OCI 1.1 referrers, kept by the gateway in the fallback tag (registry 2.8 has no referrers API).
          if (route.request.op === 'referrers.list') return await this.referrers.list(exchange)
          if (mayHaveSubject(route.request, context.req.headers['content-type'])) return await this.referrers.putManifest(exchange)
          if (route.request.op === 'manifest.delete') return await this.referrers.deleteManifest(exchange)
        }
        return await this.forwardOne(route, context, trail)
      }
      case 'mirror':
        return await route.writer.forward({ ...route, offsets: this.offsets, referrers: this.referrers }, context)
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
  private async forwardOne(route: ForwardRoute, context: RouteContext, trail: RouteTrail): Promise<ExchangeResult> {
    const signer = route.uploadLocation
    const scope = this.strategy.sessionScope(route.upstream)
    let request = route.request
    if (scope !== undefined && sessionOps.has(request.op)) {
      const decision = this.offsets.check(scope, request, context.req)
      if (decision.kind === 'refused') {
        const fresh = sessionRequest(request, { upstream: route.upstream.name, uuid: request.uploadId ?? '', state: decision.latest.state })
        const location = `${context.client.publicOrigin}${pathOf(fresh)}`
        const range = context.req.headers['content-range']
        throw rangeNotSatisfiable(request, decision.latest, signer ? signer(location, route.upstream) : location, typeof range === 'string' ? range : undefined)
      }
      if (decision.kind === 'freshened') {
        request = decision.request
        trail.upstreamRequest = request
      }
    }
    const result = await this.deps.forwarder.forward({
      ...context,
      request,
      upstream: route.upstream,
      ...(route.fallbacks.length > 0 ? { fallbacks: route.fallbacks, nextOnNotFound: route.nextOnNotFound } : {}),
      onFailover: (from, to, reason) => this.deps.events?.failover?.(from, to, reason, context.request),
      uploadLocation: (location, upstream) => {
        const noted = this.strategy.sessionScope(upstream)
        if (noted !== undefined) this.offsets.note(noted, location)
        return signer ? signer(location, upstream) : location
      },
    })
    const op = request.op
    if (scope !== undefined && ((op === 'upload.finish' && result.status === 201) || (op === 'upload.cancel' && result.status === 204))) {
      this.offsets.forget(scope, request)
    }
    return result
  }
}

/** The client's request as the (first) upstream sees it, with its own upload `_state`. */
function upstreamView(route: Route, request: RegistryRequest): RegistryRequest {
  if (route.kind === 'forward') return route.request
  const first = route.kind === 'mirror' ? route.sessions?.[0]?.session : undefined
  return first ? sessionRequest(request, first) : request
}
