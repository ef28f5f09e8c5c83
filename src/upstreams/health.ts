// Upstream health: active `GET /v2/` checks on a timer plus passive reports of connect failures and timeouts, one state per upstream.
import type { Upstream } from './upstreams.js'

/** A failing or down upstream is checked again this soon (or at `interval` when that is shorter): it is marked down, and back up, in seconds. */
const RECHECK_MS = 1000

export interface HealthOptions {
  /** Time between checks of one upstream, in ms. */
  interval: number
  /** A check that has not answered within this many ms failed. */
  timeout: number
  /** Consecutive failures (checks or connect errors) that mark an upstream down. */
  failureThreshold: number
  /** Consecutive successful checks that mark a down upstream up again. */
  successThreshold: number
}

/** unknown: not checked yet (routing still uses it; readiness waits for the first answer). */
export type HealthState = 'unknown' | 'up' | 'down'

export interface UpstreamHealth {
  name: string
  url: string
  state: HealthState
  /** ISO time of the last state change. */
  since: string
  lastCheck?: { at: string; ok: boolean; status?: number; error?: string; ms: number }
  consecutiveFailures: number
}

export interface HealthEvents {
  onCheck?(upstream: Upstream, ok: boolean): void
  onChange?(upstream: Upstream, state: HealthState, previous: HealthState, reason: string): void
  /** A check failed in an unexpected way (a bug, not the upstream): checking goes on at the next interval. */
  onInternalError?(upstream: Upstream, error: unknown): void
}

interface Tracked {
  upstream: Upstream
  health: UpstreamHealth
  successes: number
  timer?: NodeJS.Timeout
  checking: boolean
  /** A passive failure was counted and its immediate check has not run yet: more reports wait for that check. */
  passivePending?: boolean
}

/** A registry answering `GET /v2/` with 200 (open) or 401 (asks for credentials) is serving. */
export function isHealthyStatus(status: number): boolean {
  return status === 200 || status === 401
}

export class HealthMonitor {
  private readonly tracked: Map<Upstream, Tracked>
  private closed = false

  constructor(upstreams: Upstream[], private readonly options: HealthOptions, private readonly events: HealthEvents = {}) {
    const now = new Date().toISOString()
    this.tracked = new Map(
      upstreams.map((upstream) => [
        upstream,
        { upstream, successes: 0, checking: false, health: { name: upstream.name, url: upstream.origin, state: 'unknown', since: now, consecutiveFailures: 0 } },
      ]),
    )
  }

  /** Checks every upstream now, then every interval. */
  start(): void {
    for (const entry of this.tracked.values()) this.schedule(entry, 0)
  }

  /** Routing's view: a down upstream is skipped; one not checked yet is assumed to work. */
  isAvailable(upstream: Upstream): boolean {
    return this.tracked.get(upstream)?.health.state !== 'down'
  }

  stateOf(upstream: Upstream): HealthState {
    return this.tracked.get(upstream)?.health.state ?? 'unknown'
  }

  /**
   * Up, its last check answered `GET /v2/` with 200 (not 401: it asks for credentials, so its own
   * answer matters), and a connection to it is open right now: what lets the gateway answer `GET /v2/`
   * itself for this upstream. A registry that exited closed its connections, so the first request
   * after it died is still forwarded (and answered 503) instead of waiting for the next check.
   */
  answersOpenly(upstream: Upstream): boolean {
    const health = this.tracked.get(upstream)?.health
    return health?.state === 'up' && health.lastCheck?.status === 200 && upstream.pool.stats.connected > 0
  }

  snapshot(): UpstreamHealth[] {
    return [...this.tracked.values()].map((entry) => ({ ...entry.health }))
  }

  /**
   * A request to this upstream could not connect: counts like a failed check (passive ejection).
   * Ignored while a check is running: that check meets the same failure (its own request reports here too).
   */
  reportConnectFailure(upstream: Upstream, reason: string): void {
    this.reportFailure(upstream, reason)
  }

  /**
   * A request to this upstream got no response headers in time: it may have stopped answering
   * (a stopped or hung process still accepts connections). Counts like a failed check and checks
   * now, so that new requests fail fast instead of waiting for the same timeout.
   */
  reportTimeout(upstream: Upstream, reason: string): void {
    // A timeout may only mean a slow answer (a large finish): requests that time out together count once,
    // then the immediate check decides. A refused connection is plain evidence and always counts.
    const entry = this.tracked.get(upstream)
    if (!entry || entry.passivePending) return
    this.reportFailure(upstream, reason)
    if (!entry.checking) entry.passivePending = true
  }

