// Starts an upload's disk writes while its body is still arriving, so the datasync that ends the request has little left to write.
import type { FileHandle } from 'node:fs/promises'

/**
 * Bytes written since the last early flush that start the next one. The kernel starts writing dirty
 * pages on its own only past vm.dirty_background_ratio (10 % of memory: gigabytes), so without this a
 * 16 MiB PATCH or a 512 MiB PUT reached the final datasync with all of it still in the page cache,
 * and the client waited for the disk after the last byte (as it does at the registry).
 */
export const WRITEBACK_BYTES = 4 * 1024 * 1024

/**
 * Early flushes in flight in the whole process. A datasync holds one of libuv's pool threads until
 * the disk is done; at most one early flush keeps the pool free for reads, writes and password checks
 * whatever the number of uploads. An upload that finds it taken tries again after its next write.
 */
let inFlight = 0

/**
 * One upload's early flushes. `written(end)` after each write that reached the file: it throws the
 * error of an early flush that failed, so the upload stops at its next write instead of reading the rest
 * of the body; `settled()` before the final datasync (and before the file is cut back or closed): it
 * waits for the flush in flight and throws the first flush error. A failed datasync reports a
 * write-back error once per open file, so an early flush that saw it must pass it on: the final one
 * might not see it again.
 */
export class EarlyWriteback {
  private startedAt: number
  private running: Promise<void> | undefined
  private failure: { error: unknown } | undefined

  constructor(
    private readonly handle: FileHandle,
    from: number,
    private readonly everyBytes = WRITEBACK_BYTES,
  ) {
    this.startedAt = from
  }

  written(end: number): void {
    if (this.failure !== undefined) throw this.failure.error
    if (this.running !== undefined || this.failure !== undefined || inFlight > 0 || end - this.startedAt < this.everyBytes) return
    this.startedAt = end
    inFlight++
    // Called in a promise chain: even a datasync that threw at once gives the slot back.
    this.running = Promise.resolve().then(() => this.handle.datasync()).then(
      () => undefined,
      (error: unknown) => {
        this.failure ??= { error }
      },
    ).finally(() => {
      inFlight--
      this.running = undefined
    })
  }

  async settled(): Promise<void> {
    await this.running
    if (this.failure !== undefined) throw this.failure.error
  }
}
