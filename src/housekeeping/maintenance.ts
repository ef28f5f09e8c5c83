// Maintenance mode: the read-only switch (why, since, by whom, expected end) and the writes in flight it waits for.

/** What the switch says now; times are ISO 8601. */
export interface MaintenanceStatus {
  on: boolean
  /** What refused writers are told and the UI's banner shows. */
  message: string
  since?: string
  /** Who switched it on: an admin user, "config" or "cli"/"ui" callers' names. */
  by?: string
  /** The expected end (an estimate for Retry-After: maintenance stays on until left). */
  until?: string
  /** Seconds a refused client is told to wait (Retry-After); absent when there is no expected end. */
  retryAfterSeconds?: number
  /** While on: until when uploads begun before maintenance may finish. */
  drainUntil?: string
  inFlight: InFlightWrites
}

export interface InFlightWrites {
  /** Upload sessions started (POST answered 202) and not yet finished or cancelled. */
  uploads: number
  /** Other write requests being served now (manifest PUTs, deletes, mounts, one-request uploads). */
  writes: number
}

export interface EnterOptions {
  message?: string
  by?: string
  /** Expected length from now; 0: no estimate. Undefined: the configured default. */
  retryAfterMs?: number
  /** How long uploads begun before may finish (their manifest PUTs too); undefined: maintenance.drain_timeout. A GC passes gc.drain_timeout, the time it waits for them. */
  drainTimeoutMs?: number
}

export interface MaintenanceChange {
  change: 'entered' | 'updated' | 'left'
  by: string | undefined
  status: MaintenanceStatus
}

export interface MaintenanceOptions {
  /** The message used when enter() is given none. */
  message: string
  /** The default expected length (0: none). */
  retryAfterMs: number
  /** How long uploads begun before maintenance may go on after it starts. */
  drainTimeoutMs: number
  /** Injected clock (tests). */
  now?: () => number
}

export interface DrainResult {
  /** Writes in flight when drain() began that finished during it. */
  finished: number
  /** Writes still in flight when it gave up; their uploads are refused from now on. */
  remaining: number
}

/** A push whose blobs are (partly) in: its manifest PUT follows. */
interface PushInFlight {
  lastBlob: number
  /** When a manifest was last stored in the repository. */
  manifestAt?: number
}

interface UploadSession {
  lastActivity: number
  /** The repository the session uploads to, when known: its push is in flight while the session is. */
  repository?: string
  /** Requests of this session being served now: never forgotten while one streams. */
  active: number
}

/**
 * A session nobody touched for this long is taken as abandoned (the client walked away without
 * cancelling): it stops counting as in flight. The registry itself keeps such uploads for days.
 */
const SESSION_IDLE_MS = 60 * 60_000
/** Sessions remembered at most (a flood of POSTs must not grow memory without bound). */
const MAX_SESSIONS = 10_000
/** A Retry-After is never below this, even when the expected end has passed: clients should not hammer. */
const MIN_RETRY_AFTER_S = 5
const DRAIN_POLL_MS = 100
/**
 * A client sends its manifest right after its last blob: a repository that got a blob within this
 * window and no manifest since has a push in flight, whose manifest PUT may still come in during the drain.
 */
const PUSH_MANIFEST_WINDOW_MS = 60_000
/** After a manifest, more may follow at once (an index after its children, several tags): the drain waits this long for them. */
const MANIFEST_QUIET_MS = 2_000

export class Maintenance {
  private on = false
  private message: string
  private since: number | undefined
  private by: string | undefined
  private until: number | undefined
  /** While on: uploads begun before may go on until then. */
  private drainDeadline = 0
  private readonly sessions = new Map<string, UploadSession>()
  /** By repository, in order of last activity. */
  private readonly pushes = new Map<string, PushInFlight>()
  private writes = 0
  private readonly listeners = new Set<(change: MaintenanceChange) => void>()
  private readonly now: () => number
  private readonly drainWaiters = new Set<() => void>()

  constructor(private readonly options: MaintenanceOptions) {
    this.message = options.message
    this.now = options.now ?? Date.now
  }

  get isOn(): boolean {
    return this.on
  }

  /** Switches writes off (or, when already on, updates the message and expected end; `since` stays). */
  enter(options: EnterOptions = {}): MaintenanceStatus {
    const now = this.now()
    const change = this.on ? 'updated' : 'entered'
    if (!this.on) {
      this.on = true
      this.since = now
      this.drainDeadline = now + (options.drainTimeoutMs ?? this.options.drainTimeoutMs)
    }
    this.message = options.message !== undefined && options.message.trim() !== '' ? options.message.trim() : this.options.message
    this.by = options.by
    const retryAfterMs = options.retryAfterMs ?? this.options.retryAfterMs
    this.until = retryAfterMs > 0 ? now + retryAfterMs : undefined
    return this.changed(change, options.by)
  }

