// Disk usage of a directory tree, walked in-process (what `du` reports, without shelling out to it).
import { lstat, opendir, stat } from 'node:fs/promises'
import { join } from 'node:path'

export interface DiskUsage {
  /** Bytes allocated on disk (512-byte blocks, as `du` counts them); file systems without block counts report the size. */
  bytes: number
  /** Sum of the files' sizes (`du --apparent-size`). */
  apparentBytes: number
  files: number
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/**
 * Walks `root` without following symbolic links below it (the root itself may be one: a mounted storage). Entries that disappear during the walk are skipped: the
 * registry keeps serving reads (and a purge of old uploads may run) while this counts.
 */
export async function diskUsage(root: string): Promise<DiskUsage> {
  const usage: DiskUsage = { bytes: 0, apparentBytes: 0, files: 0 }
  const pending = [root]
  while (pending.length > 0) {
    const path = pending.pop() as string
    let stats
    try {
      stats = path === root ? await stat(path) : await lstat(path)
    } catch (error) {
      if (isMissing(error)) continue
      throw error
    }
    usage.bytes += stats.blocks !== undefined && stats.blocks > 0 ? stats.blocks * 512 : stats.isDirectory() ? 0 : stats.size
    if (!stats.isDirectory()) {
      usage.files += 1
      usage.apparentBytes += stats.size
      continue
    }
    let dir
    try {
      dir = await opendir(path)
    } catch (error) {
      if (isMissing(error)) continue
      throw error
    }
    for await (const entry of dir) pending.push(join(path, entry.name))
  }
  return usage
}
