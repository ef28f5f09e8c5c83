// The store engines a unit test runs against: SQLite always, PostgreSQL when its server is installed (one server per test file, a fresh database per test).
import tap, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { StoreEngine } from '../../src/store/engine.js'
import { PostgresStore } from '../../src/store/postgres.js'
import { Store } from '../../src/store/store.js'
import { postgresBin, startPostgres, type Postgres } from './postgres.js'

export type EngineName = 'sqlite' | 'postgres'

export const ENGINES: readonly EngineName[] = postgresBin() ? ['sqlite', 'postgres'] : ['sqlite']

let server: Promise<Postgres> | undefined
let databases = 0

/** The file's PostgreSQL server, started on first use and stopped when the file's tests end. */
export function sharedPostgres(): Promise<Postgres> {
  if (!server) {
    server = startPostgres()
    tap.teardown(async () => (await server)?.stop())
  }
  return server
}

/** A fresh, empty store of that engine, closed (and removed) when `t` ends. */
export async function openEngine(t: Test, engine: EngineName, options: { flushIntervalMs?: number } = {}): Promise<StoreEngine> {
  if (engine === 'postgres') {
    const postgres = await sharedPostgres()
    const url = await postgres.createDatabase(`unit_${process.pid}_${++databases}`)
    const store = await PostgresStore.open({ url, ...options })
    t.teardown(() => store.close())
    return store
  }
  const dir = mkdtempSync(join(tmpdir(), 'portier-store-'))
  const store = Store.open(join(dir, 'portier.db'), options)
  t.teardown(() => {
    store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return store
}
