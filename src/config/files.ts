// Reading the files a configuration names, with operator-worded reasons when they cannot be read or created.
import { X509Certificate } from 'node:crypto'
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { userInfo } from 'node:os'
import { dirname, resolve } from 'node:path'

/** Who this process runs as, for messages about files it cannot read: "uid 999 (portier)". */
export function processUser(): string {
  const uid = process.getuid?.()
  if (uid === undefined) return 'this user'
  let name: string | undefined
  try {
    name = userInfo().username
  } catch {
    // A uid without a passwd entry (docker run --user 12345): the number alone.
  }
  return name ? `uid ${uid} (${name})` : `uid ${uid}`
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`
}

/**
 * Why a file cannot be read, in an operator's words. A permission problem names the file's owner and
 * mode, the user this process runs as and the command that fixes it (`fix`, or a chmod).
 */
export function unreadable(path: string, error: unknown, fix?: string): string {
  const code = (error as NodeJS.ErrnoException).code
  const quoted = JSON.stringify(path)
  if (code === 'ENOENT') return `${quoted}: no such file`
  if (code === 'EISDIR') return `${quoted}: a directory, not a file`
  if (code === 'EACCES' || code === 'EPERM') {
    let owner = ''
    try {
      const stat = statSync(path)
      owner = ` (owned by uid ${stat.uid}, mode ${octal(stat.mode)})`
    } catch {
      // Not even stat-able: a directory on the way is closed to us.
      const dir = dirname(resolve(path))
      return (
        `${quoted}: permission denied for ${processUser()}, the user Portier runs as: a directory on its path is closed to that user; ` +
        `open it, e.g. chmod a+rx ${dir} (on the host, when it is mounted into a container)`
      )
    }
    return (
      `${quoted}: permission denied${owner} for ${processUser()}, the user Portier runs as; ` +
      `make it readable by that user: ${fix ?? `chmod a+r ${path}`} (on the host, when the file is mounted into a container)`
    )
  }
  return `${quoted}: ${(error as Error).message ?? String(error)}`
}

export interface Read {
  data?: Buffer
  problem?: string
  /** The file is not there (as opposed to there but closed to us, when a directory on the way is). */
  missing?: boolean
}

/** The file's bytes, or why it cannot be read (`fix` as in unreadable). */
export function read(path: string, fix?: string): Read {
  try {
    return { data: readFileSync(path) }
  } catch (error) {
    return { problem: unreadable(path, error, fix), missing: (error as NodeJS.ErrnoException).code === 'ENOENT' }
  }
}

/** Why a CA file cannot serve: unreadable, or its first PEM block is not a certificate; undefined when it can. */
export function certificateFileProblem(path: string): string | undefined {
  const found = read(path)
  if (found.problem) return found.problem
  try {
    new X509Certificate(found.data as Buffer)
    return undefined
  } catch (error) {
    return `${JSON.stringify(path)}: not a certificate (${(error as Error).message})`
  }
}

/** A secret file's text: its content without the one trailing newline editors add (spaces inside a password are kept). */
export function secretText(data: Buffer): string {
  return data.toString('utf8').replace(/\r?\n$/, '')
}

/** Why a secret file (a password, a key) cannot serve: unreadable, or empty; undefined when it can. */
export function secretFileProblem(path: string, fix?: string): string | undefined {
  const found = read(path, fix)
  if (found.problem) return found.problem
  return secretText(found.data as Buffer) === '' ? `${JSON.stringify(path)}: an empty file` : undefined
}

/** A secret file's text as serve uses it; throws "<path> is empty" or the read error. */
export function readSecretFile(path: string): string {
  const text = secretText(readFileSync(path))
  if (text === '') throw new Error(`${path} is empty`)
  return text
}

/** The nearest existing directory of a path that will be created, and whether this process may write into it. */
export function creatable(path: string): string | undefined {
  let dir = dirname(resolve(path))
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir)
  try {
    accessSync(dir, constants.W_OK)
    return undefined
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return `${JSON.stringify(path)}: does not exist and cannot be created: ${JSON.stringify(dir)} is not writable for ${processUser()} (${code ?? String(error)})`
  }
}
