// Start-up step: opens the store from config (SQLite at store.path, or PostgreSQL at store.url), and checks a configured store the way check-config does.
import { accessSync, constants, existsSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { creatable, unreadable } from '../config/files.js'
import type { Logger } from '../observe/log.js'
import type { StoreEngine } from './engine.js'
import type { StoreConfig } from './section.js'
import { Store, StoreError } from './store.js'

/** The password in store.password_file (its first line), or undefined when none is configured. */
export function storePassword(config: StoreConfig): string | undefined {
  if (!config.password_file) return undefined
  try {
    return readFileSync(config.password_file, 'utf8').split(/\r?\n/)[0] ?? ''
  } catch (error) {
    throw new StoreError(`store.password_file: ${unreadable(config.password_file, error)}`, { cause: error })
  }
}

/** The gateway's store; a write that fails is logged (pull times may be lost, requests never are). */
export async function openStore(config: StoreConfig, log: Logger): Promise<StoreEngine> {
  const onError = (where: string) => (error: unknown, { dropped }: { dropped: number }) =>
    log.error({ err: error instanceof Error ? error.message : String(error), store: where, dropped }, dropped > 0 ? 'a write to the store failed and was lost' : 'a write to the store failed (kept for the next try)')
  if (config.url) {
    const password = storePassword(config)
    let location = config.url
    // Loaded only when configured: the PostgreSQL client is ~5 MiB of memory a SQLite store never uses.
    const { PostgresStore } = await import('./postgres.js')
    const store = await PostgresStore.open({
      url: config.url,
      ...(password !== undefined ? { password } : {}),
      poolSize: config.pool_size,
      connectTimeoutMs: config.connect_timeout,
      flushIntervalMs: config.flush_interval,
      maxPending: config.max_pending,
      onError: (error, context) => onError(location)(error, context),
      onHealth: (health) => {
        if (health.up) log.info({ store: location }, 'store: PostgreSQL answers again; queued writes go on')
        else log.error({ store: location, reason: health.reason }, 'store: PostgreSQL does not answer; /readyz says not ready, writes that can wait are kept (store.max_pending)')
      },
    })
    location = store.location
    log.info({ engine: 'postgres', url: store.location, pool_size: config.pool_size }, 'store opened')
    return store
  }
  const store = Store.open(config.path, {
    flushIntervalMs: config.flush_interval,
    maxPending: config.max_pending,
    onError: onError(config.path),
  })
  log.info({ engine: 'sqlite', path: resolve(config.path) }, 'store opened')
  return store
}

export interface StoreProblem {
  key: string
  expected: string
  found: string
}

/**
 * What stops `serve` from opening the store. SQLite: an existing file that is not a readable database, or a
 * directory where it cannot be created or written (SQLite writes -wal and -shm files beside it). PostgreSQL:
 * a password file that cannot be read (the URL itself is checked by the section); the server is not
 * contacted (check-config runs where it may not be reachable).
 */
export function storeProblem(config: StoreConfig): StoreProblem | undefined {
  if (config.url) {
    try {
      storePassword(config)
      return undefined
    } catch (error) {
      return { key: 'store.password_file', expected: 'a readable file holding the PostgreSQL password', found: (error as Error).message.replace(/^store\.password_file: /, '') }
    }
  }
  const sqlite = (found: string): StoreProblem => ({ key: 'store.path', expected: 'a SQLite file Portier can open and write, or a path where it can create one', found })
  const path = config.path
  if (!existsSync(path)) {
    const problem = creatable(path)
    return problem === undefined ? undefined : sqlite(problem)
  }
  try {
    accessSync(path, constants.R_OK | constants.W_OK)
    accessSync(dirname(resolve(path)), constants.W_OK)
  } catch (error) {
    return sqlite(`${JSON.stringify(path)}: the file and its directory must be writable (${(error as NodeJS.ErrnoException).code ?? String(error)})`)
  }
  let store: Store | undefined
  try {
    store = Store.open(path, { readOnly: true })
    const row = store.db.prepare('PRAGMA quick_check').get() as { quick_check?: string } | undefined
    if (row?.quick_check !== 'ok') return sqlite(`${JSON.stringify(path)}: the database is damaged (quick_check: ${String(row?.quick_check)})`)
    return undefined
  } catch (error) {
    return sqlite(error instanceof StoreError ? error.message : String(error))
  } finally {
    store?.close()
  }
}
