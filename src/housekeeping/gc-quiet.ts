// Before the collector runs: upload sessions being written into the storage by anyone else (another instance, a worker, a client that reaches the registry directly) are waited for, as the run's own drain waits for this instance's.
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { RegistryStorage } from './registry-storage.js'

/**
 * A session whose `data` changed within this window counts as being written. A streaming PATCH (relayed:
 * the registry writes as it reads; into storage: Portier writes every 256 KiB) moves it all the time, and
 * a chunked upload's next PATCH follows its previous at once; one left by a client that went away does not.
 */
export const ACTIVE_UPLOAD_MS = 5_000

export interface ActiveUpload {
  repository: string
  /** The session's directory name under `_uploads`. */
  id: string
  /** When its data last changed (ms since the epoch). */
  writtenAt: number
}

/** The upload sessions in the storage whose data changed at or after `sinceMs`. */
export async function activeUploads(storage: RegistryStorage, sinceMs: number): Promise<ActiveUpload[]> {
  const active: ActiveUpload[] = []
  for (const repository of await storage.repositories()) {
    const dir = join(storage.repositoryDir(repository), '_uploads')
    let ids: string[]
    try {
      ids = await readdir(dir)
    } catch {
      continue
    }
    for (const id of ids) {
      try {
        const writtenAt = (await stat(join(dir, id, 'data'))).mtimeMs
        if (writtenAt >= sinceMs) active.push({ repository, id, writtenAt })
      } catch {
        // Committed or cancelled meanwhile.
      }
    }
  }
  return active
}

export interface QuietWait {
  /** Sessions still being written when it gave up (0: the storage went quiet). */
  remaining: number
  /** How long it waited (ms). */
  waitedMs: number
}

/**
 * Resolves once no upload session in the storage has been written to within ACTIVE_UPLOAD_MS, or at
 * `deadline` (ms since the epoch) with what is still being written. Checks every `everyMs`; `onWaiting`
 * hears of each check that found sessions; `aborted` stops it early.
 */
export async function untilStorageQuiet(
  storage: RegistryStorage,
  options: { deadline: number; everyMs?: number; now?: () => number; aborted?: () => boolean; onWaiting?: (active: ActiveUpload[]) => void },
): Promise<QuietWait> {
  const now = options.now ?? Date.now
  const started = now()
  for (;;) {
    const active = await activeUploads(storage, now() - ACTIVE_UPLOAD_MS)
    if (active.length === 0 || now() >= options.deadline || options.aborted?.() === true) return { remaining: active.length, waitedMs: now() - started }
    options.onWaiting?.(active)
    await new Promise((resolve) => setTimeout(resolve, Math.min(options.everyMs ?? 1_000, Math.max(0, options.deadline - now()))))
  }
}
