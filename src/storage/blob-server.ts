// Answers blob GET/HEAD from an upstream's filesystem storage with the registry's own headers, or says the registry must answer.
import type { ExchangeResult, RouteContext } from '../forward/forward.js'
import { ClientGone } from '../forward/relay-body.js'
import type { RegistryRequest } from '../registry/classify.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { openLinkedBlob, type FallbackReason } from './linked-blob.js'
import { planRange } from './ranges.js'
import { sendFile } from './send-file.js'

/**
 * Bytes per file read, each one write to the TLS socket. Measured over TLS with curl, 256 MiB,
 * alternating rounds on a loaded 2-core machine (BENCHMARKS.md, "Blobs from storage"): 1 MiB reads
 * were the slowest in every series; 64, 128 and 256 KiB within the noise.
 */
export const READ_CHUNK_BYTES = 256 * 1024

/** What blob-from-storage reads did, for metrics and the log. */
export interface BlobStorageEvents {
  /** The blob was answered from storage (status 200, 206 or 416). */
  served?(upstream: string, status: number): void
  /** Body bytes sent from storage. */
  bytes?(upstream: string, count: number): void
  /** The registry answers instead; `error` is set for an I/O failure worth a log line. */
  fallback?(upstream: string, reason: FallbackReason | 'range', error?: unknown): void
}

/** ServeContent's 416 body (Go's http.Error adds the newline). */
const NO_OVERLAP_BODY = 'invalid range: failed to overlap\n'

export function isBlobRead(request: RegistryRequest): boolean {
  return request.op === 'blob.get' || request.op === 'blob.head'
}

export class BlobStorage {
  constructor(private readonly events: BlobStorageEvents = {}) {}

  /**
   * Serves the blob from `upstream.storage` when the repository links it; resolves undefined (nothing
   * sent) when the registry must answer: no link, no file, an odd Range, an I/O error before headers.
   */
  async serve(upstream: Upstream, request: RegistryRequest, context: RouteContext): Promise<ExchangeResult | undefined> {
    const root = upstream.storage
    if (root === undefined || !isBlobRead(request) || request.repository === undefined || request.reference === undefined) return undefined
    const opened = await openLinkedBlob(root, request.repository, request.reference)
    if (opened.kind === 'fallback') {
      this.events.fallback?.(upstream.name, opened.reason, opened.error)
      return undefined
    }
    const { handle, size } = opened
    const served = `storage:${upstream.name}`
    const { req, res } = context
    const plan = planRange(req.headers, size)
    if (plan.kind === 'registry') {
      await handle.close().catch(() => undefined)
      this.events.fallback?.(upstream.name, 'range')
      return undefined
    }
    req.resume() // a body on a GET means nothing to a registry: discard it
    if (res.destroyed) {
      await handle.close().catch(() => undefined)
      return { status: 499, served }
    }
    // The registry names the digest the data is stored under (sha256 for a blob asked for by its sha512).
    const digest = opened.digest
    // The registry's headers for a blob (blobserver.go + ServeContent), in its order; Date is Node's.
    res.setHeader('Cache-Control', 'max-age=31536000')
    res.setHeader('Docker-Content-Digest', digest)
    res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0')
    res.setHeader('ETag', `"${digest}"`)
    if (plan.kind === 'unsatisfiable') {
      await handle.close().catch(() => undefined)
      // ServeContent writes this answer under the blob's own Content-Length (a framing error); the body's length here.
      res.writeHead(416, {
        'Content-Range': `bytes */${size}`,
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(NO_OVERLAP_BODY),
      })
      res.end(request.method === 'HEAD' ? undefined : NO_OVERLAP_BODY)
      this.events.served?.(upstream.name, 416)
      return { status: 416, served }
    }
    const start = plan.kind === 'part' ? plan.start : 0
    const end = plan.kind === 'part' ? plan.end : size - 1
    const length = end - start + 1
    const status = plan.kind === 'part' ? 206 : 200
    res.writeHead(status, {
      'Accept-Ranges': 'bytes',
      'Content-Length': length,
      'Content-Type': 'application/octet-stream',
      ...(plan.kind === 'part' ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
    })
    this.events.served?.(upstream.name, status)
    if (request.method === 'HEAD' || length === 0) {
      await handle.close().catch(() => undefined)
      res.end()
      return { status, served }
    }
    try {
      await sendFile(res, handle, start, length, READ_CHUNK_BYTES, (count) => {
        context.bytes.sent += count
        this.events.bytes?.(upstream.name, count)
      })
    } catch (error) {
      // A client that leaves is no failure of the storage (nor of the registry): the access log's bytes_out says how far it got.
      // (It is also what a client closing right after the last byte can look like, before Node reports the response finished.)
      if (error instanceof ClientGone) return { status: 499, served }
      throw error
    } finally {
      await handle.close().catch(() => undefined)
    }
    return { status, served }
  }
}
