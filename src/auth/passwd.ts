// `portier passwd add|remove|list`: manages an htpasswd file that htpasswd(1) and registry:2 also read.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { writeFileAtomically } from '../lib/atomic-write.js'
import { formatHtpasswd, parseHtpasswd } from './htpasswd.js'
import { hashPassword } from './hashes.js'

export const MIN_BCRYPT_COST = 10

export function readUsers(file: string): Map<string, string> {
  return existsSync(file) ? parseHtpasswd(readFileSync(file, 'utf8')).users : new Map<string, string>()
}

/** Mode of a new file unless --mode says otherwise: only its owner reads it. */
export const DEFAULT_MODE = 0o600

/** Parses --mode: octal permission bits such as 0644 or 640. */
export function parseMode(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text)) throw new Error(`--mode takes octal permissions like 0644 or 0600, not ${JSON.stringify(text)}`)
  return parseInt(text, 8)
}

/**
 * Writes the users, keeping the mode of an existing file (an operator who made it readable for a
 * gateway running as another user must not find it 0600 again after the next change) unless `mode` is given.
 */
export function writeUsers(file: string, users: Map<string, string>, mode: number | undefined): number {
  const keep = existsSync(file) ? statSync(file).mode & 0o777 : undefined
  const chosen = mode ?? keep ?? DEFAULT_MODE
  // Atomic: a gateway watching the file never reads half of it, nor hashes readable by others before the mode is set.
  writeFileAtomically(file, formatHtpasswd(users), chosen)
  return chosen
}

function modeText(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`
}

/** Reads a password without echo from a terminal, or the first line of piped stdin. */
export async function readPassword(prompt: string, confirm: boolean): Promise<string> {
  const stdin = process.stdin
  if (!stdin.isTTY) {
    let text = ''
    for await (const chunk of stdin) text += String(chunk)
    return text.split(/\r?\n/)[0] ?? ''
  }
  const ask = (label: string): Promise<string> =>
    new Promise((resolve, reject) => {
      process.stderr.write(label)
      let value = ''
      stdin.setRawMode(true)
      stdin.resume()
      const onData = (data: Buffer): void => {
        for (const char of data.toString('utf8')) {
          if (char === '\r' || char === '\n') {
            stdin.setRawMode(false)
            stdin.pause()
            stdin.off('data', onData)
            process.stderr.write('\n')
            resolve(value)
            return
          }
          if (char === '\u0003') {
            stdin.setRawMode(false)
            reject(new Error('cancelled'))
            return
          }
          if (char === '\u007f') value = value.slice(0, -1)
          else value += char
        }
      }
      stdin.on('data', onData)
    })
  const first = await ask(prompt)
  if (confirm && (await ask('Again: ')) !== first) throw new Error('the passwords do not match')
  return first
}

export interface PasswdOptions {
  cost?: number
  /** File mode to write (e.g. 0o644 for a gateway that runs as another user); default: keep the file's, or 0600. */
  mode?: number
}

export async function passwdCommand(action: string, file: string, user: string | undefined, options: PasswdOptions = {}): Promise<string> {
  const cost = options.cost ?? MIN_BCRYPT_COST
  const users = readUsers(file)
  switch (action) {
    case 'list':
      return [...users.keys()].join('\n') + (users.size > 0 ? '\n' : '')
    case 'add': {
      if (!user || !/^[^:\s]{1,255}$/.test(user)) throw new Error('passwd add needs a USER without ":" or spaces')
      const password = await readPassword(`Password for ${user}: `, true)
      if (password.length < 8) throw new Error('the password must be at least 8 characters')
      users.set(user, await hashPassword(password, Math.max(cost, MIN_BCRYPT_COST)))
      const created = !existsSync(file)
      const mode = writeUsers(file, users, options.mode)
      return `${created ? 'created' : 'updated'} ${file} (mode ${modeText(mode)}): ${user} set (bcrypt, cost ${Math.max(cost, MIN_BCRYPT_COST)})\n`
    }
    case 'remove': {
      if (!user) throw new Error('passwd remove needs a USER')
      if (!users.delete(user)) throw new Error(`no user ${JSON.stringify(user)} in ${file}`)
      writeUsers(file, users, options.mode)
      return `removed ${user} from ${file}\n`
    }
    default:
      throw new Error(`passwd takes add, remove or list, not ${JSON.stringify(action)}`)
  }
}