  /**
   * Ends the window in which uploads and pushes begun before may go on (a collection is about to run):
   * from now on nothing is admitted. Announced like a switch, so the other instances close theirs too.
   */
  closeDrain(): MaintenanceStatus {
    if (!this.on) return this.status()
    this.drainDeadline = Math.min(this.drainDeadline, this.now())
    return this.changed('updated', this.by)
  }

  /** Switches writes back on. */
  leave(by?: string): MaintenanceStatus {
    if (!this.on) return this.status()
    this.on = false
    this.since = undefined
    this.until = undefined
    this.by = undefined
    this.message = this.options.message
    return this.changed('left', by)
  }

  status(): MaintenanceStatus {
    this.forgetIdleSessions()
    const status: MaintenanceStatus = { on: this.on, message: this.message, inFlight: this.inFlight() }
    if (!this.on) return status
    if (this.since !== undefined) status.since = new Date(this.since).toISOString()
    if (this.by !== undefined) status.by = this.by
    const retryAfter = this.retryAfterSeconds()
    if (this.until !== undefined && retryAfter !== undefined) {
      status.until = new Date(this.until).toISOString()
      status.retryAfterSeconds = retryAfter
    }
    status.drainUntil = new Date(this.drainDeadline).toISOString()
    return status
  }

  /** Seconds until the expected end (at least MIN_RETRY_AFTER_S), or undefined without one or while off. */
  retryAfterSeconds(): number | undefined {
    if (!this.on || this.until === undefined) return undefined
    return Math.max(MIN_RETRY_AFTER_S, Math.ceil((this.until - this.now()) / 1000))
  }