  private reportFailure(upstream: Upstream, reason: string): void {
    const entry = this.tracked.get(upstream)
    if (!entry || entry.checking) return
    this.failed(entry, reason)
    clearTimeout(entry.timer)
    this.schedule(entry, 0)
  }

  /** Checks this upstream now instead of at its next turn (it is known to have come back); resolves when the check is done. */
  async checkNow(upstream: Upstream): Promise<void> {
    const entry = this.tracked.get(upstream)
    if (!entry || this.closed) return
    clearTimeout(entry.timer)
    if (entry.checking) {
      // The running check may have started before the upstream came back: the next one decides.
      this.schedule(entry, 0)
      return
    }
    try {
      await this.check(entry)
    } catch (error) {
      entry.checking = false
      this.events.onInternalError?.(entry.upstream, error)
      this.schedule(entry, this.options.interval)
    }
  }

  close(): void {
    this.closed = true
    for (const entry of this.tracked.values()) clearTimeout(entry.timer)
  }

  private schedule(entry: Tracked, delay: number): void {
    if (this.closed) return
    entry.timer = setTimeout(() => {
      this.check(entry).catch((error: unknown) => {
        entry.checking = false
        this.events.onInternalError?.(entry.upstream, error)
        this.schedule(entry, this.options.interval)
      })
    }, delay)
    entry.timer.unref()
  }

  private async check(entry: Tracked): Promise<void> {
    if (entry.checking) return
    entry.checking = true
    entry.passivePending = false
    const started = performance.now()
    const { upstream } = entry
    let status: number | undefined
    let error: string | undefined
    try {
      const response = await upstream.healthPool.request({
        origin: upstream.origin,
        method: 'GET',
        path: '/v2/',
        headers: upstream.authorization ? { authorization: upstream.authorization } : {},
        signal: AbortSignal.timeout(this.options.timeout),
        headersTimeout: this.options.timeout,
      })
      status = response.statusCode
      await response.body.dump()
      if (!isHealthyStatus(status)) error = `GET /v2/ answered ${status}`
    } catch (caught) {
      error = describe(caught)
    } finally {
      entry.checking = false
    }
    if (this.closed) return
    const ok = error === undefined
    entry.health.lastCheck = {
      at: new Date().toISOString(),
      ok,
      ...(status !== undefined ? { status } : {}),
      ...(error !== undefined ? { error } : {}),
      ms: Math.round((performance.now() - started) * 10) / 10,
    }
    this.events.onCheck?.(upstream, ok)
    if (ok) this.succeeded(entry)
    else this.failed(entry, error ?? 'failed')
    const failing = entry.health.consecutiveFailures > 0 || entry.health.state === 'down'
    this.schedule(entry, failing ? Math.min(this.options.interval, RECHECK_MS) : this.options.interval)
  }

  private succeeded(entry: Tracked): void {
    entry.health.consecutiveFailures = 0
    entry.successes += 1
    const { state } = entry.health
    if (state === 'unknown' || (state === 'down' && entry.successes >= this.options.successThreshold)) {
      this.change(entry, 'up', 'health check passed')
    }
  }

  private failed(entry: Tracked, reason: string): void {
    entry.successes = 0
    entry.health.consecutiveFailures += 1
    const { state } = entry.health
    if (state !== 'down' && entry.health.consecutiveFailures >= this.options.failureThreshold) this.change(entry, 'down', reason)
  }

  private change(entry: Tracked, state: HealthState, reason: string): void {
    const previous = entry.health.state
    entry.health.state = state
    entry.health.since = new Date().toISOString()
    this.events.onChange?.(entry.upstream, state, previous, reason)
  }
}

function describe(error: unknown): string {
  const code = (error as { code?: unknown; cause?: { code?: unknown } } | undefined)
  const name = typeof code?.code === 'string' ? code.code : typeof code?.cause?.code === 'string' ? code.cause.code : undefined
  if (error instanceof Error && error.name === 'TimeoutError') return 'timeout'
  return name ?? (error instanceof Error ? error.message : String(error))
}
