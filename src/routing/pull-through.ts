// What the router asks of pull-through caches: whether a request belongs to one (served by that cache's registry, the name as the remote knows it) and where un-prefixed reads may go when routing finds nothing.
import type { RegistryRequest } from '../registry/classify.js'
import type { RegistryError } from '../registry/errors.js'
import type { RouteContext } from '../forward/forward.js'
import type { Upstream } from '../upstreams/upstreams.js'
import type { ForwardRoute } from './route.js'

/** One request served by a cache's registry. */
export interface CachedExchange {
  upstream: Upstream
  /** The request as the cache's registry sees it: prefix taken off, a fresh tag turned into its digest. */
  request: RegistryRequest
  /** Rewrites a JSON answer for the client (the tag list carries the name the client asked for). */
  filterJson?: (body: unknown) => unknown
  /** Set when the cache answered itself (a manifest deleted from its storage: 202): nothing is forwarded, the answer has no body. */
  answered?: number
  /** Asked with the status of the cache registry's answer before it is relayed: an error returned is the client's answer instead. */
  refuse?: (status: number) => RegistryError | undefined
  /** Called once the exchange ended: the status answered (undefined when it failed before one), the bytes sent. */
  finished(status: number | undefined, context: RouteContext): void
}

export interface PullThrough {
  /** The cache that serves this request, or undefined for the configured routing. Throws RegistryError for a push into a cache. */
  resolve(request: RegistryRequest): Promise<CachedExchange | undefined>
  /** The prefix of the cache a request goes to (by its prefix or `?ns=`), or undefined for the configured routing. */
  cacheOf(request: RegistryRequest): string | undefined
  /** A read the configured routing may not find, with the cache for un-prefixed names as its last fallback (unchanged when there is none). */
  widen(route: ForwardRoute): ForwardRoute
  /** The names of the caches' upstreams and their prefixes, for listings. */
  readonly prefixes: ReadonlyMap<string, Upstream>
}
