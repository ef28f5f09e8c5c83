// The last few image pushes (manifest PUTs that succeeded), kept in memory for the status panel.

export interface PushEvent {
  at: string
  user?: string | undefined
  repository: string
  reference?: string | undefined
  /** The manifest digest the registry stored. */
  digest?: string | undefined
}

export class RecentPushes {
  private readonly events: PushEvent[] = []

  constructor(private readonly capacity = 50) {}

  add(event: PushEvent): void {
    this.events.push(event)
    if (this.events.length > this.capacity) this.events.shift()
  }

  /** Newest first. */
  list(limit = this.capacity): PushEvent[] {
    return this.events.slice(-limit).reverse()
  }
}
