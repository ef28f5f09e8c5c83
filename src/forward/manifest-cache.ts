// Manifests by digest never change: a byte-capped memory of them, by repository + digest, answered after authorization without the upstream.
import { createHash } from 'node:crypto'
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import { LRUCache } from 'lru-cache'
import type { RegistryRequest } from '../registry/classify.js'
import type { Headers } from './headers.js'

/** The registry's own manifest limit: bigger bodies are streamed, never held. */
export const MANIFEST_ENTRY_MAX_BYTES = 4 * 1024 * 1024

/** Media types of manifests and indexes: only these are kept (a signature or anything else is streamed). */
export const MANIFEST_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
])

/** The registry's headers that describe the manifest, sent again as they were. */
export const KEPT_HEADERS = ['content-type', 'docker-content-digest', 'content-length', 'etag', 'docker-distribution-api-version'] as const

interface Entry {
  body: Buffer
  headers: Headers
  mediaType: string
}

export interface ManifestCacheEvents {
  hit?: () => void
  miss?: () => void
  /** Bytes held changed. */
  bytes?: (held: number) => void
  /** A manifest delete here evicted an entry: other instances evict it too (shared.redis). */
  evicted?: (repository: string, digest: string) => void
}

export class ManifestCache {
  private readonly entries: LRUCache<string, Entry>
  private readonly entryMax: number

  constructor(maxBytes: number, private readonly events: ManifestCacheEvents = {}) {
    this.entryMax = Math.min(MANIFEST_ENTRY_MAX_BYTES, maxBytes)
    this.entries = new LRUCache<string, Entry>({
      maxSize: maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.body.length),
      // Pushed out or deleted: the gauge follows.
      dispose: () => queueMicrotask(() => this.events.bytes?.(this.entries.calculatedSize)),
    })
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.entries.calculatedSize
  }

  /** A GET or HEAD of a manifest by digest: the only requests the cache may answer or fill from. */
  static eligible(request: RegistryRequest): boolean {
    return (request.op === 'manifest.get' || request.op === 'manifest.head') && isDigest(request.reference)
  }

  /**
   * Answers the request from memory when the entry is there and the client accepts its media type
   * (registry 2.8 refuses an OCI manifest by digest to a client that does not list its type: forwarded,
   * the registry gives its own answer). Returns false when the upstream must answer.
   */
  answer(request: RegistryRequest, accept: IncomingHttpHeaders['accept'], res: ServerResponse): number | false {
    if (!ManifestCache.eligible(request) || request.repository === undefined) return false
    return this.answerDigest(request.repository, request.reference as string, request.method, accept, res)
  }

  /** The same answer for a digest the caller resolved (a GET by tag whose tag the tag cache knows). */
  answerDigest(repository: string, digest: string, method: string, accept: IncomingHttpHeaders['accept'], res: ServerResponse): number | false {
    const entry = this.entries.get(keyOf(repository, digest))
    if (entry === undefined || !accepts(accept, entry.mediaType)) {
      this.events.miss?.()
      return false
    }
    this.events.hit?.()
    res.writeHead(200, entry.headers)
    if (method === 'HEAD') {
      res.end()
      return 0
    }
    res.end(entry.body)
    return entry.body.length
  }

  /** Whether a 200 answer to this request is worth reading whole to keep: a manifest GET small enough. */
  wants(request: RegistryRequest, status: number, headers: Record<string, string | string[] | undefined>): boolean {
    if (request.method !== 'GET' || status !== 200 || request.repository === undefined) return false
    if (request.op !== 'manifest.get') return false
    const length = Number(headers['content-length'])
    return Number.isSafeInteger(length) && length > 0 && length <= this.entryMax && MANIFEST_TYPES.has(mediaTypeOf(headers['content-type']))
  }

  /**
   * Keeps a manifest the registry sent, under the digest it named, only when the bytes hash to it:
   * content is by digest, so what is kept is exactly what any later request by that digest gets.
   */
  keep(request: RegistryRequest, headers: Record<string, string | string[] | undefined>, body: Buffer): void {
    const digest = headers['docker-content-digest']
    if (typeof digest !== 'string' || !digest.startsWith('sha256:') || request.repository === undefined) return
    if (body.length > this.entryMax || body.length !== Number(headers['content-length'])) return
    if (`sha256:${createHash('sha256').update(body).digest('hex')}` !== digest) return
    const mediaType = mediaTypeOf(headers['content-type'])
    if (!MANIFEST_TYPES.has(mediaType)) return
    const kept: Headers = {}
    for (const name of KEPT_HEADERS) {
      const value = headers[name]
      if (value !== undefined) kept[name] = value
    }
    this.entries.set(keyOf(request.repository, digest), { body, headers: kept, mediaType })
    this.events.bytes?.(this.entries.calculatedSize)
  }

  /** A manifest delete through the gateway: the entry goes before the upstream is asked. */
  evict(request: RegistryRequest): void {
    if (request.op !== 'manifest.delete' || request.repository === undefined || !isDigest(request.reference)) return
    this.evictDigest(request.repository, request.reference as string)
    this.events.evicted?.(request.repository, request.reference as string)
  }

  /** Drops one manifest (deleted through another instance). */
  evictDigest(repository: string, digest: string): void {
    this.entries.delete(keyOf(repository, digest))
  }

  /** Drops everything (deletes elsewhere may have been missed). */
  clear(): void {
    this.entries.clear()
  }
}

function keyOf(repository: string, digest: string): string {
  return `${repository}@${digest}`
}

function isDigest(reference: string | undefined): boolean {
  return reference !== undefined && reference.includes(':')
}

export function mediaTypeOf(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value[0] : value
  return (text ?? '').split(';')[0]?.trim().toLowerCase() ?? ''
}

/** Whether the Accept header lists the media type itself (registry 2.8 reads only exact types, no wildcards). */
function accepts(accept: string | string[] | undefined, mediaType: string): boolean {
  const values = Array.isArray(accept) ? accept : accept === undefined ? [] : [accept]
  return values.some((value) => value.split(',').some((part) => mediaTypeOf(part) === mediaType))
}
