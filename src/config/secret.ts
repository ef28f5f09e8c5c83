// Signing keys from config or from a file generated on first start, shared by every instance that shares the file.
import { randomBytes } from 'node:crypto'
import { chmodSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
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
  const key = `${randomBytes(32).toString('hex')}\n`
  // Written whole under a name of our own, then linked into place: link() fails with EEXIST when another instance
  // sharing the directory got there first (use theirs), and nobody ever reads the file before its key is in it.
  const draft = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  writeFileSync(draft, key, { mode: 0o600, flag: 'wx' })
  try {
    chmodSync(draft, 0o600)
    linkSync(draft, file)
    return { secret: read(), created: true }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return { secret: read(), created: false }
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw error
  } finally {
    unlinkSync(draft)
  }
  // A file system without hard links: create the file exclusively, and when another instance did, give it a moment
  // to finish writing its key.
  try {
    writeFileSync(file, key, { mode: 0o600, flag: 'wx' })
    chmodSync(file, 0o600)
    return { secret: read(), created: true }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }
  for (let waited = 0; ; waited += 50) {
    try {
      return { secret: read(), created: false }
    } catch (error) {
      if (waited >= 2_000) throw error
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
    }
  }
}

/** link() errors of file systems that have no hard links (some network and FUSE volumes). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK'])
