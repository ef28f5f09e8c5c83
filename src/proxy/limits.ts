// Upload size limits: which limit applies to a request, and a byte counter that stops a stream at it.
import { Transform, type TransformCallback } from 'node:stream'
import type { Config } from '../config/index.js'
import type { RegistryRequest } from '../registry/classify.js'
import { formatBytes } from '../config/index.js'

export type LimitName = 'blob_max_bytes' | 'manifest_max_bytes'

export interface SizeLimit {
  name: LimitName
  maxBytes: number
}

export interface Limits {
  /** The limit on this request's body, or undefined when none applies. */
  forRequest(request: RegistryRequest): SizeLimit | undefined
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')
  return new RegExp(`^${escaped.replace(/\u0000/g, '.*')}$`)
}

const bodyOps = new Set(['upload.chunk', 'upload.finish', 'upload.monolithic'])

export function createLimits(config: Config['limits']): Limits {
  const rules = config.repositories.map((rule) => ({ ...rule, pattern: globToRegExp(rule.match) }))
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
  }
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
