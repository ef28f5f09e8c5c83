// Which requests the pull-through caches serve and how: the prefix or `?ns=` picks the cache, the name is rewritten for its remote, pushes are refused, fresh tags are answered by digest, concurrent misses of one blob wait for the first.
import { access, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from '../observe/log.js'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import type { RouteContext } from '../forward/forward.js'
import type { ForwardRoute } from '../routing/route.js'
import type { CachedExchange, PullThrough } from '../routing/pull-through.js'
import type { Upstream } from '../upstreams/upstreams.js'
import type { CachedKind, CacheMetrics } from './metrics.js'
import type { RemoteProbe } from './remote.js'
import type { RemoteRelay } from './relay.js'

/** One cache as routing uses it. */
export interface PullThroughCache {
  prefix: string
  remote: string
  /** The cache's registry (proxy mode). */
  upstream: Upstream
  /** The registry's filesystem storage root (what is stored is read there, never written). */
  storage: string
  dockerHub: boolean
  /** Hosts whose `?ns=` names this cache serves without a prefix. */
  mirrorOf: readonly string[]
  unprefixed: boolean
  revalidateMs: number
  probe: RemoteProbe
  relay: RemoteRelay
}

export interface CacheRoutesDeps {
  log: Logger
  metrics?: CacheMetrics
  /** How long followers of a blob miss wait for the cache's registry to finish storing it. */
  storeWaitMs?: number
}

interface TagEntry {
  digest: string
  checkedAt: number
}

const writeOps = new Set(['manifest.put', 'upload.start', 'upload.monolithic', 'upload.mount', 'upload.status', 'upload.chunk', 'upload.finish', 'upload.cancel'])
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/
/**
 * Pulls the un-prefixed cache is asked for when the configured routing does not find them. Not blob
 * HEADs: clients push by HEADing every blob first, and a push must not wait on (or fail with) the remote.
 */
const unprefixedReads = new Set(['manifest.get', 'manifest.head', 'blob.get'])

export class CacheRoutes implements PullThrough {
  readonly prefixes: ReadonlyMap<string, Upstream>
  private readonly byPrefix: Map<string, PullThroughCache>
  private readonly byHost = new Map<string, PullThroughCache>()
  private readonly unprefixedCache: PullThroughCache | undefined
  private readonly tags = new Map<string, TagEntry>()
  /** When each cached repository was last pulled (a manifest read), by cache prefix and name: eviction goes oldest first. */
  private readonly pulled = new Map<string, number>()
  /** Blob misses in flight per cache and digest: later pulls of the same blob wait for the first. */
  private readonly blobMisses = new Map<string, Promise<void>>()
  /** Until when a cache's remote counts as down (no new probe before). */
  private readonly downUntil = new Map<string, number>()
  private readonly storeWaitMs: number

  constructor(
    caches: readonly PullThroughCache[],
    private readonly deps: CacheRoutesDeps,
  ) {
    this.byPrefix = new Map(caches.map((cache) => [cache.prefix, cache]))
    for (const cache of caches) for (const host of cache.mirrorOf) if (!this.byHost.has(host)) this.byHost.set(host, cache)
    this.unprefixedCache = caches.find((cache) => cache.unprefixed)
    this.prefixes = new Map(caches.map((cache) => [cache.prefix, cache.upstream]))
    this.storeWaitMs = deps.storeWaitMs ?? 60_000
  }

  async resolve(request: RegistryRequest): Promise<CachedExchange | undefined> {
    const found = this.match(request)
    if (!found) return undefined
    const { cache, name } = found
    if (writeOps.has(request.op)) {
      throw new RegistryError(
        'CACHE_READ_ONLY',
        { repository: request.repository, cache: cache.prefix, remote: cache.remote },
        {},
        `${request.repository ?? ''} is in the pull-through cache of ${cache.remote} (prefix ${cache.prefix}/): it can be pulled, not pushed to`,
      )
    }
    if (request.op === 'manifest.delete') return await this.deleteManifest(cache, name, request)
    let upstreamRequest = renamed(request, name)
    const clientRepository = request.repository ?? ''
    let kind: CachedKind | undefined
    let hit = false
    let tagKey: string | undefined
    let waitedFor: ((status: number | undefined) => void) | undefined
    const op = request.op
    const reference = request.reference ?? ''
    if (op === 'manifest.get' || op === 'manifest.head') {
      kind = 'manifest'
      this.pulled.set(`${cache.prefix}\u0000${name}`, Date.now())
      if (digestPattern.test(reference)) {
        hit = await exists(manifestLink(cache.storage, name, reference))
      } else {
        tagKey = `${cache.prefix}\u0000${name}\u0000${reference}`
        const known = this.tags.get(tagKey)
        if (known && Date.now() - known.checkedAt < cache.revalidateMs) {
          hit = true
          upstreamRequest = withReference(upstreamRequest, known.digest)
        } else if (known && cache.relay.rateLimited() !== undefined) {
          // Rate limited: the digest held is the answer until the remote's Retry-After has passed.
          hit = true
          upstreamRequest = withReference(upstreamRequest, known.digest)
        } else if (known && (await this.remoteDown(cache))) {
          // The cache's registry would fall back to its own tag too, but only after its remote times out.
          hit = true
          this.deps.metrics?.staleServes.inc({ cache: cache.prefix })
          this.deps.log.warn({ cache: cache.prefix, remote: cache.remote, repository: clientRepository, tag: reference, digest: known.digest }, 'pull-through remote unreachable: serving the tag\'s cached digest')
          upstreamRequest = withReference(upstreamRequest, known.digest)
        }
      }
    } else if (op === 'blob.get' || op === 'blob.head') {
      kind = 'blob'
      const stored = blobData(cache.storage, reference)
      hit = await exists(stored)
      if (!hit && stored !== undefined && op === 'blob.get') {
        const key = `${cache.prefix}\u0000${reference}`
        const first = this.blobMisses.get(key)
        if (first) {
          // registry 2.8 in proxy mode fetches a blob again for every pull that comes while it stores it: wait for the first.
          await first
          hit = await exists(stored)
        } else {
          let release: () => void = () => undefined
          this.blobMisses.set(key, new Promise<void>((done) => (release = done)))
          const done = (): void => {
            this.blobMisses.delete(key)
            release()
          }
          waitedFor = (status) => {
            // A first pull that failed stores nothing: the others go on at once instead of waiting for the file.
            if (status === 200) this.whenStored(stored).then(done, done)
            else done()
          }
        }
      }
    }
    const retryAfter = cache.relay.rateLimited()
    if (!hit && retryAfter !== undefined && op !== 'tags.list') {
      // What the cache does not hold would ask a remote that said to wait: the client is told the same, with the remote's Retry-After.
      throw rateLimitedError(cache, retryAfter)
    }
    const rateLimitsBefore = cache.relay.rateLimits
    if (kind) (hit ? this.deps.metrics?.hits : this.deps.metrics?.misses)?.inc({ cache: cache.prefix, kind })
    const exchange: CachedExchange = {
      upstream: cache.upstream,
      request: upstreamRequest,
      finished: (status: number | undefined, context: RouteContext) => {
        waitedFor?.(status)
        // Bytes fetched from the remote are counted by the relay as they arrive; these were held already.
        if (kind && hit && context.bytes.sent > 0) this.deps.metrics?.bytes.inc({ cache: cache.prefix, source: 'cache' }, context.bytes.sent)
        if (tagKey && status === 200 && upstreamRequest.reference === reference) this.learn(tagKey, context)
      },
    }
    // The remote answered 429 while this request was with the cache's registry, which then failed it: the client gets the 429 and its Retry-After.
    exchange.refuse = (status) => {
      if (status < 400 || cache.relay.rateLimits === rateLimitsBefore) return undefined
      const after = cache.relay.rateLimited()
      return after === undefined ? undefined : rateLimitedError(cache, after)
    }
    if (op === 'tags.list') exchange.filterJson = (body) => (isObject(body) ? { ...body, name: clientRepository } : body)
    return exchange
  }

  /**
   * registry 2.8's proxy mode refuses deletes: a manifest is taken out of the cache's storage here, as
   * the registry's own delete does (its revision link and every tag pointing at it). Its blobs stay
   * until the registry's proxy TTL expires them. The ACL has decided already who may delete.
   */
  private async deleteManifest(cache: PullThroughCache, name: string, request: RegistryRequest): Promise<CachedExchange> {
    const digest = request.reference ?? ''
    if (!digestPattern.test(digest)) {
      throw new RegistryError('UNSUPPORTED', { repository: request.repository, reference: digest }, {}, 'a cached manifest is deleted by digest')
    }
    const link = manifestLink(cache.storage, name, digest)
    if (link === undefined || !(await exists(link))) throw new RegistryError('MANIFEST_UNKNOWN', { repository: request.repository, digest })
    const manifests = join(cache.storage, 'docker/registry/v2/repositories', name, '_manifests')
    const tags = await readdir(join(manifests, 'tags')).catch(() => [] as string[])
    for (const tag of tags) {
      const current = await readFile(join(manifests, 'tags', tag, 'current/link'), 'utf8').catch(() => '')
      if (current.trim() === digest) {
        await rm(join(manifests, 'tags', tag), { recursive: true, force: true })
        this.tags.delete(`${cache.prefix}\u0000${name}\u0000${tag}`)
      }
    }
    await rm(join(link, '..'), { recursive: true, force: true })
    for (const [key, entry] of this.tags) if (entry.digest === digest && key.startsWith(`${cache.prefix}\u0000${name}\u0000`)) this.tags.delete(key)
    this.deps.log.info({ cache: cache.prefix, repository: request.repository, digest }, 'manifest deleted from a pull-through cache')
    return { upstream: cache.upstream, request, answered: 202, finished: () => undefined }
  }

  /** When Portier last saw a pull of this cached repository (undefined: not since it started). */
  lastPulled(prefix: string, name: string): number | undefined {
    return this.pulled.get(`${prefix}\u0000${name}`)
  }

  /** An evicted repository: its tags are no longer answered by digest (the digest may be gone). */
  forget(prefix: string, name: string): void {
    const start = `${prefix}\u0000${name}\u0000`
    for (const key of this.tags.keys()) if (key.startsWith(start)) this.tags.delete(key)
    this.pulled.delete(`${prefix}\u0000${name}`)
  }

  cacheOf(request: RegistryRequest): string | undefined {
    return this.match(request)?.cache.prefix
  }

  widen(route: ForwardRoute): ForwardRoute {
    const cache = this.unprefixedCache
    if (!cache || !unprefixedReads.has(route.request.op)) return route
    return { ...route, fallbacks: [...route.fallbacks, cache.upstream], nextOnNotFound: true }
  }

  /** The cache a request belongs to and the repository name its remote knows. */
  private match(request: RegistryRequest): { cache: PullThroughCache; name: string } | undefined {
    const repository = request.repository
    if (repository === undefined) return undefined
    const slash = repository.indexOf('/')
    const cache = slash > 0 ? this.byPrefix.get(repository.slice(0, slash)) : undefined
    if (cache) {
      const rest = repository.slice(slash + 1)
      return { cache, name: cache.dockerHub && !rest.includes('/') ? `library/${rest}` : rest }
    }
    const ns = request.params.get('ns')
    const mirrored = ns ? this.byHost.get(ns) : undefined
    if (mirrored) return { cache: mirrored, name: mirrored.dockerHub && !repository.includes('/') ? `library/${repository}` : repository }
    return undefined
  }

  /** Whether the remote is unreachable now; once found down it counts as down for a while before the next probe. */
  private async remoteDown(cache: PullThroughCache): Promise<boolean> {
    const until = this.downUntil.get(cache.prefix)
    if (until !== undefined && Date.now() < until) return true
    const state = await cache.probe.state()
    if (state === 'up') {
      if (until !== undefined) this.deps.log.info({ cache: cache.prefix, remote: cache.remote }, 'pull-through remote reachable again')
      this.downUntil.delete(cache.prefix)
      return false
    }
    if (until === undefined || Date.now() >= until) this.deps.metrics?.remoteErrors.inc({ cache: cache.prefix, reason: 'unreachable' })
    this.downUntil.set(cache.prefix, Date.now() + Math.min(Math.max(cache.revalidateMs, 1000), 30_000))
    return true
  }

  /** The digest a tag pointed at, as the cache's registry answered (after asking its remote). */
  private learn(tagKey: string, context: RouteContext): void {
    const digest = context.res.getHeader('docker-content-digest')
    if (typeof digest === 'string' && digestPattern.test(digest)) this.tags.set(tagKey, { digest, checkedAt: Date.now() })
  }

  /** Resolves once the cache's registry has the blob on disk, or after storeWaitMs (then followers fetch it themselves). */
  private async whenStored(path: string): Promise<void> {
    const deadline = Date.now() + this.storeWaitMs
    while (Date.now() < deadline) {
      if (await exists(path)) return
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
}

/** A pull the remote's rate limit keeps from being served: 429 with the seconds the remote's Retry-After has left. */
function rateLimitedError(cache: PullThroughCache, retryAfter: string): RegistryError {
  return new RegistryError('TOOMANYREQUESTS', { cache: cache.prefix, remote: cache.remote }, { 'Retry-After': retryAfter }, `the remote of cache ${cache.prefix}/ (${cache.remote}) is rate limiting: retry after ${retryAfter} s`)
}

/** The request with the repository as the cache's registry names it (the prefix off, `ns` dropped). */
function renamed(request: RegistryRequest, name: string): RegistryRequest {
  const repository = request.repository ?? ''
  const params = new URLSearchParams(request.params)
  params.delete('ns')
  const path = `/v2/${name}${request.path.slice(`/v2/${repository}`.length)}`
  return { ...request, repository: name, path, params, query: params.toString() }
}

function withReference(request: RegistryRequest, digest: string): RegistryRequest {
  const path = `${request.path.slice(0, request.path.lastIndexOf('/') + 1)}${digest}`
  return { ...request, reference: digest, path }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

async function exists(path: string | undefined): Promise<boolean> {
  if (path === undefined) return false
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/** distribution's filesystem layout: where a blob's bytes and a repository's manifest revisions live. */
function blobData(storage: string, digest: string): string | undefined {
  const [algorithm, hex] = digest.split(':')
  if (!algorithm || !hex || !/^[a-f0-9]{2,}$/.test(hex)) return undefined
  return join(storage, 'docker/registry/v2/blobs', algorithm, hex.slice(0, 2), hex, 'data')
}

function manifestLink(storage: string, repository: string, digest: string): string | undefined {
  const [algorithm, hex] = digest.split(':')
  if (!algorithm || !hex || !/^[a-f0-9]{2,}$/.test(hex)) return undefined
  return join(storage, 'docker/registry/v2/repositories', repository, '_manifests/revisions', algorithm, hex, 'link')
}
