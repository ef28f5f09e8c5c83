// Webhooks: turns finished requests into registry:2 events, queues them per matching endpoint (persistently) and delivers them.
import { hostname } from 'node:os'
import { randomUUID } from 'node:crypto'
import { Counter, Gauge } from 'prom-client'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { Recorder } from '../observe/record.js'
import { compileGlob } from '../lib/glob.js'
import { EndpointDelivery } from './delivery.js'
import { eventsOf, systemEvent, type EventSource, type RegistryEvent } from './envelope.js'
import { storeQueue, type EventQueue, type QueuedEvent } from './queue.js'
import type { StoreEngine } from '../store/engine.js'
import { REGISTRY_ACTIONS, type EndpointConfig, type EventAction, type EventsConfig } from './section.js'

export { eventsSection, type EventsConfig } from './section.js'
export { eventFileProblems } from './files.js'

/** One endpoint's health, for the admin API, the CLI and the UI status panel. */
export interface EndpointStatus {
  name: string
  url: string
  disabled: boolean
  pending: number
  dead: number
  delivered: number
  failed: number
  /** Seconds since the last successful POST; undefined when there has been none. */
  lastSuccessAgeSeconds: number | undefined
  /** Seconds the endpoint has been failing without a success; undefined when it is not failing. */
  failingForSeconds: number | undefined
}

export interface Events {
  /** Queues a Portier event made outside a request (retention delete, gc) for the endpoints that asked for `action`. */
  publish(action: EventAction, target: RegistryEvent['target'], actor: string): void
  status(): Promise<EndpointStatus[]>
  /** The last status read, at once (the UI's status panel), with a fresh read started for the next call. */
  statusSnapshot(): EndpointStatus[]
  list(options: { endpoint?: string; dead?: boolean; limit?: number }): Promise<QueuedEvent[]>
  retry(endpoint?: string): Promise<number>
  /** Events made here and not yet in the store (it did not answer): they are retried in order. */
  readonly unstored: number
  close(): Promise<void>
}

/** Events waiting in memory for the store at most (beyond: the oldest are lost, counted in portier_events_lost_total). */
const MAX_UNSTORED = 10_000
const STORE_RETRY_MS = 1000
/** How long close() waits for the store to take what waits in memory. */
const CLOSE_DRAIN_MS = 5000

/** Whether `endpoint` wants `event`: registry:2's ignore lists, plus Portier's repository globs and opt-in actions. */
export function matcher(endpoint: EndpointConfig): (event: RegistryEvent) => boolean {
  const ignoredTypes = new Set([...endpoint.ignore.mediatypes, ...endpoint.ignoredmediatypes])
  const ignoredActions = new Set(endpoint.ignore.actions)
  const wanted = new Set<string>([...REGISTRY_ACTIONS, ...endpoint.actions])
  const globs = endpoint.repositories.map(compileGlob)
  return (event) => {
    if (!wanted.has(event.action) || ignoredActions.has(event.action)) return false
    if (event.target.mediaType !== undefined && ignoredTypes.has(event.target.mediaType)) return false
    if (globs.length === 0) return true
    const repository = event.target.repository
    // An event without a repository (a login) is not about any: repository filters do not hold it back.
    return repository === undefined || globs.some((glob) => glob.test(repository))
  }
}

export interface EventsDeps {
  recorder: Recorder
  metrics: Metrics | undefined
  log: Logger
  /** The main listener's port once it listens (registry:2's source.addr is host:port). */
  port: () => number
  /** Where undelivered events wait (tables migrated by the events module). */
  store: StoreEngine
  /** A queue other than the store's (tests). */
  queue?: EventQueue
}

