// bcrypt password checks in a small pool of worker threads with a bounded queue, so they never block request handling.
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

export interface PasswordPoolOptions {
  /** Worker threads; 0 means min(2, CPU cores - 1), at least 1. */
  workers: number
  /** Checks that may wait for a free worker; more are refused at once (the caller answers 503). */
  queue: number
}

export interface PasswordPool {
  /** Whether a check submitted now would be accepted (a worker or a queue slot is free). */
  hasRoom(): boolean
  /** Compares `password` with a bcrypt `hash` on a worker; throws PoolBusyError when `hasRoom()` is false. */
  compare(password: string, hash: string): Promise<boolean>
  readonly size: number
  /** Checks running or queued now. */
  readonly pending: number
  close(): Promise<void>
}

export class PoolBusyError extends Error {
  override name = 'PoolBusyError'
}

// The worker body as source: an eval'd worker runs the same way from dist/ and under the test's
// TypeScript loader, which a separate worker file would not. It loads bcryptjs by the path resolved here.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const bcrypt = require(workerData.bcrypt)
// A lower CPU priority for this thread only (Linux nice is per thread): on a machine with few cores the
// kernel then runs the event loop first when both want a core, so cached requests do not wait behind bcrypt.
try { const os = require('node:os'); os.setPriority(Math.min(19, os.getPriority() + workerData.nice)) } catch {}
parentPort.on('message', ({ id, password, hash }) => {
  let ok = false
  try { ok = bcrypt.compareSync(password, hash) } catch { ok = false }
  parentPort.postMessage({ id, ok })
})
`

/** Added to the worker threads' nice value (at most 19): yields the cores to the event loop without starving the checks. */
const WORKER_NICE = 10

interface Job {
  id: number
  password: string
  hash: string
  resolve(ok: boolean): void
  reject(error: Error): void
}

interface Slot {
  worker: Worker
  job: Job | undefined
}

/** min(2, cores - 1), at least 1: bcrypt saturates the cores it gets, and one must stay free to serve requests. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(2, availableParallelism() - 1))
}

export function createPasswordPool(options: PasswordPoolOptions): PasswordPool {
  const size = options.workers > 0 ? options.workers : defaultWorkerCount()
  const maxQueue = Math.max(0, options.queue)
  const bcryptPath = createRequire(import.meta.url).resolve('bcryptjs')
  const queue: Job[] = []
  const slots: Slot[] = []
  let nextId = 1
  let closed = false

  const spawn = (): Slot => {
    const slot: Slot = { worker: new Worker(WORKER_SOURCE, { eval: true, workerData: { bcrypt: bcryptPath, nice: WORKER_NICE } }), job: undefined }
    // Idle workers must not keep the process alive; the pool is closed on shutdown anyway.
    slot.worker.unref()
    slot.worker.on('message', (message: { id: number; ok: boolean }) => {
      const job = slot.job
      if (!job || job.id !== message.id) return
      slot.job = undefined
      job.resolve(message.ok === true)
      next(slot)
    })
    const replace = (error: Error): void => {
      const job = slot.job
      slot.job = undefined
      job?.reject(error)
      const index = slots.indexOf(slot)
      if (index >= 0) slots.splice(index, 1)
      if (closed) return
      // A worker that died (out of memory, a bug) is replaced so the pool keeps its size.
      const fresh = spawn()
      slots.push(fresh)
      next(fresh)
    }
    slot.worker.on('error', (error: unknown) => replace(error instanceof Error ? error : new Error(String(error))))
    slot.worker.on('exit', (code) => {
      if (slots.includes(slot)) replace(new Error(`password check worker exited with code ${code}`))
    })
    return slot
  }

  const next = (slot: Slot): void => {
    if (closed || slot.job) return
    const job = queue.shift()
    if (!job) return
    slot.job = job
    slot.worker.postMessage({ id: job.id, password: job.password, hash: job.hash })
  }

  for (let i = 0; i < size; i++) slots.push(spawn())

  const busyWorkers = (): number => slots.filter((slot) => slot.job !== undefined).length

  return {
    size,
    get pending() {
      return busyWorkers() + queue.length
    },
    hasRoom: () => !closed && (busyWorkers() < slots.length || queue.length < maxQueue),
    compare(password, hash) {
      if (closed || !(busyWorkers() < slots.length || queue.length < maxQueue)) return Promise.reject(new PoolBusyError('too many password checks waiting'))
      return new Promise<boolean>((resolve, reject) => {
        queue.push({ id: nextId++, password, hash, resolve, reject })
        const idle = slots.find((slot) => slot.job === undefined)
        if (idle) next(idle)
      })
    },
    async close() {
      closed = true
      for (const job of queue.splice(0)) job.reject(new PoolBusyError('shutting down'))
      const all = slots.splice(0)
      for (const slot of all) {
        slot.job?.reject(new PoolBusyError('shutting down'))
        slot.job = undefined
      }
      await Promise.all(all.map((slot) => slot.worker.terminate()))
    },
  }
}