  /** Told of every enter, update and leave; returns the unsubscribe. A listener that throws is not the switch's problem. */
  onChange(listener: (change: MaintenanceChange) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  inFlight(): InFlightWrites {
    return { uploads: this.sessions.size, writes: this.writes }
  }

  // --- in-flight writes, told by the pipeline's maintenance stage ---

  /** A write request outside a known upload session is being served; call the returned function once when it is over. */
  writeStarted(): () => void {
    this.writes += 1
    let done = false
    return () => {
      if (done) return
      done = true
      this.writes -= 1
      this.wakeDrain()
    }
  }

  /** An upload session began (the registry answered the POST with its upload URL). */
  uploadStarted(uploadId: string, repository?: string): void {
    this.forgetIdleSessions()
    if (this.sessions.size >= MAX_SESSIONS) {
      // The least recently used session goes first: it is the likeliest to be abandoned.
      const oldest = this.sessions.keys().next()
      if (!oldest.done) this.sessions.delete(oldest.value)
    }
    this.sessions.set(uploadId, { lastActivity: this.now(), active: 0, ...(repository === undefined ? {} : { repository }) })
  }

  /** A request of a known session begins; returns its end, or undefined for a session this gateway did not see start. */
  uploadRequest(uploadId: string): (() => void) | undefined {
    const session = this.sessions.get(uploadId)
    if (!session) return undefined
    this.touch(uploadId, session)
    session.active += 1
    let done = false
    return () => {
      if (done) return
      done = true
      session.active -= 1
      if (this.sessions.get(uploadId) === session) this.touch(uploadId, session)
    }
  }

  /** The session finished (blob committed) or was cancelled: it no longer holds a drain. */
  uploadEnded(uploadId: string): void {
    if (this.sessions.delete(uploadId)) this.wakeDrain()
  }

  /** A blob was committed to the repository (an upload finished, a mount, a one-request upload): its push's manifest follows. */
  blobCommitted(repository: string): void {
    this.forgetStalePushes()
    const push = this.pushes.get(repository) ?? { lastBlob: 0 }
    push.lastBlob = this.now()
    this.pushes.delete(repository)
    if (this.pushes.size >= MAX_SESSIONS) {
      const oldest = this.pushes.keys().next()
      if (!oldest.done) this.pushes.delete(oldest.value)
    }
    this.pushes.set(repository, push)
  }

  /** A manifest was stored in the repository. */
  manifestStored(repository: string): void {
    const push = this.pushes.get(repository)
    if (push) push.manifestAt = this.now()
    this.wakeDrain()
  }

  /**
   * Whether a manifest PUT may go on: always while off; while on, only for a push in flight (a blob
   * committed to the repository within the last minute), until the drain deadline, so that a push
   * whose uploads were admitted can also store its image.
   */
  admitsManifest(repository: string | undefined): boolean {
    if (!this.on) return true
    return this.pushInFlight(repository)
  }

  /**
   * Whether a new upload (a POST, a mount, a one-request upload) may begin: always while off; while on,
   * only for a push in flight, until the drain deadline. A client pushes an image's blobs a few at a
   * time and its config blob after its layers (skopeo, podman, docker): those later uploads belong to
   * the push that was admitted, which would otherwise fail half-way.
   */
  admitsNewUpload(repository: string | undefined): boolean {
    if (!this.on) return true
    return this.pushInFlight(repository)
  }

  /** A blob committed to the repository within the last minute, or one of its upload sessions open, before the drain deadline. */
  private pushInFlight(repository: string | undefined): boolean {
    if (repository === undefined || this.now() >= this.drainDeadline) return false
    const push = this.pushes.get(repository)
    if (push !== undefined && this.now() - push.lastBlob < PUSH_MANIFEST_WINDOW_MS) return true
    this.forgetIdleSessions()
    for (const session of this.sessions.values()) if (session.repository === repository) return true
    return false
  }

  /** Whether a request of this upload session may go on: always while off; while on, only a session begun before, until the drain deadline. */
  admitsUpload(uploadId: string | undefined): boolean {
    if (!this.on) return true
    return uploadId !== undefined && this.sessions.has(uploadId) && this.now() < this.drainDeadline
  }

  /**
   * Waits until no write is in flight (upload sessions, writes being served, and pushes whose blobs
   * are in but whose manifests have not come yet), or `timeoutMs` has passed (default: the configured
   * drain timeout). While on, nothing begun before is admitted afterwards, so what runs next (a garbage
   * collection) cannot race it. `finished` and `remaining` count uploads and writes.
   */
  async drain(timeoutMs: number = this.options.drainTimeoutMs): Promise<DrainResult> {
    const startedWith = this.pending()
    const deadline = this.now() + timeoutMs
    while ((this.pending() > 0 || this.pushesAwaitingManifests() > 0) && this.now() < deadline) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          clearTimeout(timer)
          this.drainWaiters.delete(wake)
          resolve()
        }
        // Polled as well: an idle session is forgotten by the clock, not by an event.
        const timer = setTimeout(wake, Math.min(DRAIN_POLL_MS, Math.max(1, deadline - this.now())))
        this.drainWaiters.add(wake)
      })
      this.forgetIdleSessions()
    }
    const remaining = this.pending()
    if (this.on) this.drainDeadline = Math.min(this.drainDeadline, this.now())
    return { finished: Math.max(0, startedWith - remaining), remaining }
  }

  /** Pushes with a blob in and their manifest not yet stored (or stored a moment ago: more may follow). */
  private pushesAwaitingManifests(): number {
    this.forgetStalePushes()
    const now = this.now()
    let awaiting = 0
    for (const push of this.pushes.values()) {
      const manifestPending = (push.manifestAt === undefined || push.manifestAt < push.lastBlob) && now - push.lastBlob < PUSH_MANIFEST_WINDOW_MS
      const manifestsFollowing = push.manifestAt !== undefined && now - push.manifestAt < MANIFEST_QUIET_MS
      if (manifestPending || manifestsFollowing) awaiting += 1
    }
    return awaiting
  }

  private forgetStalePushes(): void {
    const stale = this.now() - PUSH_MANIFEST_WINDOW_MS
    for (const [repository, push] of this.pushes) {
      if (push.lastBlob > stale) break
      if ((push.manifestAt ?? 0) <= stale) this.pushes.delete(repository)
    }
  }

  private pending(): number {
    this.forgetIdleSessions()
    return this.sessions.size + this.writes
  }

  private wakeDrain(): void {
    for (const wake of [...this.drainWaiters]) wake()
  }

  /** Keeps the map in order of last activity: re-inserted on every touch. */
  private touch(uploadId: string, session: UploadSession): void {
    session.lastActivity = this.now()
    this.sessions.delete(uploadId)
    this.sessions.set(uploadId, session)
  }

  private forgetIdleSessions(): void {
    const stale = this.now() - SESSION_IDLE_MS
    for (const [uploadId, session] of this.sessions) {
      if (session.lastActivity > stale) break
      if (session.active === 0) this.sessions.delete(uploadId)
    }
  }

  private changed(change: MaintenanceChange['change'], by: string | undefined): MaintenanceStatus {
    const status = this.status()
    for (const listener of [...this.listeners]) {
      try {
        listener({ change, by, status })
      } catch {
        // A listener (a metric, a webhook) failing must not undo or block the switch; listeners log their own failures.
      }
    }
    return status
  }
}
