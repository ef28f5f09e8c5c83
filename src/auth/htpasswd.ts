// An htpasswd file: parsed with line-numbered problems, reloaded when it changes, and a cache of
// verified credentials so bcrypt runs once per credential rather than once per request.
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, watch, writeFileSync, type FSWatcher } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { hashKind, hashPassword, verifyPassword, type HashKind } from './hashes.js'

export interface HtpasswdProblem {
  line: number
  reason: string
}

export interface ParsedHtpasswd {
  users: Map<string, string>
  problems: HtpasswdProblem[]
  /** Users whose hashes are weaker than bcrypt. */
  weak: Array<{ user: string; kind: HashKind }>
}

export function parseHtpasswd(text: string): ParsedHtpasswd {
  const users = new Map<string, string>()
  const problems: HtpasswdProblem[] = []
  const weak: Array<{ user: string; kind: HashKind }> = []
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) return
    const colon = line.indexOf(':')
    if (colon <= 0) {
      problems.push({ line: index + 1, reason: 'expected "user:hash"' })
      return
    }
    const user = line.slice(0, colon)
    const hash = line.slice(colon + 1)
    const kind = hashKind(hash)
    if (kind === 'unknown') {
      problems.push({ line: index + 1, reason: `unsupported hash for user ${JSON.stringify(user)} (use bcrypt: htpasswd -B, or portier passwd add)` })
      return
    }
    if (users.has(user)) problems.push({ line: index + 1, reason: `user ${JSON.stringify(user)} appears again; the later line wins` })
    if (kind !== 'bcrypt') weak.push({ user, kind })
    users.set(user, hash)
  })
  return { users, problems, weak }
}

export function formatHtpasswd(users: Map<string, string>): string {
  return [...users].map(([user, hash]) => `${user}:${hash}\n`).join('')
}

export interface HtpasswdEvents {
  onLoad(parsed: ParsedHtpasswd, path: string): void
  onError(error: Error, path: string): void
}

let decoy: Promise<string> | undefined
function unknownUserHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString('hex'), 10)
  return decoy
}

export class HtpasswdStore {
  private users = new Map<string, string>()
  /** sha256(user, password) → expiry (ms since epoch). Cleared on every reload. */
  private verified = new Map<string, number>()
  /** Checks running now, by the same key: a client that opens many connections at once gets one bcrypt, not one each. */
  private readonly checking = new Map<string, Promise<boolean>>()
  private watcher: FSWatcher | undefined
  private reloadTimer: NodeJS.Timeout | undefined
  private lastText = ''
  readonly path: string

  constructor(
    path: string,
    private readonly cacheTtlMs: number,
    private readonly events: HtpasswdEvents,
    private readonly checkHash: (password: string, hash: string) => Promise<boolean> = verifyPassword,
  ) {
    this.path = resolve(path)
    this.load()
  }

  get userNames(): string[] {
    return [...this.users.keys()]
  }

  load(): void {
    const text = readFileSync(this.path, 'utf8')
    if (text === this.lastText && this.users.size > 0) return
    const parsed = parseHtpasswd(text)
    this.users = parsed.users
    this.verified.clear()
    this.lastText = text
    this.events.onLoad(parsed, this.path)
  }

  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user)
    if (hash === undefined) {
      // Spend the same bcrypt time as for a real user, so timing does not tell which names exist.
      await this.checkHash(password, await unknownUserHash())
      return false
    }
    const key = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash).digest('base64')
    const expires = this.verified.get(key)
    const now = Date.now()
    if (expires !== undefined && expires > now) return true
    const running = this.checking.get(key)
    if (running) return await running
    const check = this.checkAndCache(key, user, password, hash)
    this.checking.set(key, check)
    try {
      return await check
    } finally {
      this.checking.delete(key)
    }
  }

  private async checkAndCache(key: string, user: string, password: string, hash: string): Promise<boolean> {
    const ok = await this.checkHash(password, hash)
    // The file may have been reloaded while bcrypt ran: only cache against the hash still current.
    if (ok && this.users.get(user) === hash) {
      if (this.verified.size > 10_000) this.verified.clear()
      this.verified.set(key, Date.now() + this.cacheTtlMs)
    }
    return ok
  }

  watch(): void {
    const name = basename(this.path)
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file && file !== name && !String(file).startsWith('..')) return
        clearTimeout(this.reloadTimer)
        this.reloadTimer = setTimeout(() => {
          try {
            this.load()
          } catch (error) {
            this.events.onError(error as Error, this.path)
          }
        }, 100)
        this.reloadTimer.unref()
      })
      this.watcher.on('error', (error) => this.events.onError(error, this.path))
    } catch (error) {
      this.events.onError(error as Error, this.path)
    }
  }

  close(): void {
    clearTimeout(this.reloadTimer)
    this.watcher?.close()
  }
}

/** Creates the file with one generated admin user; returns the password (to be shown once). */
export async function createWithGeneratedAdmin(path: string, user = 'admin'): Promise<string> {
  const password = randomBytes(18).toString('base64url')
  mkdirSync(dirname(resolve(path)), { recursive: true })
  writeFileSync(path, formatHtpasswd(new Map([[user, await hashPassword(password, 10)]])), { mode: 0o600, flag: 'wx' })
  return password
}
