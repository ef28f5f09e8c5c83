// The route stage: the configured strategy says where a request goes; the router carries that route out (one upstream, a mirrored write, a merged catalog or tag list).
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { RegistryRequest } from '../registry/classify.js'
import type { Exchange, ExchangeResult, FailoverReason, Forwarder, RouteContext } from '../forward/forward.js'
import { pathOf } from '../forward/forward.js'
import type { UpstreamHealth } from '../upstreams/health.js'
import { MergedCatalog } from '../forward/catalog.js'
import { mayHaveSubject, Referrers } from '../forward/referrers.js'
import { deleteTag, isTagDelete } from '../forward/tag-delete.js'
import { TagLists } from '../forward/tags.js'
import { TagCache } from '../forward/tag-cache.js'
import type { ManifestCache } from '../forward/manifest-cache.js'
import { checkMountSize, type SizeLimit } from '../pipeline/limits.js'
import { rangeNotSatisfiable, UploadOffsets } from '../uploads/offsets.js'
import { sessionRequest } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { routeNames, sessionOps, type ForwardRoute, type Route } from './route.js'
import type { Readiness, RoutingStrategy } from './strategy.js'
import { isBlobRead, type BlobStorage } from '../storage/blob-server.js'
import { isStorageUpload, type UploadServer } from '../storage/upload-server.js'
import type { CachedExchange, PullThrough } from './pull-through.js'

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
  /** Tag → digest resolutions (cache.tags): filled by reads routed here, forgotten by every manifest write routed here. */
  tagCache?: TagCache
  /** Whether an upstream is up and answers its `GET /v2/` check with 200 (then the gateway answers `GET /v2/` itself). */
  health?: { answersOpenly(upstream: Upstream): boolean }
  /** Blob GET/HEAD answered from the routed upstream's storage (upstreams[].storage, the embedded registry). */
  storage?: BlobStorage
  /** Blob uploads held in the routed upstream's storage (upstreams[].storage_uploads, the embedded registry). */
  uploads?: UploadServer
  /** Pull-through caches, served in front of the strategy (their prefixes, `?ns=`, un-prefixed misses). */
  pullThrough?: PullThrough
}

