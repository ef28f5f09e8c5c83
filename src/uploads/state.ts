// Upload sessions as the gateway sees them: the stored offset from distribution's `_state`, and a request body that can stop cleanly.
import type { IncomingMessage } from 'node:http'
import { Readable } from 'node:stream'
import { streamedBytes } from '../lib/young-gc.js'
import { LimitExceeded, type SizeLimit } from '../pipeline/limits.js'

const HMAC_BYTES = 32

/**
 * The number of bytes the upstream holds for an upload session, read from distribution's `_state`
 * query parameter (base64url of a 32-byte HMAC followed by `{"Name","UUID","Offset","StartedAt"}`).
 * The registry verifies the HMAC and refuses the request when Offset differs from what it stores,
 * so an Offset it accepts is exact. Undefined when the parameter is absent or not in that format.
 */
export function stateOffset(state: string | null | undefined): number | undefined {
  if (!state) return undefined
  const raw = Buffer.from(state, 'base64url')
  if (raw.length <= HMAC_BYTES || raw[HMAC_BYTES] !== 0x7b) return undefined
  try {
    const offset = (JSON.parse(raw.subarray(HMAC_BYTES).toString('utf8')) as { Offset?: unknown }).Offset
    return typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0 ? offset : undefined
  } catch {
    return undefined
  }
}

export type StopReason = 'limit' | 'client'

/**
 * Bytes of the client's body this gateway queues for an upstream (per upstream when an upload is
 * mirrored) before it stops reading the client's request; the rest waits in the request's own buffer
 * (about one socket read) and the kernel's socket buffers. Chunks queued here for longer than two young
 * collections move to V8's old generation, and their malloc memory then waits for a full one: with
 * 1 MiB the 16 concurrent relayed uploads of `npm run bench` queued up to 2–9 MiB near their ends and
 * peaked at 149–150 MB, against 141 MB with 64 KiB (0–0.1 MiB queued); 256 KiB gave 150–154
 * (BENCHMARKS.md, "Peak RSS").
 */
export const UPLOAD_QUEUE_BYTES = 64 * 1024

/**
 * The client's upload body on its way upstream. When the size limit is crossed or the client goes
 * away, it ends cleanly instead of failing: the upstream then closes the chunk normally and answers
 * with a fresh session state, which is what lets the gateway cancel the session reliably (a broken
 * upstream request leaves distribution with a session whose offset no state can match).
 */
export class UploadBody extends Readable {
  stopped: StopReason | undefined
  exceeded: LimitExceeded | undefined
  private passed = 0
  private ended = false

  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: SizeLimit | undefined,
    private readonly alreadyStored: number,
  ) {
    super({ highWaterMark: UPLOAD_QUEUE_BYTES })
    req.on('data', this.onData)
    req.once('end', () => {
      this.ended = true
      if (!this.stopped) this.push(null)
    })
    const gone = (): void => {
      if (!this.ended && !req.complete) this.stop('client')
    }
    req.once('aborted', gone)
    req.once('error', gone)
    req.once('close', gone)
  }

  /** Bytes of this request passed upstream. */
  get bytes(): number {
    return this.passed
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.stopped) return
    const total = this.alreadyStored + this.passed + chunk.length
    if (this.limit && total > this.limit.maxBytes) {
      this.exceeded = new LimitExceeded(this.limit, total, false)
      this.stop('limit')
      return
    }
    this.passed += chunk.length
    streamedBytes(chunk.length)
    if (!this.push(chunk)) this.req.pause()
  }

  override _read(): void {
    if (!this.stopped && !this.ended) this.req.resume()
  }

  /** Lets go of the client's request when the upstream answered before taking the whole body. */
  release(): void {
    if (this.ended || this.stopped) return
    this.req.off('data', this.onData)
    this.destroy()
  }

  private stop(reason: StopReason): void {
    this.stopped = reason
    this.req.off('data', this.onData)
    this.req.pause()
    this.push(null)
  }
}
