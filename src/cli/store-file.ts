// The read-only commands' way into the store file (portier audit, portier times): refused on PostgreSQL,
// a clear line when the file or its table is not there yet, StoreErrors as one line, the file closed after.
import { existsSync } from 'node:fs'
import type { Config } from '../app/config.js'
import { Store, StoreError } from '../store/store.js'

export interface StoreFileRead {
  /** What is read, for the messages: "the audit trail". */
  what: string
  /** The admin API route that reads it on PostgreSQL: "GET /admin/api/audit". */
  adminRoute: string
  /** The table whose migration must have run. */
  table: string
  /** Why the table may be missing, after "the gateway has not started with this store". */
  missingHint?: string
}

/** Runs `use` on the store file opened read-only; resolves with the command's exit code. */
export async function withStoreFile(config: Config['store'], read: StoreFileRead, use: (store: Store) => Promise<number>): Promise<number> {
  if (config.url) {
    process.stderr.write(`portier: the store is PostgreSQL (store.url): read ${read.what} through a running gateway's admin API (${read.adminRoute})\n`)
    return 1
  }
  const path = config.path
  if (!existsSync(path)) {
    process.stderr.write(`portier: no store at ${JSON.stringify(path)} (store.path): the gateway creates it when it starts\n`)
    return 1
  }
  let store: Store | undefined
  try {
    store = Store.open(path, { readOnly: true })
    if (store.version(read.table) === 0) {
      const why = read.missingHint ? `${read.missingHint}, or the gateway has not started with this store` : 'the gateway has not started with this store'
      process.stderr.write(`portier: the store ${JSON.stringify(path)} holds no ${read.what.replace(/^the /, '')} yet (${why})\n`)
      return 1
    }
    return await use(store)
  } catch (error) {
    if (!(error instanceof StoreError)) throw error
    process.stderr.write(`portier: ${error.message}\n`)
    return 1
  } finally {
    store?.close()
  }
}
