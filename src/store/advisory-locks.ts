// Locks across instances that share a PostgreSQL store (store.url) and no Redis: session advisory locks on one connection of their own, which the server frees when that connection ends (a killed instance frees them at once).
import { createHash } from 'node:crypto'
import pg from 'pg'
import type { HeldSharedLock, Locks } from '../shared/index.js'

export interface AdvisoryLockOptions {
  /** postgres://… (store.url); the password from store.password_file when the URL has none. */
  url: string
  password?: string
  connectTimeoutMs: number
  /** Turns are claimed in the store (src/store/turns.ts). */
  claimTurn: (name: string, turn: number) => Promise<boolean>
  /** The connection ended while locks were held: the server has freed them (said so in the log). */
  onLost?: (names: string[], reason: string) => void
}

/** The 64-bit key of a lock name (advisory locks are numbered), from its SHA-256. */
export function advisoryKey(name: string): string {
  return createHash('sha256').update(`portier:${name}`).digest().readBigInt64BE(0).toString()
}

function withPassword(url: string, password: string | undefined): string {
  const parsed = new URL(url)
  if (password === undefined || parsed.password) return url
  parsed.password = encodeURIComponent(password)
  return parsed.toString()
}

/** pg_try_advisory_lock on a dedicated connection; the TTL is the connection's life (the server frees a dead holder's locks). */
export class AdvisoryLocks implements Locks {
  private client: pg.Client | undefined
  private connecting: Promise<pg.Client> | undefined
  /** Names held (or being taken) by this process: a session's advisory locks are re-entrant, an instance's must not be. */
  private readonly held = new Set<string>()
  private closed = false

  constructor(private readonly options: AdvisoryLockOptions) {}

  async tryAcquire(name: string): Promise<HeldSharedLock | undefined> {
    if (this.closed) throw new Error('the lock connection is closed')
    if (this.held.has(name)) return undefined
    this.held.add(name)
    let client: pg.Client
    let locked = false
    try {
      client = await this.connection()
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [advisoryKey(name)])
      locked = rows[0]?.locked === true
    } finally {
      if (!locked) this.held.delete(name)
    }
    if (!locked) return undefined
    let released = false
    return {
      release: async () => {
        if (released) return
        released = true
        // A connection that ended took the lock with it (and forgot what it held).
        if (this.client !== client) return
        await client.query('SELECT pg_advisory_unlock($1::bigint)', [advisoryKey(name)]).catch(() => undefined)
        if (this.client === client) this.held.delete(name)
      },
    }
  }

  claimTurn(name: string, turn: number): Promise<boolean> {
    return this.options.claimTurn(name, turn)
  }

  async close(): Promise<void> {
    this.closed = true
    const client = this.client ?? (await this.connecting?.catch(() => undefined))
    this.client = undefined
    this.held.clear()
    await client?.end().catch(() => undefined)
  }

  private connection(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client)
    this.connecting ??= (async () => {
      const client = new pg.Client({
        connectionString: withPassword(this.options.url, this.options.password),
        connectionTimeoutMillis: this.options.connectTimeoutMs,
        query_timeout: Math.max(1000, this.options.connectTimeoutMs),
        keepAlive: true,
        application_name: 'portier-locks',
      })
      const lost = (reason: string): void => {
        if (this.client !== client) return
        this.client = undefined
        const names = [...this.held]
        this.held.clear()
        if (names.length > 0 && !this.closed) this.options.onLost?.(names, reason)
      }
      // Without a listener an 'error' event would end the process.
      client.on('error', (error: Error) => lost(error.message))
      client.on('end', () => lost('the connection ended'))
      try {
        await client.connect()
      } catch (error) {
        await client.end().catch(() => undefined)
        throw error
      }
      if (this.closed) {
        await client.end().catch(() => undefined)
        throw new Error('the lock connection is closed')
      }
      this.client = client
      return client
    })().finally(() => {
      this.connecting = undefined
    })
    return this.connecting
  }
}
