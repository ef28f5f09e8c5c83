// bcrypt password checks off the thread that serves requests, a few at a time, with a bounded queue.
//
// The checks run in native code on Node's own thread pool (libuv's, 4 threads), through `bcrypt` (its
// prebuilt binaries for Linux, macOS and Windows ship inside the package).
// They used to run bcryptjs in worker threads: each worker is a V8 isolate of its own, and the one the
// default pool started on a 2-core machine stayed resident for the life of the process (the bench's
// 16-upload peak 145-150 MiB with it, 134-139 without; BENCHMARKS.md, "Peak RSS"). A native check is
// also faster (cost 10: ~50 ms against ~70 for bcryptjs here).
import { timingSafeEqual } from 'node:crypto'
import { availableParallelism } from 'node:os'
import bcrypt from 'bcrypt'

/**
 * Compares as bcryptjs (which hashes Portier's own htpasswd files) and Go's x/crypto/bcrypt do:
 * - `$2y$` (what `htpasswd -B` writes) and `$2a$` are read as `$2b$`, the same algorithm. The native
 *   module keeps OpenBSD's old `$2a$` length bug (a password of 255 bytes or more wraps around), so a
 *   `$2a$` hash of a long password would otherwise be refused, or match a wrong one.
 * - The hash is computed with the stored salt and compared in constant time (the module's own
 *   compare uses strcmp).
 */
async function verify(password: string, stored: string): Promise<boolean> {
  const expected = stored.replace(/^\$2[ay]\$/, '$2b$')
  const computed = await bcrypt.hash(password, expected.slice(0, 29))
  const left = Buffer.from(computed)
  const right = Buffer.from(expected)
  return left.length === right.length && timingSafeEqual(left, right)
}

export interface PasswordPoolOptions {
  /** Checks that run at once; 0 means min(2, CPU cores - 1), at least 1. Never more than maxChecksAtOnce(). */
  workers: number
  /** Checks that may wait for a turn; more are refused at once (the caller answers 503). */
  queue: number
}

export interface PasswordPool {
  /** Whether a check submitted now would be accepted (a turn or a queue slot is free). */
  hasRoom(): boolean
  /** Compares `password` with a bcrypt `hash`; throws PoolBusyError when `hasRoom()` is false. */
  compare(password: string, hash: string): Promise<boolean>
  readonly size: number
  /** Checks running or queued now. */
  readonly pending: number
  close(): Promise<void>
}

export class PoolBusyError extends Error {
  override name = 'PoolBusyError'
}

/** Threads in Node's pool, read from UV_THREADPOOL_SIZE as libuv reads it: atoi, 0 is 1, more than 1024 (or negative) is 1024. */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.UV_THREADPOOL_SIZE
  if (raw === undefined) return 4
  const threads = Number.parseInt(raw, 10)
  if (Number.isNaN(threads) || threads === 0) return 1
  return threads < 0 || threads > 1024 ? 1024 : threads
}

/**
 * Node's thread pool also reads and writes files (blobs from and into storage, the access log) and
 * resolves host names: bcrypt may hold at most half of its threads (one, with a pool of one thread),
 * however many checks are configured.
 */
export function maxChecksAtOnce(env: NodeJS.ProcessEnv = process.env): number {
  return Math.max(1, Math.floor(threadPoolSize(env) / 2))
}

interface Job {
  password: string
  hash: string
  resolve(ok: boolean): void
  reject(error: Error): void
}

/** min(2, cores - 1), at least 1: bcrypt saturates the cores it gets, and one must stay free to serve requests. */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(2, availableParallelism() - 1))
}

export function createPasswordPool(options: PasswordPoolOptions): PasswordPool {
  const size = Math.min(maxChecksAtOnce(), options.workers > 0 ? options.workers : defaultWorkerCount())
  const maxQueue = Math.max(0, options.queue)
  const queue: Job[] = []
  const running = new Set<Job>()
  let closed = false

  const start = (job: Job): void => {
    running.add(job)
    // A malformed hash is a mismatch, never an error for the caller.
    verify(job.password, job.hash)
      .catch(() => false)
      .then((ok) => {
        // After close() the job was already refused; its result goes nowhere.
        if (!running.delete(job)) return
        job.resolve(ok)
        const next = closed ? undefined : queue.shift()
        if (next) start(next)
      })
      .catch(() => undefined)
  }

  const hasRoom = (): boolean => !closed && (running.size < size || queue.length < maxQueue)

  return {
    size,
    get pending() {
      return running.size + queue.length
    },
    hasRoom,
    compare(password, hash) {
      if (!hasRoom()) return Promise.reject(new PoolBusyError(closed ? 'shutting down' : 'too many password checks waiting'))
      return new Promise<boolean>((resolve, reject) => {
        const job: Job = { password, hash, resolve, reject }
        if (running.size < size) start(job)
        else queue.push(job)
      })
    },
    close() {
      closed = true
      for (const job of [...queue.splice(0), ...running]) job.reject(new PoolBusyError('shutting down'))
      running.clear()
      return Promise.resolve()
    },
  }
}
