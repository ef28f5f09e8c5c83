// An order lock in shared storage: one instance orders, the others wait for the certificate to appear.
// The holder touches the file while it works; a lock nobody touched for `staleMs` is taken over
// (its holder died). Two instances racing for a stale lock can at worst both order once: harmless.
import { closeSync, openSync, readFileSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'

export interface LockHolder {
  host: string
  pid: number
  since: string
}

export interface HeldLock {
  release(): void
}

export type LockAttempt = { acquired: true; lock: HeldLock } | { acquired: false; holder: LockHolder | undefined; ageMs: number }

function readHolder(path: string): LockHolder | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as LockHolder
  } catch {
    return undefined
  }
}

function create(path: string): boolean {
  let fd: number
  try {
    fd = openSync(path, 'wx', 0o600)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
  try {
    writeSync(fd, JSON.stringify({ host: hostname(), pid: process.pid, since: new Date().toISOString() } satisfies LockHolder))
  } finally {
    closeSync(fd)
  }
  return true
}

/** Tries once; never waits. `refreshMs` is how often the holder touches the file. */
export function tryLock(path: string, staleMs: number, refreshMs = Math.max(1000, Math.floor(staleMs / 4))): LockAttempt {
  if (!create(path)) {
    let ageMs: number
    try {
      ageMs = Date.now() - statSync(path).mtimeMs
    } catch {
      // Released between our attempt and the stat: try again next time.
      return { acquired: false, holder: undefined, ageMs: 0 }
    }
    const holder = readHolder(path)
    const mine = holder?.host === hostname() && holder.pid === process.pid
    if (!mine && ageMs < staleMs) return { acquired: false, holder, ageMs }
    try {
      unlinkSync(path)
    } catch {
      // Someone else removed it first.
    }
    if (!create(path)) return { acquired: false, holder: readHolder(path), ageMs: 0 }
  }
  const refresh = setInterval(() => {
    const now = new Date()
    try {
      utimesSync(path, now, now)
    } catch {
      // Taken over as stale (we were stalled for too long); the order finishes anyway.
    }
  }, refreshMs)
  refresh.unref()
  let released = false
  return {
    acquired: true,
    lock: {
      release() {
        if (released) return
        released = true
        clearInterval(refresh)
        const holder = readHolder(path)
        if (holder && (holder.host !== hostname() || holder.pid !== process.pid)) return
        try {
          unlinkSync(path)
        } catch {
          // Already gone.
        }
      },
    },
  }
}
