// Writes files so that no reader ever sees one half-written, or readable by others before its final mode is set: written beside, then renamed into place.
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

export interface FileToWrite {
  path: string
  data: string | Uint8Array
  /** Permission bits of the finished file; 0o600 when absent. */
  mode?: number
}

/**
 * Writes every file to a temporary name beside it (created 0600, then given its mode, which the
 * umask does not narrow), then renames them into place in the order given: a key before its
 * certificate keeps the window with a new key beside the old certificate as short as two renames.
 * On failure the temporary files are removed and the targets keep their previous content.
 */
export function writeFilesAtomically(files: readonly FileToWrite[]): void {
  const suffix = `.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  const written: string[] = []
  try {
    for (const file of files) {
      mkdirSync(dirname(file.path), { recursive: true })
      const temporary = `${file.path}${suffix}`
      written.push(temporary)
      writeFileSync(temporary, file.data, { mode: 0o600, flag: 'wx' })
      chmodSync(temporary, file.mode ?? 0o600)
    }
    for (const file of files) renameSync(`${file.path}${suffix}`, file.path)
  } catch (error) {
    for (const temporary of written) rmSync(temporary, { force: true })
    throw error
  }
}

/** One file, atomically: see writeFilesAtomically. */
export function writeFileAtomically(path: string, data: string | Uint8Array, mode?: number): void {
  writeFilesAtomically([{ path, data, ...(mode !== undefined ? { mode } : {}) }])
}
