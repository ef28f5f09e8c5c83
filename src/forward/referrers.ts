// The OCI 1.1 referrers API in front of a registry without one: OCI-Subject on manifest PUTs that name a subject, the subject's referrers kept in the spec's fallback tag, GET /referrers/<digest> served from it.
import { createHash } from 'node:crypto'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { isValidDigest } from '../registry/names.js'
import { drain, pathOf, readJson, tooLarge, upstreamFailure, type Exchange, type ExchangeResult, type Forwarder, type UpstreamResponse } from './forward.js'
import { LimitExceeded } from '../pipeline/limits.js'
import { BodyIncomplete, readCapped, readPrefix } from '../lib/body.js'

export const MT_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MT_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

/** Read when no manifest limit is configured: registry 2.8 refuses larger manifests anyway. */
const DEFAULT_MANIFEST_CAP = 4 * 1024 * 1024

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

export interface ReferrersIndex {
  schemaVersion: 2
  mediaType: typeof MT_OCI_INDEX
  manifests: Descriptor[]
}

export interface ReferrersEvents {
  /** The referrer was stored but the subject's index could not be updated. */
  indexFailed?(repository: string, subject: string, reason: string): void
}

/** The spec's fallback tag for a subject: `<alg>-<first 64 characters of the encoded digest>`. */
export function fallbackTag(digest: string): string {
  const at = digest.indexOf(':')
  const algorithm = digest.slice(0, at).replace(/[^a-zA-Z0-9_.-]/g, '-')
  return `${algorithm}-${digest.slice(at + 1, at + 1 + 64)}`
}

export function emptyIndex(): ReferrersIndex {
  return { schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests: [] }
}

/** A manifest PUT the gateway reads to find a subject: OCI manifests and indexes (docker's cannot have one). */
export function mayHaveSubject(request: RegistryRequest, contentType: string | undefined): boolean {
  const type = contentType?.split(';')[0]?.trim()
  return request.op === 'manifest.put' && (type === MT_OCI_MANIFEST || type === MT_OCI_INDEX)
}

/** The subject digest and the descriptor a referrers index lists for a manifest, or undefined when it names no subject. */
export function referrerOf(body: Buffer, mediaType: string): { subject: string; descriptor: Descriptor } | undefined {
  let manifest: { subject?: { digest?: unknown }; artifactType?: unknown; config?: { mediaType?: unknown }; annotations?: unknown; mediaType?: unknown }
  try {
    manifest = JSON.parse(body.toString('utf8')) as typeof manifest
  } catch {
    return undefined
  }
  if (typeof manifest !== 'object' || manifest === null) return undefined
  const subject = manifest.subject?.digest
  if (typeof subject !== 'string' || !isValidDigest(subject)) return undefined
  const descriptor: Descriptor = {
    mediaType: typeof manifest.mediaType === 'string' ? manifest.mediaType : mediaType,
    digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
    size: body.length,
  }
  // The spec: the manifest's artifactType, else its config's media type.
  const artifactType = typeof manifest.artifactType === 'string' ? manifest.artifactType : manifest.config?.mediaType
  if (typeof artifactType === 'string') descriptor.artifactType = artifactType
  const annotations = manifest.annotations
  if (typeof annotations === 'object' && annotations !== null && !Array.isArray(annotations)) {
    const strings = Object.entries(annotations).filter((entry): entry is [string, string] => typeof entry[1] === 'string')
    if (strings.length > 0) descriptor.annotations = Object.fromEntries(strings)
  }
  return { subject, descriptor }
}

/** Keeps the descriptors whose artifactType is the one asked for (the spec's only filter). */
export function filterByArtifactType(index: ReferrersIndex, artifactType: string | null): { index: ReferrersIndex; filtered: boolean } {
  if (artifactType === null) return { index, filtered: false }
  return { index: { ...index, manifests: index.manifests.filter((entry) => entry.artifactType === artifactType) }, filtered: true }
}

export class Referrers {
  /** One index update at a time per subject, so two referrers pushed together both end up listed. */
  private readonly updates = new Map<string, Promise<void>>()

