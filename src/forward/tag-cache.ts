// Tag → digest resolutions (manifest HEAD/GET by tag) remembered for a short TTL, by upstream view, repository, tag and the manifest types the client accepts; every manifest write through Portier forgets the tags it may move.
import type { IncomingHttpHeaders } from 'node:http'
import { BoundedCache } from '../lib/bounded-cache.js'
import type { RegistryRequest } from '../registry/classify.js'
import type { Headers } from './headers.js'
import { KEPT_HEADERS, MANIFEST_TYPES, mediaTypeOf } from './manifest-cache.js'

/** What a tag resolved to, with the registry's headers describing it (sent again as they were). */
export interface TagResolution {
  repository: string
  tag: string
  digest: string
  mediaType: string
  size: number
  headers: Headers
}

export interface TagCacheOptions {
  /** Milliseconds a resolution is used, counted from the moment the read that found it was sent. */
  ttlMs: number
  /** Resolutions held at most (the least recently used goes first). */
  maxEntries: number
  /** The clock in milliseconds, for tests; a monotonic clock by default. */
  now?: () => number
}

export interface TagCacheEvents {
  hit?: () => void
  miss?: () => void
  /** Resolutions held changed. */
  entries?: (held: number) => void
  /** A manifest write here moved (or may have moved) a tag: other instances forget it too (shared.redis). */
  moved?: (repository: string, reference: string) => void
}

/** Taken when a read by tag is sent upstream: its answer is kept only if no manifest write began or ended since. */
export interface ReadTicket {
  generation: number
  startedAt: number
}

/**
 * The manifest types registry 2.8 looks for in Accept. Which of them a client lists decides the answer
 * to a read by tag (an index or one platform's manifest; an OCI manifest or a 404), so clients that list
 * different sets never share an entry.
 */
const ACCEPT_BITS: ReadonlyMap<string, number> = new Map([
  ['application/vnd.docker.distribution.manifest.v2+json', 1],
  ['application/vnd.docker.distribution.manifest.list.v2+json', 2],
  ['application/vnd.oci.image.manifest.v1+json', 4],
  ['application/vnd.oci.image.index.v1+json', 8],
])

/** The Accept variant of a request: one bit per manifest type registry 2.8 reads from Accept. */
export function acceptVariant(accept: IncomingHttpHeaders['accept']): number {
  if (accept === undefined) return 0
  let bits = 0
  for (const part of accept.split(',')) bits |= ACCEPT_BITS.get(mediaTypeOf(part)) ?? 0
  return bits
}

/** OCI 1.1's referrers fallback tag (`sha256-<hex>`), moved by a by-digest PUT or DELETE of a referrer. */
const FALLBACK_TAG = /^sha256-[0-9a-f]{64}$/
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/

export class TagCache {
  private readonly entries: BoundedCache<string, TagResolution>
  private readonly ttlMs: number
  private readonly now: () => number
  /** Counts manifest writes begun and ended: a read that saw it change may hold an old answer. */
  private generation = 0

  constructor(options: TagCacheOptions, private readonly events: TagCacheEvents = {}) {
    this.ttlMs = options.ttlMs
    this.now = options.now ?? (() => performance.now())
    this.entries = new BoundedCache<string, TagResolution>({ max: options.maxEntries, ttlMs: options.ttlMs, now: this.now })
  }

  /** Resolutions held (expired ones count until they are looked at or pushed out). */
  get size(): number {
    return this.entries.size
  }

  /** A HEAD or GET of a manifest by tag: the only requests the cache may answer or fill from. */
  static eligible(request: RegistryRequest): boolean {
    // A query (containerd's `?ns=`) may send the same name elsewhere.
    return (request.op === 'manifest.head' || request.op === 'manifest.get') && request.repository !== undefined && request.query === '' && isTag(request.reference)
  }

  /** A manifest PUT or DELETE: a write that may move tags. */
  static moves(request: RegistryRequest): boolean {
    return (request.op === 'manifest.put' || request.op === 'manifest.delete') && request.repository !== undefined
  }

  /** The resolution for this read under this upstream view; the caller counts a hit (answered) or a miss. */
  lookup(view: string, request: RegistryRequest, accept: IncomingHttpHeaders['accept']): TagResolution | undefined {
    if (!TagCache.eligible(request)) return undefined
    return this.entries.get(keyOf(view, request, accept))
  }

  hit(): void {
    this.events.hit?.()
  }

  miss(): void {
    this.events.miss?.()
  }

  begin(): ReadTicket {
    return { generation: this.generation, startedAt: this.now() }
  }

  /**
   * Keeps what the registry answered to a read by tag: a 200 naming a sha256 digest, a manifest media type
   * and a length. Not kept when a manifest write began or ended while the read was out (it may predate it).
   * The entry lives the TTL from when the read was sent, so a change made elsewhere is seen within the TTL.
   */
  keep(view: string, request: RegistryRequest, accept: IncomingHttpHeaders['accept'], ticket: ReadTicket, status: number, headers: Record<string, string | string[] | undefined>): void {
    if (status !== 200 || !TagCache.eligible(request) || ticket.generation !== this.generation) return
    const digest = headers['docker-content-digest']
    if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) return
    const mediaType = mediaTypeOf(headers['content-type'])
    if (!MANIFEST_TYPES.has(mediaType)) return
    const size = Number(headers['content-length'])
    if (!Number.isSafeInteger(size) || size <= 0) return
    const remaining = this.ttlMs - (this.now() - ticket.startedAt)
    if (remaining <= 0) return
    const kept: Headers = {}
    for (const name of KEPT_HEADERS) {
      const value = headers[name]
      if (value !== undefined) kept[name] = value
    }
    const resolution = { repository: request.repository as string, tag: request.reference as string, digest, mediaType, size, headers: kept }
    this.entries.set(keyOf(view, request, accept), resolution, remaining)
    this.events.entries?.(this.entries.size)
  }

  /**
   * A manifest write through Portier, told once before it is forwarded and once after it ended (whatever
   * the answer): a PUT by tag forgets that tag; a DELETE by digest every tag pointing at the digest; a
   * DELETE by tag that tag; by-digest writes also forget the repository's referrers fallback tags.
   * Reads that were out meanwhile keep nothing.
   */
  forget(request: RegistryRequest): void {
    if (!TagCache.moves(request)) return
    const repository = request.repository as string
    const reference = request.reference ?? ''
    this.forgetReference(repository, reference)
    this.events.moved?.(repository, reference)
  }

  /** What forget() drops for a manifest write by `reference`, told by another instance that served it. */
  forgetReference(repository: string, reference: string): void {
    this.generation += 1
    const byTag = isTag(reference)
    const drop: string[] = []
    for (const [key, entry] of this.entries.items()) {
      if (entry.repository !== repository) continue
      if (byTag ? entry.tag === reference : entry.digest === reference || FALLBACK_TAG.test(entry.tag)) drop.push(key)
    }
    for (const key of drop) this.entries.delete(key)
    if (drop.length > 0) this.events.entries?.(this.entries.size)
  }

  /** Forgets everything (writes elsewhere may have been missed); reads out now keep nothing. */
  clear(): void {
    this.generation += 1
    this.entries.clear()
    this.events.entries?.(0)
  }
}

function isTag(reference: string | undefined): boolean {
  return reference !== undefined && !reference.includes(':')
}

function keyOf(view: string, request: RegistryRequest, accept: IncomingHttpHeaders['accept']): string {
  // Repository names and tags have no NUL; upstream names are only compared whole.
  return `${view}\u0000${request.repository as string}\u0000${request.reference as string}\u0000${acceptVariant(accept)}`
}
