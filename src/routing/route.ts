// Where one request goes: the routes a strategy answers with, and the operations that decide them.
import type { Operation, RegistryRequest } from '../registry/classify.js'
import type { MirrorRoute } from '../forward/mirror.js'
import type { Upstream } from '../upstreams/upstreams.js'

/** One upstream serves the request (reads may move on to the fallbacks). */
export interface ForwardRoute {
  kind: 'forward'
  upstream: Upstream
  /** The request as this upstream must see it (an upload session's own UUID and `_state`). */
  request: RegistryRequest
  fallbacks: Upstream[]
  nextOnNotFound: boolean
  /** Turns the upload Location the upstream answered into the URL the client continues with (signed upload URLs). */
  uploadLocation?: (location: string, upstream: Upstream) => string
}

/** A catalog merged over upstreams that hold different repositories. */
export interface CatalogRoute {
  kind: 'catalog'
  upstreams: Upstream[]
  /** Pull-through caches among the upstreams (upstream name -> prefix): their repositories are listed under the prefix. */
  prefixes?: ReadonlyMap<string, string>
}

/** A tag list merged over mirrors (each may lack tags a quorum push did not reach). */
export interface TagsRoute {
  kind: 'tags'
  upstreams: Upstream[]
}

export type Route = ForwardRoute | MirrorRoute | CatalogRoute | TagsRoute

export const readOps: ReadonlySet<Operation> = new Set(['manifest.get', 'manifest.head', 'blob.get', 'blob.head', 'tags.list', 'referrers.list'])
/** Requests on an upload session the client already has. */
export const sessionOps: ReadonlySet<Operation> = new Set(['upload.status', 'upload.chunk', 'upload.finish', 'upload.cancel'])
/** Requests that may open an upload session. */
export const newUploadOps: ReadonlySet<Operation> = new Set(['upload.start', 'upload.mount', 'upload.monolithic'])

export function isRead(request: RegistryRequest): boolean {
  return request.method === 'GET' || request.method === 'HEAD'
}

export function forwardTo(upstream: Upstream, request: RegistryRequest, fallbacks: Upstream[] = [], nextOnNotFound = false): ForwardRoute {
  return { kind: 'forward', upstream, request, fallbacks, nextOnNotFound }
}

/** The upstream names of a route, for the access log. */
export function routeNames(route: Route): string {
  return route.kind === 'forward' ? route.upstream.name : route.upstreams.map((upstream) => upstream.name).join('+')
}
