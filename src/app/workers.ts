// The primary process of server.workers > 1: runs the embedded registry once, forks the workers (node:cluster,
// one shared listening socket), holds their shared state, sums their metrics, restarts a worker that dies,
// and on SIGTERM/SIGINT drains them all before it stops the registry and exits.
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry } from 'prom-client'
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import { RegistryBinaryMissing, startEmbeddedRegistry, type EmbeddedRegistry } from '../embedded/registry.js'
import { SharedHost, type SharedMessage } from '../shared/ipc.js'
import { isWorkerMessage, METRICS_TAG, WORKER_TAG, WORKER_VARIABLE, type WorkerMessage, type WorkerRole } from './worker.js'

/** A worker that dies is started again after this, doubled for each death in a row, up to MAX_BACKOFF_MS. */
const FIRST_BACKOFF_MS = 250
const MAX_BACKOFF_MS = 10_000
/** A worker that served this long resets the backoff. */
const STABLE_MS = 60_000
/** How long the primary waits for a worker's metrics before it sums without them. */
const COLLECT_TIMEOUT_MS = 2000
/** Beyond server.drain_timeout: how long workers may take to stop before they are killed. */
const STOP_GRACE_MS = 10_000

/** A metric as a worker's registry gives it (prom-client's getMetricsAsJSON), as far as the sum reads it. */
interface MetricJson {
  name: string
  type: string
  aggregator?: string
}

interface Slot {
  role: WorkerRole
  worker?: Worker
  ready: boolean
  startedAt: number
  deaths: number
  detach?: () => void
}

export interface PrimaryOptions {
  /** Written to stderr: the operator's lines (the banner of worker 1 comes from it). */
  say: (line: string) => void
}