  constructor(
    private readonly forwarder: Forwarder,
    private readonly events: ReferrersEvents = {},
  ) {}

  /**
   * GET /v2/<name>/referrers/<digest>: the upstream's own answer when it has the API (200), else the
   * fallback tag's index, else an empty index (the spec: never 404 for a valid digest).
   */
  async list(exchange: Exchange): Promise<ExchangeResult> {
    const { request, res } = exchange
    exchange.req.resume()
    const own = await this.send(exchange, 'GET', pathOf(request), null, { accept: MT_OCI_INDEX })
    if (own.statusCode === 200) {
      await this.forwarder.relay(exchange, own)
      return { status: 200 }
    }
    drain(own)
    const found = await this.readIndex(exchange, request.reference as string)
    const { index, filtered } = filterByArtifactType(found ?? emptyIndex(), request.params.get('artifactType'))
    const body = Buffer.from(JSON.stringify(index))
    const headers: Record<string, string> = {
      'content-type': MT_OCI_INDEX,
      'content-length': String(body.length),
      'docker-distribution-api-version': 'registry/2.0',
    }
    if (filtered) headers['oci-filters-applied'] = 'artifactType'
    res.writeHead(200, headers)
    exchange.bytes.sent += body.length
    res.end(body)
    return { status: 200 }
  }

  /** A manifest PUT: read (small), stored upstream, and when it names a subject, listed in the subject's index. */
  async putManifest(exchange: Exchange): Promise<ExchangeResult> {
    const { request, req, res } = exchange
    const body = await readManifest(exchange)
    const contentType = req.headers['content-type'] ?? MT_OCI_MANIFEST
    const stored = await this.send(exchange, 'PUT', pathOf(request), body, { 'content-type': contentType, 'content-length': String(body.length) })
    const referrer = stored.statusCode === 201 ? referrerOf(body, contentType.split(';')[0]?.trim() ?? MT_OCI_MANIFEST) : undefined
    if (referrer) {
      await this.add(exchange, referrer)
      res.setHeader('OCI-Subject', referrer.subject)
    }
    await this.forwarder.relay(exchange, stored)
    return { status: stored.statusCode }
  }

  /** Lists a stored referrer in its subject's index on the exchange's upstream (the mirror calls it for every upstream that stored it). */
  async add(exchange: Exchange, referrer: { subject: string; descriptor: Descriptor }): Promise<void> {
    await this.update(exchange, referrer.subject, (manifests) => [...manifests.filter((entry) => entry.digest !== referrer.descriptor.digest), referrer.descriptor])
  }

  /** A manifest DELETE by digest: when the manifest named a subject, it leaves the subject's index too. */
  async deleteManifest(exchange: Exchange): Promise<ExchangeResult> {
    const { request } = exchange
    exchange.req.resume()
    const digest = request.reference as string
    const subject = await this.subjectOf(exchange)
    const deleted = await this.send(exchange, 'DELETE', pathOf(request), null, {})
    if (deleted.statusCode === 202 && subject !== undefined) await this.drop(exchange, subject, digest)
    await this.forwarder.relay(exchange, deleted)
    return { status: deleted.statusCode }
  }

  /** The subject the manifest the request names (by digest) refers to, read from the exchange's upstream; undefined when none. */
  async subjectOf(exchange: Exchange): Promise<string | undefined> {
    const { request } = exchange
    const current = await this.send(exchange, 'GET', `/v2/${request.repository}/manifests/${request.reference}`, null, { accept: `${MT_OCI_MANIFEST}, ${MT_OCI_INDEX}` })
    if (current.statusCode !== 200) {
      drain(current)
      return undefined
    }
    // Only a hint for the index: a manifest that cannot be read is still deleted.
    const body = await readSmall(current).catch(() => undefined)
    return body ? referrerOf(body, MT_OCI_MANIFEST)?.subject : undefined
  }

