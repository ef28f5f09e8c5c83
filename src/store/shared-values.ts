// Shared values kept in the store (shared_values), followed by polling: how instances that share a PostgreSQL store but no Redis follow each other's maintenance switch.
import { randomBytes } from 'node:crypto'
import type { Logger } from '../observe/log.js'
import type { SharedValues } from '../shared/types.js'
import type { Migrations, StoreEngine } from './engine.js'

export const SHARED_VALUE_MIGRATIONS: Migrations = {
  sqlite: ['CREATE TABLE shared_values (name TEXT PRIMARY KEY, value TEXT NOT NULL, version INTEGER NOT NULL, set_by TEXT NOT NULL, set_at TEXT NOT NULL)'],
  postgres: ['CREATE TABLE shared_values (name TEXT PRIMARY KEY, value TEXT NOT NULL, version BIGINT NOT NULL, set_by TEXT NOT NULL, set_at TEXT NOT NULL)'],
}

/**
 * SharedValues over the store: set() writes the value with a version one higher than the stored one;
 * every instance reads the table every `pollMs` and tells its listeners of each value whose version
 * moved and that another instance set. An instance that starts is told the stored values on its first
 * read. A set() the store refuses is kept and written on a later read: the switch holds here meanwhile.
 */
export class StoreValues implements SharedValues {
  private readonly instance = randomBytes(8).toString('hex')
  private readonly versions = new Map<string, number>()
  private readonly listeners = new Map<string, Set<(value: string) => void>>()
  private readonly unsaved = new Map<string, string>()
  /** Sets made here per name: a read that began before one of them must not apply what it read (the set supersedes it). */
  private readonly localSets = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private polling: Promise<void> | undefined
  private failing = false

  constructor(
    private readonly store: StoreEngine,
    readonly pollMs: number,
    private readonly log: Logger,
  ) {}

  /** Creates the table (once across instances) and starts following it. */
  async start(): Promise<void> {
    await this.store.migrateModule('shared_values', SHARED_VALUE_MIGRATIONS)
    // poll() catches what the store throws; the catch is for form.
    this.timer = setInterval(() => {
      this.poll().catch(() => undefined)
    }, this.pollMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  async set(name: string, value: string): Promise<void> {
    this.localSets.set(name, (this.localSets.get(name) ?? 0) + 1)
    this.unsaved.delete(name)
    try {
      await this.save(name, value)
    } catch (error) {
      this.unsaved.set(name, value)
      this.log.warn({ value: name, err: error instanceof Error ? error.message : String(error) }, 'shared value not stored (the store does not answer): held here, stored when it answers')
    }
  }

  watch(name: string, listener: (value: string) => void): () => void {
    const set = this.listeners.get(name) ?? new Set()
    set.add(listener)
    this.listeners.set(name, set)
    // The stored value reaches a new listener on the next read, as another instance's switch would.
    if (!this.versions.has(name)) this.versions.set(name, 0)
    this.poll().catch(() => undefined)
    return () => {
      set.delete(listener)
    }
  }

  /** One read of the table (one at a time); exposed for tests. */
  poll(): Promise<void> {
    this.polling ??= this.readOnce().finally(() => {
      this.polling = undefined
    })
    return this.polling
  }

  private async save(name: string, value: string): Promise<void> {
    const [result] = await this.store.atomic([{
      sql: 'INSERT INTO shared_values (name, value, version, set_by, set_at) VALUES (?, ?, 1, ?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value, version = shared_values.version + 1, set_by = excluded.set_by, set_at = excluded.set_at RETURNING version',
      params: [name, value, this.instance, new Date().toISOString()],
    }])
    const version = Number(result?.rows[0]?.version)
    if (Number.isFinite(version) && version > (this.versions.get(name) ?? 0)) this.versions.set(name, version)
  }

  private async readOnce(): Promise<void> {
    try {
      for (const [name, value] of [...this.unsaved]) {
        await this.save(name, value)
        if (this.unsaved.get(name) === value) this.unsaved.delete(name)
      }
      const names = [...this.listeners.keys()]
      if (names.length === 0) return
      const setsBefore = new Map(this.localSets)
      const rows = await this.store.all(`SELECT name, value, version, set_by FROM shared_values WHERE name IN (${names.map(() => '?').join(', ')})`, names)
      if (this.failing) this.log.info({}, 'shared values: the store answers again')
      this.failing = false
      for (const row of rows) {
        const name = String(row.name)
        const version = Number(row.version)
        // Versions only move forward; a value set here while this read was under way is newer than what it read.
        if (version <= (this.versions.get(name) ?? 0)) continue
        if ((this.localSets.get(name) ?? 0) !== (setsBefore.get(name) ?? 0)) continue
        this.versions.set(name, version)
        if (row.set_by === this.instance && !this.unsaved.has(name)) continue
        for (const listener of this.listeners.get(name) ?? []) listener(String(row.value))
      }
    } catch (error) {
      if (!this.failing) this.log.warn({ err: error instanceof Error ? error.message : String(error) }, 'shared values: the store does not answer; keeping the last known values')
      this.failing = true
    }
  }
}
