// One read of a request body written to several upstream requests, paced by the slowest of them.
import { PassThrough, type Readable } from 'node:stream'

/**
 * Feeds every chunk of `source` to each live branch. When any branch's buffer is full the source
 * pauses until all of those have drained, so memory stays at one buffer per branch and the
 * slowest upstream sets the pace. A branch that is dropped (its upstream failed or answered early)
 * or destroyed stops counting, and the others carry on.
 */
export class FanOut {
  readonly branches: PassThrough[]
  private readonly waiting = new Set<PassThrough>()
  private readonly dropped = new Set<PassThrough>()

  constructor(private readonly source: Readable, count: number, highWaterMark: number) {
    this.branches = Array.from({ length: count }, () => new PassThrough({ highWaterMark }))
    for (const branch of this.branches) {
      branch.on('error', () => undefined)
      branch.once('close', () => this.release(branch))
    }
    source.on('data', this.onData)
    source.once('end', () => {
      for (const branch of this.live()) branch.end()
    })
    // 'on', not 'once': a source that fails twice must not throw the second time.
    source.on('error', (error) => {
      for (const branch of this.live()) branch.destroy(error)
    })
  }

  /** Stops feeding one branch; the source no longer waits for it. */
  drop(index: number): void {
    const branch = this.branches[index]
    if (!branch || this.dropped.has(branch)) return
    this.dropped.add(branch)
    branch.destroy()
    this.release(branch)
  }

  private live(): PassThrough[] {
    return this.branches.filter((branch) => !this.dropped.has(branch) && !branch.destroyed)
  }

  private readonly onData = (chunk: Buffer): void => {
    for (const branch of this.live()) {
      if (!branch.write(chunk) && !this.waiting.has(branch)) {
        this.waiting.add(branch)
        branch.once('drain', () => this.release(branch))
      }
    }
    if (this.waiting.size > 0) this.source.pause()
  }

  private release(branch: PassThrough): void {
    if (this.waiting.delete(branch) && this.waiting.size === 0) this.source.resume()
  }
}