/** Starts delivery for the configured endpoints; undefined when there are none (nothing is opened then). */
export function startEvents(config: EventsConfig, deps: EventsDeps): Events | undefined {
  if (config.endpoints.length === 0) return undefined
  const { log } = deps
  const queue = deps.queue ?? storeQueue(deps.store)
  const instanceID = randomUUID()
  const host = hostname()
  let source: EventSource = { addr: `${host}:${deps.port()}`, instanceID }
  // The port is known once the listener is up (port 0 in the config means any); the first request comes after that.
  const sourceNow = (): EventSource => {
    const addr = `${host}:${deps.port()}`
    if (addr !== source.addr) source = { addr, instanceID }
    return source
  }
  const counters = eventMetrics(deps.metrics, () => status())
  const observer = {
    delivered: (endpoint: string) => counters?.delivered.inc({ endpoint }),
    failed: (endpoint: string) => counters?.failed.inc({ endpoint }),
    deadLettered: (endpoint: string) => counters?.deadLettered.inc({ endpoint }),
  }
  const endpoints = config.endpoints.map((endpoint) => ({
    config: endpoint,
    wants: matcher(endpoint),
    // A disabled endpoint (registry:2's `disabled`) gets nothing queued and delivers nothing.
    delivery: endpoint.disabled ? undefined : new EndpointDelivery(endpoint, queue, log, observer, instanceID),
  }))

  // Events the store has not taken yet, oldest first: one writer drains them in order, so an endpoint's
  // events keep the order they were made in. While the store does not answer they wait here (at most
  // MAX_UNSTORED; beyond that the oldest are lost, counted and logged) and are retried every second.
  const unstored: Array<{ endpoint: (typeof endpoints)[number]; events: readonly RegistryEvent[] }> = []
  let draining: Promise<void> | undefined
  let storeFailing = false
  let stopped = false
  const drain = async (): Promise<void> => {
    let rounds = 0
    while (unstored.length > 0 && rounds++ < 1_000_000) {
      const head = unstored[0] as (typeof unstored)[number]
      try {
        await queue.add(head.endpoint.config.name, head.events)
      } catch (error) {
        if (!storeFailing) {
          storeFailing = true
          log.error({ err: error, endpoint: head.endpoint.config.name, waiting: unstored.length }, 'events: the store did not take new events; they wait in memory and are retried')
        }
        if (stopped) return
        await new Promise((resolve) => setTimeout(resolve, STORE_RETRY_MS).unref())
        continue
      }
      unstored.shift()
      if (storeFailing) {
        storeFailing = false
        log.info({ waiting: unstored.length }, 'events: the store takes new events again')
      }
      head.endpoint.delivery?.wake()
    }
  }
  const startDraining = (): void => {
    // drain() catches what queue.add() throws and nothing else in it can throw.
    draining ??= drain().finally(() => {
      draining = undefined
      if (unstored.length > 0 && !stopped) startDraining()
    })
  }

  function enqueue(events: readonly RegistryEvent[]): void {
    if (events.length === 0) return
    for (const endpoint of endpoints) {
      if (!endpoint.delivery) continue
      const matching = events.filter(endpoint.wants)
      if (matching.length === 0) continue
      if (unstored.length >= MAX_UNSTORED) {
        const lost = unstored.shift() as (typeof unstored)[number]
        // The request is already answered; the event is what is lost, and the log says which.
        log.error({ endpoint: lost.endpoint.config.name, events: lost.events.map((event) => ({ id: event.id, action: event.action, repository: event.target.repository, digest: event.target.digest })) }, 'events: the store has not answered for too long, events lost')
        counters?.lost.inc({ endpoint: lost.endpoint.config.name }, lost.events.length)
      }
      unstored.push({ endpoint, events: matching })
    }
    startDraining()
  }

  // Events queued for an endpoint since removed from the config stay in the store: said once, so they are not forgotten.
  const configured = new Set(config.endpoints.map((endpoint) => endpoint.name))
  queue
    .queuedEndpoints()
    .then((queued) => {
      for (const [name, count] of queued) {
        if (!configured.has(name)) log.warn({ endpoint: name, events: count }, 'events: queued for an endpoint no longer in events.endpoints (kept; add it back to deliver them)')
      }
    })
    .catch((error: unknown) => log.warn({ err: error }, 'events: could not list the queued endpoints'))

  const stopListening = deps.recorder.listen((finished) => enqueue(eventsOf(finished, sourceNow())))

  let snapshot: EndpointStatus[] = []
  let refreshing = false
  function statusSnapshot(): EndpointStatus[] {
    if (!refreshing) {
      refreshing = true
      status()
        .catch(() => snapshot)
        .finally(() => {
          refreshing = false
        })
        .catch(() => undefined)
    }
    return snapshot
  }

  async function status(): Promise<EndpointStatus[]> {
    const now = Date.now()
    snapshot = await Promise.all(endpoints.map(async ({ config: endpoint, delivery }) => {
      const counts = await queue.counts(endpoint.name)
      return {
        name: endpoint.name,
        url: redactUrl(endpoint.url),
        disabled: endpoint.disabled,
        pending: counts.pending,
        dead: counts.dead,
        delivered: counts.delivered,
        failed: counts.failed,
        lastSuccessAgeSeconds: counts.lastSuccessAt === undefined ? undefined : Math.max(0, (now - counts.lastSuccessAt) / 1000),
        failingForSeconds: delivery?.failingSince === undefined ? undefined : (now - delivery.failingSince) / 1000,
      }
    }))
    return snapshot
  }

  let closing: Promise<void> | undefined
  return {
    publish: (action, target, actor) => enqueue([systemEvent(action, target, actor, sourceNow())]),
    status,
    statusSnapshot,
    list: (options) => queue.list(options),
    get unstored() {
      return unstored.length
    },
    async retry(endpoint) {
      const count = await queue.retry(endpoint)
      for (const entry of endpoints) if (endpoint === undefined || entry.config.name === endpoint) entry.delivery?.wake()
      return count
    },
    close: () =>
      (closing ??= (async () => {
        stopListening()
        // What the store takes within a moment is kept; the rest is said (it is lost with this process).
        const deadline = Date.now() + CLOSE_DRAIN_MS
        while (unstored.length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
        stopped = true
        if (unstored.length > 0) {
          log.error({ events: unstored.reduce((sum, entry) => sum + entry.events.length, 0) }, 'events: shutting down with events the store did not take; they are lost')
          for (const entry of unstored) counters?.lost.inc({ endpoint: entry.endpoint.config.name }, entry.events.length)
        }
        await Promise.all(endpoints.map((endpoint) => endpoint.delivery?.close() ?? Promise.resolve()))
      })()),
  }
}

/** Credentials in an endpoint URL stay out of status pages and logs. */
function redactUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.username || parsed.password) {
      parsed.username = 'redacted'
      parsed.password = ''
    }
    return parsed.toString()
  } catch {
    return url
  }
}

