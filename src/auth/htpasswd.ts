// An htpasswd file: parsed with line-numbered problems, reloaded when it changes, and a cache of
// verified credentials so bcrypt runs once per credential rather than once per request.
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, watch, writeFileSync, type FSWatcher } from 'node:fs'
import { basename, dirname, resolve } from 'node:path'
import { hashKind, hashPassword, verifyPassword, type HashKind } from './hashes.js'
import { PoolBusyError } from './password-pool.js'
import { BoundedCache } from '../lib/bounded-cache.js'

/** Verified credentials remembered at once: clients choose the keys, so the memo must not grow with them. */
const MAX_VERIFIED = 10_000

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
  /**
   * The file changed to one with no users or with unreadable lines (often a file being rewritten in
   * place: truncated, then written): the users loaded before stay until it is unchanged for `settleMs`.
   */
  onHold?(parsed: ParsedHtpasswd, path: string, keptUsers: number, settleMs: number): void
}

/** Whether a password is right, or why it was not checked: the user+address is locked out, or too many checks wait. */
export type CheckOutcome = boolean | 'locked' | 'busy'

/** What a password check reports to the login throttle; see Throttle.attempt. */
export interface CheckAdmission {
  failed(): void
  succeeded(): void
  cancelled(): void
}

export interface CheckOptions {
  /** Reserves the check with the login throttle just before it starts; undefined refuses it as locked. */
  admit?: () => CheckAdmission | undefined
}

/** How long a file with no users or unreadable lines must stay unchanged before it replaces the users loaded before. */
export const HTPASSWD_SETTLE_MS = 2_000

const bcryptAlphabet = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/**
 * A bcrypt hash no password matches, at the cost most users' hashes have: an unknown user costs the
 * same bcrypt time as a known one, so timing does not tell which names exist.
 */
function decoyHash(users: Map<string, string>): string {
  const costs = new Map<string, number>()
  for (const hash of users.values()) {
    const cost = /^\$2[aby]\$(\d{2})\$/.exec(hash)?.[1]
    if (cost !== undefined) costs.set(cost, (costs.get(cost) ?? 0) + 1)
  }
  const cost = [...costs].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '10'
  const random = randomBytes(53)
  let tail = ''
  for (const byte of random) tail += bcryptAlphabet[byte & 63]
  return `$2y$${cost}$${tail}`
}

export class HtpasswdStore {
  private users = new Map<string, string>()
  private decoy = decoyHash(new Map())
  /** sha256(user, password, hash) → expiry (ms since epoch). Cleared on every reload; the least recently used go first past 10 000. */
  private readonly verified = new BoundedCache<string, number>({ max: MAX_VERIFIED })
  /**
   * Checks running now, by the same key: a client that opens many connections at once gets one bcrypt, not
   * one each. Unknown users share theirs the same way (against the decoy), so concurrency does not tell
   * which names exist either.
   */
  private readonly checking = new Map<string, Promise<CheckOutcome>>()
  private watcher: FSWatcher | undefined
  private reloadTimer: NodeJS.Timeout | undefined
  private lastText = ''
  /** A file held back (no users or unreadable lines): its text and since when it has been unchanged. */
  private held: { text: string; since: number } | undefined
  readonly path: string

  /**
   * `checkHash` compares a password with a stored hash (bcrypt goes to the password pool in the gateway);
   * `canCheck` says whether it would accept one more check now (false: the caller answers 503).
   */
  constructor(
    path: string,
    private readonly cacheTtlMs: number,
    private readonly events: HtpasswdEvents,
    private readonly checkHash: (password: string, hash: string) => Promise<boolean> = verifyPassword,
    private readonly canCheck: () => boolean = () => true,
    private readonly settleMs: number = HTPASSWD_SETTLE_MS,
  ) {
    this.path = resolve(path)
    this.load()
  }

  get userNames(): string[] {
    return [...this.users.keys()]
  }

  /** The stored hash of a user (refresh tokens are bound to it), or undefined. */
  hashOf(user: string): string | undefined {
    return this.users.get(user)
  }

  load(): void {
    const text = readFileSync(this.path, 'utf8')
    if (text === this.lastText && this.users.size > 0) {
      this.held = undefined
      return
    }
    const parsed = parseHtpasswd(text)
    if (this.users.size > 0 && (parsed.users.size === 0 || parsed.problems.length > 0)) {
      const now = Date.now()
      if (this.held?.text !== text) {
        this.held = { text, since: now }
        this.events.onHold?.(parsed, this.path, this.users.size, this.settleMs)
      }
      if (now - this.held.since < this.settleMs) {
        // Looked at again once it could have settled, even if no change event comes.
        this.scheduleReload(this.held.since + this.settleMs - now + 10)
        return
      }
    }
    this.held = undefined
    this.users = parsed.users
    this.decoy = decoyHash(parsed.users)
    this.verified.clear()
    this.lastText = text
    this.events.onLoad(parsed, this.path)
  }

  /** Whether the password is right; a check that could not run (too many waiting) counts as wrong. */
  async verify(user: string, password: string): Promise<boolean> {
    return (await this.check(user, password)) === true
  }

  /** Whether the password is right, or 'locked' / 'busy' when it was not checked (see CheckOptions.admit and canCheck). */
  async check(user: string, password: string, options: CheckOptions = {}): Promise<CheckOutcome> {
    const stored = this.users.get(user)
    const hash = stored ?? this.decoy
    const key = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash).digest('base64')
    if (stored !== undefined) {
      const expires = this.verified.get(key)
      if (expires !== undefined && expires > Date.now()) return true
    }
    const running = this.checking.get(key)
    if (running) return await running
    if (!this.canCheck()) return 'busy'
    const admission = options.admit ? options.admit() : undefined
    if (options.admit && !admission) return 'locked'
    const started = this.compare(key, user, password, hash, stored !== undefined, admission)
    this.checking.set(key, started)
    try {
      return await started
    } finally {
      this.checking.delete(key)
    }
  }

  private async compare(key: string, user: string, password: string, hash: string, known: boolean, admission: CheckAdmission | undefined): Promise<CheckOutcome> {
    let matched: boolean
    try {
      matched = await this.checkHash(password, hash)
    } catch (error) {
      admission?.cancelled()
      if (error instanceof PoolBusyError) return 'busy'
      throw error
    }
    const ok = known && matched
    if (!ok) {
      admission?.failed()
      return false
    }
    admission?.succeeded()
    // The file may have been reloaded while bcrypt ran: only cache against the hash still current.
    if (this.users.get(user) === hash) {
      this.verified.set(key, Date.now() + this.cacheTtlMs)
    }
    return true
  }

  private scheduleReload(delayMs: number): void {
    clearTimeout(this.reloadTimer)
    this.reloadTimer = setTimeout(() => {
      try {
        this.load()
      } catch (error) {
        this.events.onError(error as Error, this.path)
      }
    }, delayMs)
    this.reloadTimer.unref()
  }

  watch(): void {
    const name = basename(this.path)
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file && file !== name && !String(file).startsWith('..')) return
        this.scheduleReload(100)
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