  /** Takes a deleted referrer out of its subject's index on the exchange's upstream. */
  async drop(exchange: Exchange, subject: string, digest: string): Promise<void> {
    await this.update(exchange, subject, (manifests) => manifests.filter((entry) => entry.digest !== digest))
  }

  /** Rewrites the subject's fallback-tag index under a per-subject lock; failures are reported, never the client's. */
  private async update(exchange: Exchange, subject: string, change: (manifests: Descriptor[]) => Descriptor[]): Promise<void> {
    const repository = exchange.request.repository as string
    const key = `${exchange.upstream.name}\n${repository}\n${subject}`
    const previous = this.updates.get(key) ?? Promise.resolve()
    const run = previous.then(async () => {
      const index = (await this.readIndex(exchange, subject)) ?? emptyIndex()
      const next: ReferrersIndex = { schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests: change(index.manifests) }
      const body = Buffer.from(JSON.stringify(next))
      const put = await this.send(exchange, 'PUT', `/v2/${repository}/manifests/${fallbackTag(subject)}`, body, { 'content-type': MT_OCI_INDEX, 'content-length': String(body.length) })
      drain(put)
      if (put.statusCode !== 201) throw new Error(`the registry answered ${put.statusCode} to the index PUT`)
    }).catch((error: unknown) => {
      this.events.indexFailed?.(repository, subject, error instanceof Error ? error.message : String(error))
    })
    this.updates.set(key, run)
    try {
      await run
    } finally {
      if (this.updates.get(key) === run) this.updates.delete(key)
    }
  }

  /** The index under the subject's fallback tag, or undefined when there is none. */
  private async readIndex(exchange: Exchange, subject: string): Promise<ReferrersIndex | undefined> {
    const response = await this.send(exchange, 'GET', `/v2/${exchange.request.repository}/manifests/${fallbackTag(subject)}`, null, { accept: MT_OCI_INDEX })
    if (response.statusCode !== 200) {
      drain(response)
      return undefined
    }
    const parsed = (await readJson(response)) as { manifests?: unknown }
    const manifests = Array.isArray(parsed.manifests)
      ? parsed.manifests.filter((entry): entry is Descriptor => typeof entry === 'object' && entry !== null && typeof (entry as Descriptor).digest === 'string')
      : []
    return { schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests }
  }

  private async send(exchange: Exchange, method: string, path: string, body: Buffer | null, headers: Record<string, string>): Promise<UpstreamResponse> {
    try {
      return await this.forwarder.send(exchange, method, path, body, 'none', undefined, headers)
    } catch (error) {
      throw upstreamFailure(error, exchange.upstream)
    }
  }
}

/**
 * The client's manifest body, within the manifest limit (413 beyond it, as for streamed manifests).
 * The rest of an overlong body is discarded, not destroyed: the connection carries the 413 back.
 */
function readManifest(exchange: Exchange): Promise<Buffer> {
  const { req, limit } = exchange
  const cap = limit?.maxBytes ?? DEFAULT_MANIFEST_CAP
  const declared = req.headers['content-length']
  if (limit && declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit.maxBytes) {
    return Promise.reject(tooLarge(new LimitExceeded(limit, Number(declared), true)))
  }
  const overCap = (size: number): Error => (limit ? tooLarge(new LimitExceeded(limit, size, false)) : new RegistryError('MANIFEST_INVALID', { max_bytes: cap }, {}, 'manifest too large'))
  const onChunk = (chunk: Buffer): void => {
    exchange.bytes.received += chunk.length
  }
  return readCapped(req, { maxBytes: cap, tooLarge: overCap, rest: 'discard', onChunk }).catch((error: unknown) => {
    throw error instanceof BodyIncomplete ? new Error('client closed the connection before sending the whole manifest') : error
  })
}

/** A small upstream body (a manifest), or undefined when it is larger than any manifest may be. */
async function readSmall(response: UpstreamResponse): Promise<Buffer | undefined> {
  const { head, bytes } = await readPrefix(response.body, DEFAULT_MANIFEST_CAP)
  return bytes <= DEFAULT_MANIFEST_CAP ? head : undefined
}
