// Delivers one endpoint's queue: oldest first, one event per POST, at least once; retries with registry:2's threshold/backoff, then dead letters. With a shared store, only the instance holding the endpoint's lease delivers it.
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import type { Logger } from '../observe/log.js'
import { EVENTS_MEDIA_TYPE, envelope } from './envelope.js'
import type { EventQueue, QueuedEvent } from './queue.js'
import type { EndpointConfig } from './section.js'
import { SIGNATURE_HEADER, readSecret, sign } from './signature.js'

/** How an attempt went, for metrics and logs. */
export interface DeliveryObserver {
  delivered(endpoint: string): void
  failed(endpoint: string): void
  deadLettered(endpoint: string): void
}

/** When nothing is pending: look again this often (`portier events retry` from another process puts events back). */
const IDLE_POLL_MS = 1_000

/**
 * The wait before the next attempt after `failures` failures in a row: registry:2 retries at once until `threshold`
 * failures, then backs off; here the backoff doubles with each further failure, up to max_backoff.
 */
export function retryDelay(failures: number, endpoint: Pick<EndpointConfig, 'threshold' | 'backoff' | 'max_backoff'>): number {
  if (failures < endpoint.threshold) return 0
  const doublings = Math.min(failures - endpoint.threshold, 30)
  return Math.min(endpoint.backoff * 2 ** doublings, Math.max(endpoint.max_backoff, endpoint.backoff))
}

export class EndpointDelivery {
  private readonly agent: Agent
  private readonly secret: Buffer | undefined
  private readonly headers: Record<string, string>
  private running = true
  private failures = 0
  private timer: NodeJS.Timeout | undefined
  private wakeUp: (() => void) | undefined
  private inFlight: AbortController | undefined
  private readonly loop: Promise<void>
  /** Until when (local clock) this instance may deliver without renewing its lease: half the lease, so a renewal is never late. */
  private claimedUntil = 0
  /** An event the receiver took whose removal from the queue has not been committed yet (the store was away): removed before anything else. */
  private unconfirmed: number | undefined
  /** The store did not answer: said once, and once when it answers again. */
  private storeFailing = false
  /** How long a lease lasts: longer than two POST timeouts, so a holder renewing before each POST never loses it mid-POST. */
  readonly leaseMs: number
  /** When the current run of failures began (undefined while deliveries succeed). */
  failingSince: number | undefined

  constructor(
    readonly endpoint: EndpointConfig,
    private readonly queue: EventQueue,
    private readonly log: Logger,
    private readonly observer: DeliveryObserver,
    /** This instance, as the lease names it. */
    private readonly holder = 'this-instance',
  ) {
    this.leaseMs = Math.max(30_000, 2 * endpoint.timeout + 10_000)
    const ca = endpoint.tls.ca_file ? readFileSync(endpoint.tls.ca_file) : undefined
    this.agent = new Agent({
      connect: { ...(ca ? { ca } : {}), rejectUnauthorized: !endpoint.tls.insecure_skip_verify },
      allowH2: false,
    })
    this.secret = endpoint.secret_file ? readSecret(endpoint.secret_file) : undefined
    // registry:2 sends every value of a header; joined here as HTTP allows for repeated fields.
    this.headers = Object.fromEntries(Object.entries(endpoint.headers).map(([name, values]) => [name.toLowerCase(), values.join(', ')]))
    this.loop = this.run()
  }

  /** New events are queued: stop waiting if idle (a backoff is kept). */
  wake(): void {
    if (this.failures === 0) this.wakeUp?.()
  }

  async close(): Promise<void> {
    this.running = false
    this.inFlight?.abort()
    this.wakeUp?.()
    await this.loop
    if (this.claimedUntil > 0) await this.queue.release(this.endpoint.name, this.holder).catch(() => undefined)
    await this.agent.close().catch(() => undefined)
  }

  /** Whether this instance delivers the endpoint now: its lease is fresh, or renewed (or taken) here. */
  private async holds(): Promise<boolean> {
    if (Date.now() < this.claimedUntil) return true
    const claimed = Date.now()
    const held = await this.queue.claim(this.endpoint.name, this.holder, this.leaseMs)
    this.claimedUntil = held ? claimed + this.leaseMs / 2 : 0
    return held
  }

  private storeTrouble(error: unknown, doing: string): void {
    if (this.storeFailing) return
    this.storeFailing = true
    this.log.error({ err: error, endpoint: this.endpoint.name }, `events: ${doing} failed; delivery waits for the store`)
  }

