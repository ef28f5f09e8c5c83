// Signing keys from config or from a file generated on first start, shared by every instance that shares the file.
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/** Shortest key accepted from a file (config values have their own pattern in the schema). */
export const MIN_SECRET_LENGTH = 32

/**
 * The configured key when set, else the one in `file`, created with a random key (mode 0600) when
 * missing. `fileKey` names the setting in errors, e.g. "ui.session_secret_file".
 */
export function loadSecret(configured: string, file: string, fileKey: string): { secret: Buffer; created: boolean } {
  if (configured !== '') return { secret: Buffer.from(configured, 'utf8'), created: false }
  const read = (): Buffer => {
    const text = readFileSync(file, 'utf8').trim()
    if (text.length < MIN_SECRET_LENGTH) {
      throw new Error(`${fileKey}: ${file} holds ${text.length} characters; expected a random key of at least ${MIN_SECRET_LENGTH} (delete the file to have one generated)`)
    }
    return Buffer.from(text, 'utf8')
  }
  try {
    return { secret: read(), created: false }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  try {
    // 'wx': when another instance sharing the directory wrote it first, use theirs.
    writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' })
    chmodSync(file, 0o600)
    return { secret: read(), created: true }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return { secret: read(), created: false }
    throw error
  }
}
