// The stop steps of a running gateway, run once, last started first.
export type StopStep = () => Promise<void> | void

/**
 * Each start-up step registers how to undo itself; close() undoes them in reverse. close() is idempotent:
 * every call (a signal and an internal error at once, a failed start then the caller's own close) gets
 * the one promise of the one run, so no step runs twice and none runs out of order.
 */
export class Shutdown {
  private readonly steps: StopStep[] = []
  private closing: Promise<void> | undefined
  private finished = false

  /**
   * Registers the undo of a step that has just started. A step that finishes starting after close() has
   * run (a start-up still under way when it was called) is undone at once, and close() then answers the
   * promise that covers it.
   */
  defer(step: StopStep): void {
    this.steps.push(step)
    if (this.closing && this.finished) {
      this.finished = false
      this.closing = this.closing.catch(() => undefined).then(() => this.run())
      // Whoever closed has had their answer; a failure of this late undo surfaces at the next close().
      this.closing.catch(() => undefined)
    }
  }

  get closed(): boolean {
    return this.closing !== undefined
  }

  close(): Promise<void> {
    this.closing ??= this.run()
    return this.closing
  }

  /**
   * Pops rather than iterates, so a step registered while closing (a start-up step still finishing) is
   * undone too. A step that fails does not keep the others from running (the embedded registry must stop
   * even if a listener would not close); the first failure is reported once all have run.
   */
  private async run(): Promise<void> {
    const failures: unknown[] = []
    for (let step = this.steps.pop(); step; step = this.steps.pop()) {
      try {
        await step()
      } catch (error) {
        failures.push(error)
      }
    }
    this.finished = true
    if (failures.length > 0) throw failures[0]
  }
}
