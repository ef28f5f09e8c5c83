// What gateway instances share while they run: the small interfaces the features use, whatever engine keeps the state.

/** Whether the engine is reachable, for /readyz, the metric and the UI. */
export interface SharedStatus {
  /** "local": this process only (no shared.redis.url); "redis": Redis or Valkey; "cluster": the primary process of server.workers. */
  engine: 'local' | 'redis' | 'cluster'
  /** Reachable now (always true for local). */
  up: boolean
  /** When it last went up or down (ISO 8601). */
  since: string
  /** Why it is down: the last error seen. */
  error?: string
  /** While down: what the features do instead. */
  fallback?: string
}

/** A rule for counted events: `limit` hits within `windowMs` (from the first) lock the key for `lockMs`. */
export interface CounterRule {
  limit: number
  windowMs: number
  lockMs: number
}

/**
 * A request rate as a token bucket (GCRA): one request's worth refills every `intervalMs`, and at most
 * `burst` requests go through at once. "600 per minute, burst 600" is intervalMs 100, burst 600.
 */
export interface RateRule {
  intervalMs: number
  burst: number
}

/** Counters with lockouts, seen by every instance (the login throttle; rate limits). */
export interface Counters {
  /** Counts one hit; resolves with the milliseconds the key is now locked for (0: not locked). Rejects when the engine is unreachable. */
  hit(key: string, rule: CounterRule): Promise<number>
  /** The longest remaining lock among `keys` in milliseconds, 0 when none. Rejects when the engine is unreachable. */
  lockedFor(keys: readonly string[]): Promise<number>
  /** Forgets the count of `key` (a lock already set stays until it ends). */
  reset(key: string): Promise<void>
  /**
   * Takes one request from the bucket `key` under `rule`: resolves 0 when it went through, else the
   * milliseconds until one would (nothing is taken then). Rejects when the engine is unreachable.
   */
  take(key: string, rule: RateRule): Promise<number>
}

/**
 * Revoked identifiers by kind ("ui-session", "access-token", ...) until they would have expired anyway.
 * Checked synchronously against this instance's copy, which the engine keeps current.
 */
export interface Revocations {
  /** Revokes at once here, then tells every instance; resolves when they can see it (or the engine is down: then only here). Never rejects. */
  revoke(kind: string, id: string, untilMs: number): Promise<void>
  /**
   * Whether `id` is revoked. Fail safe: also true while the engine has been unreachable for longer than
   * shared.redis.stale_after, when revocations made elsewhere may be missing here.
   */
  isRevoked(kind: string, id: string, now?: number): boolean
}

/**
 * Messages between instances on named topics. An instance does not get its own messages: it has
 * already done the work locally. A resync listener hears when messages may have been missed (the
 * engine was unreachable): drop what they would have invalidated.
 */
export interface Bus {
  /** Sends to the other instances; fire and forget (lost while the engine is down, followed by a resync there). */
  publish(topic: string, message: string): void
  subscribe(topic: string, listener: (message: string) => void): () => void
  onResync(listener: () => void): () => void
}

/**
 * Named values every instance follows (the maintenance switch): set here, seen by the others at once,
 * and by an instance that starts or reconnects later. While the engine is down each keeps the last known value.
 */
export interface SharedValues {
  /** Stores and announces; resolves when stored (or the engine is down: then only this instance has it). Never rejects. */
  set(name: string, value: string): Promise<void>
  /** Told of values set by other instances, and of the stored value on (re)connect when it differs from the last one told. */
  watch(name: string, listener: (value: string) => void): () => void
}

/** A lock across instances that expires unless its holder renews it (the ACME order lock, scheduled housekeeping). */
export interface Locks {
  /** Tries once; resolves with the held lock, or undefined when another holder has it. Rejects when the engine is unreachable. */
  tryAcquire(name: string, ttlMs: number): Promise<HeldSharedLock | undefined>
  /**
   * Claims turn `turn` (a scheduled time, ms since the epoch) of the job `name`: true for the first instance
   * to claim it or a later turn, false for every other (the turn already ran elsewhere). Rejects when the engine is unreachable.
   */
  claimTurn(name: string, turn: number): Promise<boolean>
}

export interface HeldSharedLock {
  release(): Promise<void>
}

/** The shared state, one per gateway process; src/app hands the parts to the features. */
export interface SharedState {
  readonly engine: 'local' | 'redis' | 'cluster'
  readonly counters: Counters | undefined
  readonly revocations: Revocations
  readonly bus: Bus
  readonly values: SharedValues
  /** Undefined without a shared engine: features keep their own (the ACME lock file). */
  readonly locks: Locks | undefined
  status(): SharedStatus
  /** Resolves true once the engine is reached, false when it was not within shared.redis.connect_timeout (start-up goes on). */
  connected(): Promise<boolean>
  /** Told when the engine goes up or down. */
  onStatus(listener: (status: SharedStatus) => void): () => void
  close(): Promise<void>
}
