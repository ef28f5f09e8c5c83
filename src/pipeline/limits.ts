// Upload size limits: which limit applies to a request, and a byte counter that stops a stream at it.
import { Transform, type TransformCallback } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import type { LimitsConfig } from './section.js'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { formatBytes } from '../config/index.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { compileGlob } from '../lib/glob.js'

export type LimitName = 'blob_max_bytes' | 'manifest_max_bytes'

export interface SizeLimit {
  name: LimitName
  maxBytes: number
}

export interface Limits {
  /** The limit on this request's body, or undefined when none applies. */
  forRequest(request: RegistryRequest): SizeLimit | undefined
  /**
   * The target repository's blob limit for a cross-repository mount (which has no body to count):
   * the source blob's size must be checked against it before the registry links the blob in.
   */
  forMount(request: RegistryRequest): SizeLimit | undefined
}

const bodyOps = new Set(['upload.chunk', 'upload.finish', 'upload.monolithic'])

export function createLimits(config: LimitsConfig): Limits {
  const rules = config.repositories.map((rule) => ({ ...rule, pattern: compileGlob(rule.match) }))
  const valueFor = (name: LimitName, repository: string): number => {
    const rule = rules.find((candidate) => candidate.pattern.test(repository) && candidate[name] !== undefined)
    return rule?.[name] ?? config[name]
  }
  return {
    forRequest(request) {
      if (!request.repository) return undefined
      let name: LimitName
      if (request.op === 'manifest.put') name = 'manifest_max_bytes'
      else if (bodyOps.has(request.op)) name = 'blob_max_bytes'
      else return undefined
      const maxBytes = valueFor(name, request.repository)
      return maxBytes > 0 ? { name, maxBytes } : undefined
    },
    forMount(request) {
      if (request.op !== 'upload.mount' || !request.repository || !request.mountFrom) return undefined
      const maxBytes = valueFor('blob_max_bytes', request.repository)
      return maxBytes > 0 ? { name: 'blob_max_bytes', maxBytes } : undefined
    },
  }
}

/**
 * Refuses a cross-repository mount whose source blob is larger than the target's limit: a mount
 * links the blob without a body, so it would bypass the limit a direct push of the same blob meets.
 * The size comes from a HEAD of the source blob on the upstream that would serve its reads. When
 * the source does not have the blob (or does not answer 200), the registry will not mount either:
 * it starts an ordinary upload, whose body the limit stage counts.
 */
export async function checkMountSize(request: RegistryRequest, limit: SizeLimit, upstream: Upstream, clientHeaders: IncomingHttpHeaders): Promise<void> {
  const headers: Record<string, string> = {}
  // The same credentials the mount itself will carry (the client's token covers pull on the source).
  const clientAuthorization = clientHeaders.authorization
  if (upstream.forwardAuthorization && clientAuthorization) headers.authorization = clientAuthorization
  if (upstream.authorization) headers.authorization = upstream.authorization
  let answer
  try {
    answer = await upstream.pool.request({
      origin: upstream.origin,
      method: 'HEAD',
      path: `/v2/${request.mountFrom}/blobs/${request.reference}`,
      headers,
      reset: false,
    })
  } catch (error) {
    throw new RegistryError('UNAVAILABLE', { upstream: upstream.name, reason: error instanceof Error ? error.message : String(error) }, {}, 'could not check the size of the blob to mount', { cause: error })
  }
  answer.body.on('error', () => undefined)
  answer.body.resume()
  if (answer.statusCode !== 200) return
  const length = Number(answer.headers['content-length'])
  if (!Number.isFinite(length) || length <= limit.maxBytes) return
  throw new RegistryError(
    'TOO_LARGE',
    { limit: limit.name, max_bytes: limit.maxBytes, bytes: length, mount: request.reference, from: request.mountFrom },
    {},
    `blob to mount (${formatBytes(length)}) exceeds ${limit.name} ${formatBytes(limit.maxBytes)} of ${request.repository}`,
  )
}

export class LimitExceeded extends Error {
  readonly limit: SizeLimit
  readonly bytes: number
  constructor(limit: SizeLimit, bytes: number, declared: boolean) {
    super(`${declared ? 'declared size' : 'upload'} ${formatBytes(bytes)} exceeds ${limit.name} ${formatBytes(limit.maxBytes)}`)
    this.limit = limit
    this.bytes = bytes
  }
}

/** Counts bytes passing through and, with a limit, fails the stream as soon as `alreadyStored + passed` would exceed it. */
export class ByteLimitStream extends Transform {
  private passed = 0
  constructor(private readonly limit: SizeLimit | undefined, private readonly alreadyStored: number) {
    super({ highWaterMark: 1 << 20 })
  }

  /** Bytes passed so far. */
  get bytes(): number {
    return this.passed
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.passed += chunk.length
    const total = this.alreadyStored + this.passed
    if (this.limit && total > this.limit.maxBytes) {
      callback(new LimitExceeded(this.limit, total, false))
      return
    }
    callback(null, chunk)
  }
}