/** registry 2.8's answer to `GET /v2/` (Date and X-Content-Type-Options come from the server and the security headers). */
const BASE_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'content-length': '2', 'docker-distribution-api-version': 'registry/2.0' } as const
const BASE_BODY = '{}'

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
  /** The size of a blob committed by an upload held in storage (no `_state` says it). */
  blobBytes?: number
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
    const cached = await this.deps.pullThrough?.resolve(request)
    if (cached) return await this.serveCached(cached, context, trail)
    const route = this.widened(this.strategy.route(request), request)
    trail.served = routeNames(route)
    trail.upstreamRequest = upstreamView(route, request)
    // A mount has no body to count: the source blob's size is checked against the target's limit first.
    if (context.mountLimit) await checkMountSize(request, context.mountLimit, this.strategy.pick(request), context.req.headers)
    const result = await this.writingManifests(request, () => this.execute(route, context, trail))
    // A read that failed over was answered by another upstream.
    if (result.served !== undefined) trail.served = result.served
    return result
  }

  /**
   * What the gateway answers without an upstream, after authorization and limits: `GET /v2/` while
   * the upstream it would go to is up and answers its checks with 200; a manifest HEAD by tag from the
   * tag cache, and a GET by tag when the manifest cache also holds the digest. Returns the body bytes
   * sent, or false when an upstream must answer.
   */
  answerLocally(request: RegistryRequest, req: IncomingMessage, res: ServerResponse, manifestCache: ManifestCache | undefined): number | false {
    if (request.op === 'base') return this.answerBase(request, res)
    const cache = this.deps.tagCache
    if (cache === undefined || !TagCache.eligible(request)) return false
    const view = this.cacheView(request)
    // A conditional GET gets the registry's own 304 or 200.
    if (view === undefined || req.headers['if-none-match'] !== undefined) return false
    const resolution = cache.lookup(view, request, req.headers.accept)
    if (resolution === undefined) {
      cache.miss()
      return false
    }
    if (request.method === 'HEAD') {
      cache.hit()
      res.writeHead(200, resolution.headers)
      res.end()
      return 0
    }
    const sent = manifestCache?.answerDigest(resolution.repository, resolution.digest, 'GET', req.headers.accept, res) ?? false
    if (sent === false) cache.miss()
    else cache.hit()
    return sent
  }

  private answerBase(request: RegistryRequest, res: ServerResponse): number | false {
    const health = this.deps.health
    if (health === undefined) return false
    // pick, not route: route() moves round-robin state, and only serve() may do that (once per request).
    const upstream = this.strategy.pick(request)
    // With the client's credentials forwarded, the upstream's own answer (maybe a 401) is the answer.
    if (upstream.forwardAuthorization || !health.answersOpenly(upstream)) return false
    res.writeHead(200, BASE_HEADERS)
    res.end(BASE_BODY)
    return BASE_BODY.length
  }

  /**
   * The upstream view a tag resolution is kept under: the upstream a read of this repository goes to
   * first now (upstreams that share storage answer alike; another mirror up first is another view).
   * Asked with pick, which has no side effects: route() moves round-robin state, once per request in
   * serve(). None when that upstream authorizes each client itself (forward_authorization): what one
   * client may read is not every client's.
   */
  private cacheView(request: RegistryRequest): string | undefined {
    const upstream = this.strategy.pick(request)
    return upstream.forwardAuthorization ? undefined : upstream.name
  }

  /** A manifest write forgets the tags it may move before it is sent and again once it ended, whatever happened. */
  private async writingManifests<T>(request: RegistryRequest, write: () => Promise<T>): Promise<T> {
    const cache = this.deps.tagCache
    if (cache === undefined || !TagCache.moves(request)) return await write()
    cache.forget(request)
    try {
      return await write()
    } finally {
      cache.forget(request)
    }
  }

  /** A read by tag keeps what the upstream answered in the tag cache, under the view it was routed by. */
  private keepingTags(route: ForwardRoute, context: RouteContext): RouteContext {
    const cache = this.deps.tagCache
    if (cache === undefined || !TagCache.eligible(route.request)) return context
    const view = this.cacheView(route.request)
    // A fallback that authorizes each client itself may answer this read: nothing kept from it.
    if (view === undefined || route.fallbacks.some((upstream) => upstream.forwardAuthorization) || context.req.headers['if-none-match'] !== undefined) return context
    const ticket = cache.begin()
    const accept = context.req.headers.accept
    const request = route.request
    return { ...context, onUpstreamAnswer: (status, headers) => cache.keep(view, request, accept, ticket, status, headers) }
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
    return await this.writingManifests(context.request, () => this.answerRouted(context))
  }

  private async answerRouted(context: RouteContext): Promise<InternalAnswer> {
    const cached = await this.deps.pullThrough?.resolve(context.request)
    if (cached) {
      let status: number | undefined
      try {
        if (cached.answered !== undefined) {
          status = cached.answered
          return { status, headers: { 'docker-distribution-api-version': 'registry/2.0', 'content-length': '0' }, body: Readable.from([]) }
        }
        const { response } = await this.deps.forwarder.read({ ...context, request: cached.request, upstream: cached.upstream })
        status = response.statusCode
        return { status, headers: response.headers, body: response.body }
      } finally {
        cached.finished(status, context)
      }
    }
    const route = this.widened(this.strategy.route(context.request), context.request)
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
        const { body, headers } = await this.catalog.answer(route.upstreams, context, route.prefixes)
        return { status: 200, headers, body: Readable.from([body]) }
      }
      case 'tags':
        return await this.tagAnswer(route.upstreams, context)
    }
  }

  /** A request for a pull-through cache goes to its registry, as that registry names the repository. */
  private async serveCached(cached: CachedExchange, context: ServeContext, trail: RouteTrail): Promise<ExchangeResult> {
    // No upstreamRequest: the access log names the repository as the client did (with the cache's prefix); a cache has no uploads to size.
    trail.served = cached.upstream.name
    let status: number | undefined
    try {
      if (this.deps.storage && cached.upstream.storage !== undefined && isBlobRead(cached.request)) {
        // A blob the cache holds is read from its storage, like the embedded registry's; one it does not hold goes to its registry.
        const served = await this.deps.storage.serve(cached.upstream, cached.request, context)
        if (served !== undefined) {
          status = served.status
          trail.served = served.served ?? trail.served
          return served
        }
      }
      if (cached.answered !== undefined) {
        context.req.resume()
        status = cached.answered
        context.res.writeHead(status, { 'docker-distribution-api-version': 'registry/2.0', 'content-length': '0' })
        context.res.end()
        return { status }
      }
      const exchange: Exchange = { ...context, request: cached.request, upstream: cached.upstream, ...(cached.filterJson ? { filterJson: cached.filterJson } : {}), ...(cached.refuse ? { refuseAnswer: cached.refuse } : {}) }
      // The manifest cache keys by the client's repository name; the cache's registry knows another one.
      delete exchange.manifestCache
      const result = await this.deps.forwarder.forward(exchange)
      status = result.status
      return result
    } finally {
      cached.finished(status, context)
    }
  }

  /** The strategy's route with the caches added: un-prefixed misses may go to one, the catalog lists theirs too. */
  private widened(route: Route, request: RegistryRequest): Route {
    const caches = this.deps.pullThrough
    if (!caches) return route
    if (request.op === 'catalog') {
      if (caches.prefixes.size === 0) return route
      const local = route.kind === 'forward' ? [route.upstream] : route.kind === 'catalog' ? route.upstreams : []
      const cached = [...caches.prefixes.entries()]
      return { kind: 'catalog', upstreams: [...local, ...cached.map(([, upstream]) => upstream)], prefixes: new Map(cached.map(([prefix, upstream]) => [upstream.name, prefix])) }
    }
    return route.kind === 'forward' ? caches.widen(route) : route
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
        if (this.deps.storage && route.upstream.storage !== undefined && isBlobRead(route.request)) {
          // The upstream routing chose first; on a fallback (no link, no file, an odd Range) the registry answers.
          const served = await this.deps.storage.serve(route.upstream, route.request, context)
          if (served) return served
        }
        if (this.deps.uploads && isStorageUpload(route.upstream, route.request)) {
          // A session Portier holds (or a new one) is written into storage; the registry's own sessions and mounts go on to it.
          const answered = await this.deps.uploads.serve(route.upstream, { ...context, request: route.request }, route.uploadLocation)
          if (answered) {
            if (answered.blobBytes !== undefined) trail.blobBytes = answered.blobBytes
            return answered
          }
        }
        return await this.forwardOne(route, this.keepingTags(route, context), trail)
      }
      case 'mirror':
        return await route.writer.forward({ ...route, offsets: this.offsets, referrers: this.referrers }, context)
      case 'catalog':
        return await this.catalog.serve(route.upstreams, context, route.prefixes)
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
