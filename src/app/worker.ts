// A worker process of server.workers: its role from the primary, the parts the primary holds for it (shared
// state, the embedded registry, the /metrics sum), and the lifecycle messages (ready, stop).
import cluster from 'node:cluster'
import type { Registry } from 'prom-client'
import type { Config } from './config.js'
import type { WorkerParts } from './index.js'
import { createIpcShared, type IpcChannel, type SharedMessage } from '../shared/ipc.js'
import { isRecord } from '../lib/is-record.js'

/** The variable the primary gives each worker its role in (JSON); src/config/load.ts reserves it. */
export const WORKER_VARIABLE = 'PORTIER_WORKER'
export const WORKER_TAG = 'portier:worker'
export const METRICS_TAG = 'portier:metrics'

export interface WorkerRole {
  /** 1..server.workers; a restarted worker keeps the number of the one it replaces. */
  index: number
  /** Runs what must run once: GC and retention schedules, the store's start-up scan. */
  leader: boolean
  /** Prints the start-up banner (the first start of worker 1 only). */
  banner: boolean
  /** The embedded registry the primary runs, when no upstreams are configured. */
  embeddedUrl?: string
}

/** Lifecycle and metrics messages between the primary and a worker. */
export type WorkerMessage =
  | { tag: typeof WORKER_TAG; op: 'ready'; url: string; port: number }
  | { tag: typeof WORKER_TAG; op: 'stop' }
  | { tag: typeof METRICS_TAG; op: 'gather'; id: number }
  | { tag: typeof METRICS_TAG; op: 'gathered'; id: number; contentType: string; body: string; error?: string }
  | { tag: typeof METRICS_TAG; op: 'collect'; id: number }
  | { tag: typeof METRICS_TAG; op: 'collected'; id: number; metrics: unknown }

export function isWorkerMessage(message: unknown): message is WorkerMessage {
  return isRecord(message) && (message.tag === WORKER_TAG || message.tag === METRICS_TAG) && typeof message.op === 'string'
}

/** This process's role when the primary of server.workers started it; undefined for a process on its own. */
export function workerRole(): WorkerRole | undefined {
  if (!cluster.isWorker) return undefined
  const text = process.env[WORKER_VARIABLE]
  if (text === undefined) return undefined
  const parsed = JSON.parse(text) as unknown
  if (!isRecord(parsed) || typeof parsed.index !== 'number') throw new Error(`${WORKER_VARIABLE}: not a worker role: ${text}`)
  const role: WorkerRole = { index: parsed.index, leader: parsed.leader === true, banner: parsed.banner === true }
  if (typeof parsed.embeddedUrl === 'string') role.embeddedUrl = parsed.embeddedUrl
  return role
}

/** The other workers leave to the leader what runs once: schedules (GC, retention, usage samples) and the store scan. */
export function workerConfig(config: Config, role: WorkerRole): Config {
  if (role.leader) return config
  return {
    ...config,
    gc: { ...config.gc, schedule: '', usage_interval: 0 },
    retention: { ...config.retention, schedule: '' },
    store: { ...config.store, scan: false },
  }
}

function send(message: WorkerMessage | SharedMessage): void {
  if (process.connected) process.send?.(message)
}

/** The worker's end of the IPC channel. */
export function primaryChannel(): IpcChannel {
  return {
    send,
    onMessage(listener) {
      process.on('message', listener)
      return () => process.off('message', listener)
    },
  }
}

/** What the primary holds for this worker: shared state (unless shared.redis), the embedded registry, the /metrics sum. */
export function workerParts(config: Config, role: WorkerRole): WorkerParts {
  const parts: WorkerParts = {
    onMetrics: (metrics) => {
      serveCollect(metrics.registry)
      metrics.exposeWith(gatherFromPrimary)
    },
  }
  if (config.shared.redis.url === '') parts.shared = createIpcShared(primaryChannel())
  if (role.embeddedUrl !== undefined) parts.embeddedUrl = role.embeddedUrl
  return parts
}

/** Answers the primary's requests for this worker's metrics (prom-client's JSON form, which the primary sums). */
function serveCollect(registry: Registry): void {
  process.on('message', (message: unknown) => {
    if (!isWorkerMessage(message) || message.tag !== METRICS_TAG || message.op !== 'collect') return
    registry.getMetricsAsJSON().then(
      (metrics) => send({ tag: METRICS_TAG, op: 'collected', id: message.id, metrics }),
      () => send({ tag: METRICS_TAG, op: 'collected', id: message.id, metrics: [] }),
    )
  })
}

let nextGather = 1
const GATHER_TIMEOUT_MS = 5000

/** /metrics in a worker: the primary asks every worker and answers the sum. */
function gatherFromPrimary(): Promise<{ contentType: string; body: string }> {
  const id = nextGather++
  return new Promise((resolve, reject) => {
    const done = (message: unknown): void => {
      if (!isWorkerMessage(message) || message.tag !== METRICS_TAG || message.op !== 'gathered' || message.id !== id) return
      clearTimeout(timer)
      process.off('message', done)
      if (message.error !== undefined) reject(new Error(message.error))
      else resolve({ contentType: message.contentType, body: message.body })
    }
    const timer = setTimeout(() => {
      process.off('message', done)
      reject(new Error(`the primary process did not answer within ${GATHER_TIMEOUT_MS} ms`))
    }, GATHER_TIMEOUT_MS)
    process.on('message', done)
    send({ tag: METRICS_TAG, op: 'gather', id })
  })
}

/** Tells the primary this worker serves (it starts the next one, and prints its own line). */
export function announceReady(url: string, port: number): void {
  send({ tag: WORKER_TAG, op: 'ready', url, port })
}

/** Calls `stop` when the primary says so, or when it is gone (the channel closed): never an orphan worker. */
export function onPrimaryStop(stop: () => void): void {
  process.on('message', (message: unknown) => {
    if (isWorkerMessage(message) && message.tag === WORKER_TAG && message.op === 'stop') stop()
  })
  process.on('disconnect', stop)
}

/** After the drain: the channel is closed so the process can end. */
export function leavePrimary(): void {
  if (process.connected) process.disconnect()
}