/** Per-endpoint metrics, registered on Portier's registry; the queue's gauges are read at scrape time. */
export function eventMetrics(metrics: Metrics | undefined, status: () => Promise<EndpointStatus[]>) {
  if (!metrics) return undefined
  const registers = [metrics.registry]
  const gauge = (name: string, help: string, value: (endpoint: EndpointStatus) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['endpoint'],
      registers,
      async collect() {
        this.reset()
        // A store that does not answer leaves the gauges out of this scrape rather than failing it.
        const endpoints = await status().catch(() => [])
        for (const endpoint of endpoints) {
          const current = value(endpoint)
          if (current !== undefined) this.set({ endpoint: endpoint.name }, current)
        }
      },
    })
  }
  gauge('portier_events_pending', 'Events queued for the endpoint and not yet delivered (dead letters excluded).', (endpoint) => endpoint.pending)
  gauge('portier_events_dead_letters', 'Events moved to the dead-letter list after events.endpoints[].deadletter_after (portier events retry sends them again).', (endpoint) => endpoint.dead)
  gauge('portier_events_last_success_age_seconds', 'Seconds since a POST to the endpoint last succeeded (absent before the first).', (endpoint) => endpoint.lastSuccessAgeSeconds)
  return {
    delivered: new Counter({ name: 'portier_events_delivered_total', help: 'Events the endpoint accepted (2xx or 3xx).', labelNames: ['endpoint'], registers }),
    failed: new Counter({ name: 'portier_events_failed_attempts_total', help: 'POSTs to the endpoint that failed (error status, timeout, no connection); each is retried.', labelNames: ['endpoint'], registers }),
    deadLettered: new Counter({ name: 'portier_events_dead_lettered_total', help: 'Events moved to the dead-letter list.', labelNames: ['endpoint'], registers }),
    lost: new Counter({ name: 'portier_events_lost_total', help: 'Events that could not be queued: the store did not take them before more than 10000 waited, or before shutdown.', labelNames: ['endpoint'], registers }),
  }
}