/** Runs until stopped by a signal; resolves with the exit code (0 after a drain, 1 when start-up failed, 3 without a registry binary). */
export async function runPrimary(config: Config, log: Logger, options: PrimaryOptions): Promise<number> {
  const count = config.server.workers
  let stopping = false
  let stopRequested: (() => void) | undefined
  const stopped = new Promise<void>((resolve) => {
    stopRequested = resolve
  })
  const signalled = (signal: NodeJS.Signals): void => {
    if (stopping) {
      options.say(`portier: second ${signal}: exiting now`)
      for (const slot of slots) slot.worker?.process.kill('SIGKILL')
      process.exit(1)
    }
    stopping = true
    log.info({ signal, workers: count }, 'shutting down: draining every worker')
    stopRequested?.()
  }
  process.on('SIGTERM', signalled)
  process.on('SIGINT', signalled)

  let embedded: EmbeddedRegistry | undefined
  if (config.upstreams.length === 0) {
    try {
      embedded = await startEmbeddedRegistry({
        binary: config.embedded_registry.binary,
        dataDir: config.embedded_registry.data_dir,
        maxBackoffMs: config.embedded_registry.restart_max_backoff,
        log,
      })
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error)
      log.fatal({ err: message }, 'start-up failed')
      options.say(`portier: start-up failed: ${message}`)
      return error instanceof RegistryBinaryMissing ? 3 : 1
    }
  }

  const host = config.shared.redis.url === '' ? new SharedHost() : undefined
  const slots: Slot[] = Array.from({ length: count }, (_, i) => {
    const role: WorkerRole = { index: i + 1, leader: i === 0, banner: i === 0 }
    if (embedded) role.embeddedUrl = embedded.url
    return { role, ready: false, startedAt: 0, deaths: 0 }
  })
  const collecting = new Map<number, { pending: Set<number>; results: Array<[number, MetricJson[]]>; done: () => void }>()
  let nextCollect = 1
  /** Each live worker's metrics as last summed into an answer. */
  const lastSummed = new Map<number, MetricJson[]>()
  /**
   * The counters and histograms of workers that died, as last summed: they stay in the sum, so a total never
   * goes down when a worker is replaced (Prometheus would read that as a counter reset and rate() would spike).
   */
  let retired: MetricJson[][] = []
  const retire = (workerId: number): void => {
    const last = lastSummed.get(workerId)
    lastSummed.delete(workerId)
    if (!last) return
    // Counters and histograms add up; a summary's quantiles would not (Portier registers none).
    retired.push(last.filter((entry) => entry.type === 'counter' || entry.type === 'histogram'))
  }

  /** Sums every ready worker's metrics (a worker that does not answer within COLLECT_TIMEOUT_MS is left out). */
  const gather = async (): Promise<{ contentType: string; body: string }> => {
    const id = nextCollect++
    const ready = slots.filter((slot) => slot.ready && slot.worker?.isConnected())
    const results: Array<[number, MetricJson[]]> = []
    await new Promise<void>((resolve) => {
      const pending = new Set(ready.map((slot) => slot.worker?.id ?? -1))
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS)
      const done = (): void => {
        clearTimeout(timer)
        resolve()
      }
      collecting.set(id, { pending, results, done })
      for (const slot of ready) slot.worker?.send({ tag: METRICS_TAG, op: 'collect', id } satisfies WorkerMessage)
      if (pending.size === 0) done()
    })
    collecting.delete(id)
    // A worker that answered and then died while the others were awaited is already retired (with what it gave last time):
    // its answer here would count it twice.
    const live = new Set(slots.filter((slot) => slot.worker?.isConnected()).map((slot) => slot.worker?.id))
    const summed = results.filter(([workerId]) => live.has(workerId))
    for (const [workerId, metrics] of summed) lastSummed.set(workerId, metrics)
    // Many deaths: their retired metrics are summed into one, so the list stays short.
    if (retired.length > 8) retired = [(await AggregatorRegistry.aggregate(retired).getMetricsAsJSON()).map((entry): MetricJson => ({ ...entry, type: String(entry.type) }))]
    const registry = AggregatorRegistry.aggregate([...summed.map(([, metrics]) => keepStates(metrics)), ...retired])
    return { contentType: registry.contentType, body: await registry.metrics() }
  }

  const onWorkerMessage = (slot: Slot, worker: Worker, message: unknown): void => {
    if (!isWorkerMessage(message)) return
    if (message.tag === WORKER_TAG && message.op === 'ready') {
      slot.ready = true
      slot.startedAt = Date.now()
      log.info({ worker: slot.role.index, pid: worker.process.pid, leader: slot.role.leader }, 'worker serving')
      readyListeners.get(slot)?.({ ready: true, url: message.url })
      return
    }
    if (message.tag !== METRICS_TAG) return
    if (message.op === 'collected') {
      const entry = collecting.get(message.id)
      if (!entry || !entry.pending.delete(worker.id)) return
      if (Array.isArray(message.metrics)) entry.results.push([worker.id, message.metrics as MetricJson[]])
      if (entry.pending.size === 0) entry.done()
    } else if (message.op === 'gather') {
      gather().then(
        (text) => worker.isConnected() && worker.send({ tag: METRICS_TAG, op: 'gathered', id: message.id, ...text } satisfies WorkerMessage),
        (error: unknown) => worker.isConnected() && worker.send({ tag: METRICS_TAG, op: 'gathered', id: message.id, contentType: 'text/plain', body: '', error: String(error) } satisfies WorkerMessage),
      )
    }
  }

  type Outcome = { ready: true; url: string } | { ready: false; code: number }
  const readyListeners = new Map<Slot, (outcome: Outcome) => void>()

  const fork = (slot: Slot): Promise<Outcome> => {
    const worker = cluster.fork({ [WORKER_VARIABLE]: JSON.stringify(slot.role) })
    slot.worker = worker
    slot.ready = false
    slot.startedAt = Date.now()
    if (host) {
      slot.detach = host.attach(`worker-${slot.role.index}-${worker.id}`, {
        send: (message: SharedMessage) => {
          if (worker.isConnected()) worker.send(message)
        },
        onMessage: (listener) => {
          worker.on('message', listener)
          return () => worker.off('message', listener)
        },
      })
    }
    worker.on('message', (message: unknown) => onWorkerMessage(slot, worker, message))
    // Sending to a worker that just died fails: its exit is handled below.
    worker.on('error', (error) => log.warn({ worker: slot.role.index, err: error.message }, 'worker channel error'))
    worker.on('exit', (code, signal) => {
      slot.detach?.()
      const wasReady = slot.ready
      slot.ready = false
      slot.worker = undefined
      readyListeners.get(slot)?.({ ready: false, code: code ?? 1 })
      for (const entry of collecting.values()) if (entry.pending.delete(worker.id) && entry.pending.size === 0) entry.done()
      retire(worker.id)
      if (stopping || !wasReady) {
        if (stopping) log.info({ worker: slot.role.index, pid: worker.process.pid, code, signal }, 'worker stopped')
        return
      }
      restart(slot, code, signal, worker.process.pid)
    })
    return new Promise((resolve) => {
      readyListeners.set(slot, (outcome) => {
        readyListeners.delete(slot)
        resolve(outcome)
      })
    })
  }

  const restart = (slot: Slot, code: number | null, signal: string | null, pid: number | undefined): void => {
    slot.deaths = Date.now() - slot.startedAt >= STABLE_MS ? 1 : slot.deaths + 1
    const delay = Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (slot.deaths - 1))
    log.error({ worker: slot.role.index, pid, code, signal, leader: slot.role.leader, restart_in_ms: delay }, 'worker exited unexpectedly; starting a new one')
    slot.role = { ...slot.role, banner: false }
    setTimeout(() => {
      if (stopping) return
      fork(slot).then((outcome) => {
        // One that dies before it serves is tried again, later each time.
        if (!outcome.ready && !stopping) restart(slot, outcome.code, null, undefined)
      }, () => undefined)
    }, delay).unref()
  }

  const stopWorkers = async (): Promise<void> => {
    stopping = true
    const alive = slots.flatMap((slot) => (slot.worker ? [slot.worker] : []))
    const exits = alive.map((worker) => new Promise<void>((resolve) => {
      if (worker.isDead()) return resolve()
      worker.once('exit', () => resolve())
    }))
    for (const worker of alive) {
      if (worker.isConnected()) worker.send({ tag: WORKER_TAG, op: 'stop' } satisfies WorkerMessage)
    }
    const timer = setTimeout(() => {
      for (const worker of alive) {
        if (worker.isDead()) continue
        log.error({ pid: worker.process.pid }, 'worker did not stop in time; killed')
        worker.process.kill('SIGKILL')
      }
    }, config.server.drain_timeout + STOP_GRACE_MS)
    await Promise.all(exits)
    clearTimeout(timer)
  }

  const finish = async (code: number): Promise<number> => {
    await stopWorkers()
    await embedded?.stop().catch((error: unknown) => log.error({ err: error instanceof Error ? error.message : String(error) }, 'stopping the embedded registry failed'))
    log.info({ code }, code === 0 ? 'stopped' : 'stopped after a failed start')
    log.flush()
    return code
  }

  // Worker 1 first: it creates what a first start creates (htpasswd, certificates, the store's tables), once.
  const [first, ...others] = slots as [Slot, ...Slot[]]
  const firstOutcome = await Promise.race([fork(first), stopped.then((): Outcome => ({ ready: false, code: 0 }))])
  if (!firstOutcome.ready) return finish(stopping ? 0 : firstOutcome.code)
  const outcomes = await Promise.race([Promise.all(others.map(fork)), stopped.then((): Outcome[] => [{ ready: false, code: 0 }])])
  const failed = outcomes.find((outcome) => !outcome.ready)
  if (failed && !failed.ready) return finish(stopping ? 0 : failed.code)
  log.info({ workers: count, url: firstOutcome.url, pid: process.pid }, 'portier ready: every worker serves')
  options.say(`portier: ${count} worker processes serving ${firstOutcome.url} (server.workers)`)
  await stopped
  return finish(0)
}

/**
 * Gauges of what each worker holds (requests and connections in flight, queued writes, its caches) are
 * summed like counters and histograms. The others say a state every worker sees alike (up, maintenance,
 * storage bytes, last run, certificate expiry): the highest value stands for all (a sum would say up = 2).
 */
function keepStates(metrics: MetricJson[]): MetricJson[] {
  return metrics.map((entry) => (entry.type === 'gauge' && entry.aggregator === 'sum' && !PER_WORKER_GAUGE.test(entry.name) ? { ...entry, aggregator: 'max' } : entry))
}

const PER_WORKER_GAUGE = /(?:_in_flight|_open_connections|_queued_writes|_cache_bytes|_cache_entries|_unstored|_stored_bytes)$/
