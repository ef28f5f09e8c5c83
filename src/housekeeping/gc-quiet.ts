// Before the collector runs: writes into the storage that this instance does not see itself (another instance's uploads
// begun before it heard of the switch, or a client's that reaches the registry directly) are waited for, read from the
// storage: upload sessions, and pushes whose blobs are in but whose manifest has not come yet.
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { RegistryStorage } from './registry-storage.js'

/** A session written to within this window before maintenance began (or since) belongs to a push GC waits for; one idle for longer was left by its client. */
export const ACTIVE_UPLOAD_MS = 5_000

/** After a repository's last new blob, its push's manifest is expected within this long (the instances' own drains wait as long). */
export const PUSH_MANIFEST_WINDOW_MS = 60_000

export interface PendingWrites {
  /** Upload sessions (`<repository>/_uploads/<id>`) written to since the cut. */
  uploads: string[]
  /** Repositories with a blob linked since the cut, newer than their newest manifest or tag, within PUSH_MANIFEST_WINDOW_MS. */
  pushes: string[]
}

async function mtimeOf(path: string): Promise<number | undefined> {
  return (await stat(path).catch(() => undefined))?.mtimeMs
}

/**
 * What is being written into the storage: upload sessions whose data changed at or after `sinceMs`
 * (or whose size or time changed since `previous`: a clock on shared storage that runs behind is not
 * trusted alone), and pushes whose blobs came at or after `sinceMs` with no newer manifest or tag yet.
 * The directories' own times tell when a new link was added (a new entry changes its directory).
 */
export async function pendingWrites(storage: RegistryStorage, sinceMs: number, now: number, previous: Map<string, string>, aborted: () => boolean = () => false): Promise<{ pending: PendingWrites; seen: Map<string, string> }> {
  const pending: PendingWrites = { uploads: [], pushes: [] }
  const seen = new Map<string, string>()
  for (const repository of await storage.repositories()) {
    if (aborted()) break
    const dir = storage.repositoryDir(repository)
    for (const session of await storage.uploadSessions(repository)) {
      const key = `${repository}/_uploads/${session.id}`
      const state = `${session.size}:${session.mtimeMs}`
      seen.set(key, state)
      const before = previous.get(key)
      if (session.mtimeMs >= sinceMs || (before !== undefined && before !== state)) pending.uploads.push(key)
    }
    const blobAt = await mtimeOf(join(dir, '_layers', 'sha256'))
    if (blobAt === undefined || blobAt < sinceMs || now - blobAt >= PUSH_MANIFEST_WINDOW_MS) continue
    const manifestAt = Math.max(await mtimeOf(join(dir, '_manifests', 'revisions', 'sha256')) ?? 0, await mtimeOf(join(dir, '_manifests', 'tags')) ?? 0)
    if (blobAt > manifestAt) pending.pushes.push(repository)
  }
  return { pending, seen }
}

export interface QuietWait {
  /** What was still being written when it gave up (none: the storage went quiet). */
  remaining: PendingWrites
  /** How long it waited (ms). */
  waitedMs: number
}

/**
 * Resolves once nothing written since `sinceMs` is still in flight in the storage (sessions gone:
 * committed or cancelled; pushes' manifests in), or at `deadline` (ms since the epoch) with what is
 * left. Looks at least twice, `everyMs` apart, so that sessions moving under a clock that runs behind
 * are seen too. `onWaiting` hears of each look that found something; `aborted` stops it early.
 */
export async function untilStorageQuiet(
  storage: RegistryStorage,
  options: { sinceMs: number; deadline: number; everyMs?: number; now?: () => number; aborted?: () => boolean; onWaiting?: (pending: PendingWrites) => void },
): Promise<QuietWait> {
  const now = options.now ?? Date.now
  const aborted = options.aborted ?? (() => false)
  const everyMs = options.everyMs ?? 1_000
  const started = now()
  let previous = new Map<string, string>()
  for (let look = 1; ; look++) {
    const { pending, seen } = await pendingWrites(storage, options.sinceMs, now(), previous, aborted)
    previous = seen
    const busy = pending.uploads.length + pending.pushes.length > 0
    if ((!busy && look >= 2) || now() >= options.deadline || aborted()) return { remaining: pending, waitedMs: now() - started }
    if (busy) options.onWaiting?.(pending)
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(everyMs, options.deadline - now()))))
  }
}