  private storeAnswers(): void {
    if (!this.storeFailing) return
    this.storeFailing = false
    this.log.info({ endpoint: this.endpoint.name }, 'events: the store answers again; delivery goes on')
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(this.timer)
        this.wakeUp = undefined
        resolve()
      }
      this.wakeUp = done
      // Delivery alone never keeps the process up: the listeners do, and close() ends the wait.
      this.timer = setTimeout(done, ms).unref()
    })
  }

  private async run(): Promise<void> {
    while (this.running) {
      let head: QueuedEvent | undefined
      try {
        if (this.unconfirmed !== undefined) {
          // Already delivered: removed now, never sent again.
          await this.queue.delivered(this.endpoint.name, this.unconfirmed)
          this.unconfirmed = undefined
        }
        if (!(await this.holds())) {
          // Another instance delivers this endpoint; look again in a while (it may stop).
          this.storeAnswers()
          await this.sleep(IDLE_POLL_MS)
          continue
        }
        head = (await this.queue.next(this.endpoint.name, 1))[0]
        this.storeAnswers()
      } catch (error) {
        this.storeTrouble(error, 'reading the queue')
        await this.sleep(IDLE_POLL_MS)
        continue
      }
      if (!head) {
        await this.sleep(IDLE_POLL_MS)
        continue
      }
      await this.attempt(head)
    }
  }

  private async attempt(head: QueuedEvent): Promise<void> {
    const problem = await this.post(head)
    if (!this.running && problem !== undefined) return
    try {
      if (problem === undefined) {
        this.unconfirmed = head.seq
        await this.queue.delivered(this.endpoint.name, head.seq)
        this.unconfirmed = undefined
        if (this.failures > 0) this.log.info({ endpoint: this.endpoint.name, failures: this.failures }, 'events: endpoint is receiving again')
        this.failures = 0
        this.failingSince = undefined
        this.observer.delivered(this.endpoint.name)
        return
      }
      this.failures += 1
      this.failingSince ??= Date.now()
      this.observer.failed(this.endpoint.name)
      const attempts = await this.queue.failed(this.endpoint.name, head.seq, problem)
      if (Date.now() - head.queuedAt >= this.endpoint.deadletter_after) {
        await this.queue.deadLetter(this.endpoint.name, head.seq, problem)
        this.observer.deadLettered(this.endpoint.name)
        this.log.error({ endpoint: this.endpoint.name, event_id: head.event.id, attempts, error: problem }, 'events: undelivered after deadletter_after, moved to the dead-letter list')
        return
      }
      // Logged when the breaker opens, not on every retry of a receiver that is down.
      if (this.failures === this.endpoint.threshold) this.log.warn({ endpoint: this.endpoint.name, url: this.endpoint.url, error: problem, failures: this.failures }, 'events: endpoint failing, backing off')
    } catch (error) {
      this.storeTrouble(error, 'updating the queue')
      // The receiver took it: counted once, whatever the store says.
      if (this.unconfirmed !== undefined) {
        this.failures = 0
        this.failingSince = undefined
        this.observer.delivered(this.endpoint.name)
        await this.sleep(IDLE_POLL_MS)
        return
      }
    }
    const delay = retryDelay(this.failures, this.endpoint)
    if (delay > 0) await this.sleep(delay)
  }

  /** POSTs one envelope; undefined when the receiver took it (any 2xx or 3xx, as registry:2 counts), else why not. */
  private async post(head: QueuedEvent): Promise<string | undefined> {
    const body = envelope([head.event])
    const controller = new AbortController()
    this.inFlight = controller
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${this.endpoint.timeout} ms (timeout)`)), this.endpoint.timeout)
    try {
      const response = await request(this.endpoint.url, {
        method: 'POST',
        dispatcher: this.agent,
        signal: controller.signal,
        headers: {
          ...this.headers,
          'content-type': EVENTS_MEDIA_TYPE,
          ...(this.secret ? { [SIGNATURE_HEADER.toLowerCase()]: sign(this.secret, body) } : {}),
        },
        body,
      })
      await response.body.dump()
      return response.statusCode >= 200 && response.statusCode < 400 ? undefined : `HTTP ${response.statusCode}`
    } catch (error) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : error
      return reason instanceof Error ? reason.message : String(reason)
    } finally {
      clearTimeout(timer)
      this.inFlight = undefined
    }
  }
}
