// Signing keys from config or from a file generated on first start, shared by every instance that shares the file.
import { randomBytes } from 'node:crypto'
import { chmodSync, linkSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'

/** Shortest key accepted from a file (config values have their own pattern in the schema). */
export const MIN_SECRET_LENGTH = 32

/**
 * The configured key when set, else the one in `file`, created with a random key (mode 0600) when
 * missing. `fileKey` names the setting in errors, e.g. "ui.session_secret_file".
 */
export function loadSecret(configured: string, file: string, fileKey: string): { secret: Buffer; created: boolean } {
  if (configured !== '') return { secret: Buffer.from(configured, 'utf8'), created: false }
  removeStaleDrafts(file)
  const read = (): Buffer => {
    const text = readFileSync(file, 'utf8').trim()
    if (text.length < MIN_SECRET_LENGTH) throw new ShortKey(`${fileKey}: ${file} holds ${text.length} characters; expected a random key of at least ${MIN_SECRET_LENGTH} (delete the file to have one generated)`)
    return Buffer.from(text, 'utf8')
  }
  try {
    // A short key may be one another instance is writing (on a volume without hard links, or an older Portier): waited for.
    return { secret: readWaitingForKey(read), created: false }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const key = `${randomBytes(32).toString('hex')}\n`
  // Written whole under a name of our own, then linked into place: link() fails with EEXIST when another instance
  // sharing the directory got there first (use theirs), and nobody ever reads the file before its key is in it.
  let linked: NodeJS.ErrnoException | undefined
  for (let attempt = 1; attempt <= DRAFT_ATTEMPTS; attempt++) {
    const draft = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
    try {
      writeFileSync(draft, key, { mode: 0o600, flag: 'wx' })
      chmodSync(draft, 0o600)
    } catch (error) {
      removeDraft(draft)
      throw new Error(`${fileKey}: cannot write a new key beside ${file}: ${error instanceof Error ? error.message : String(error)}`, { cause: error })
    }
    linked = undefined
    try {
      linkSync(draft, file)
    } catch (error) {
      linked = error as NodeJS.ErrnoException
    } finally {
      removeDraft(draft)
    }
    // ENOENT: the draft was gone before its link, swept as stale by an instance whose clock runs ahead of the volume's: again.
    if (linked?.code !== 'ENOENT') break
  }
  if (linked === undefined) return { secret: read(), created: true }
  if (linked.code === 'EEXIST') return { secret: readWaitingForKey(read), created: false }
  if (linked.code === undefined || !NO_HARD_LINKS.has(linked.code)) throw linked
  // A file system without hard links: create the file exclusively, and when another instance did, give it a moment
  // to finish writing its key.
  try {
    writeFileSync(file, key, { mode: 0o600, flag: 'wx' })
    chmodSync(file, 0o600)
    return { secret: read(), created: true }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
  }
  return { secret: readWaitingForKey(read), created: false }
}

/** Drafts written in turn when one disappears before its link (see removeStaleDrafts). */
const DRAFT_ATTEMPTS = 3

/** A key file that holds too few characters: its error names the setting. */
class ShortKey extends Error {}

/** How long a key file another instance has created may take to hold its key. */
const KEY_WRITE_WAIT_MS = 2_000

/** `read()`, again every 50 ms while the file holds too short a key, for up to KEY_WRITE_WAIT_MS (start-up only: it blocks). */
function readWaitingForKey(read: () => Buffer): Buffer {
  for (let waited = 0; ; waited += 50) {
    try {
      return read()
    } catch (error) {
      if (!(error instanceof ShortKey) || waited >= KEY_WRITE_WAIT_MS) throw error
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
    }
  }
}

/** Removes the draft key file; one left behind (a volume that refuses) is harmless, and not worth failing the start for. */
function removeDraft(draft: string): void {
  try {
    unlinkSync(draft)
  } catch {
    // ENOENT (never written) or a volume error: leave it.
  }
}

/** A draft lives for the microseconds between its write and its link: one older than this was left by a process that died. */
const STALE_DRAFT_MS = 60_000

/** Removes drafts of `file` (`<file>.<pid>.<12 hex>.tmp`) older than STALE_DRAFT_MS; nothing else, and never fails the start. */
export function removeStaleDrafts(file: string, now = Date.now()): string[] {
  const prefix = `${basename(file)}.`
  const removed: string[] = []
  let names: string[]
  try {
    names = readdirSync(dirname(file))
  } catch {
    return removed
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !DRAFT_SUFFIX.test(name.slice(prefix.length))) continue
    const path = join(dirname(file), name)
    try {
      if (now - statSync(path).mtimeMs < STALE_DRAFT_MS) continue
      unlinkSync(path)
      removed.push(path)
    } catch {
      // Gone already (another instance swept it), or a volume error: leave it.
    }
  }
  return removed
}

/** What follows `<file>.` in a draft's name. */
const DRAFT_SUFFIX = /^[0-9]{1,10}\.[0-9a-f]{12}\.tmp$/

/** link() errors of file systems that have no hard links (some network and FUSE volumes). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK'])
