// Users of the htpasswd file managed from the web UI: added, given a new password, removed; written as `portier passwd` writes them and reloaded at once.
import { accessSync, constants, existsSync } from 'node:fs'
import { dirname } from 'node:path'
import { hashPassword } from './hashes.js'
import type { HtpasswdStore } from './htpasswd.js'
import { MIN_BCRYPT_COST, readUsers, writeUsers } from './passwd.js'
import { GrantError, USER_NAME } from './grants/index.js'

export const MIN_PASSWORD_LENGTH = 8

/** Whether the file can be changed from here, and why not. */
export type Writability = { writable: true } | { writable: false; reason: string }

export interface LocalUsers {
  readonly path: string
  writability(): Writability
  list(): string[]
  /** Adds the user or sets a new password; says which. */
  set(user: string, password: string, mustExist: boolean): Promise<'created' | 'updated'>
  remove(user: string): void
}

function checkPassword(password: unknown): string {
  if (typeof password !== 'string' || password.length < MIN_PASSWORD_LENGTH || password.length > 1024) {
    throw new GrantError('invalid', `a password has ${MIN_PASSWORD_LENGTH} to 1024 characters`)
  }
  return password
}

export function checkUserName(user: unknown): string {
  if (typeof user !== 'string' || !USER_NAME.test(user)) throw new GrantError('invalid', 'a user name has 1 to 255 characters, without ":" or spaces')
  return user
}

/** The htpasswd file behind `store`; every change is written atomically (keeping the file's mode) and loaded before it returns. */
export function createLocalUsers(store: HtpasswdStore): LocalUsers {
  const path = store.path
  const writability = (): Writability => {
    try {
      // A rename replaces the file: the directory must be writable, and the file itself when it exists (a read-only mount says no here).
      accessSync(dirname(path), constants.W_OK)
      if (existsSync(path)) accessSync(path, constants.W_OK)
      return { writable: true }
    } catch (error) {
      return { writable: false, reason: `${path} is read-only for Portier (${(error as NodeJS.ErrnoException).code ?? 'error'}): manage users with "portier passwd" where the file is writable` }
    }
  }
  const requireWritable = (): void => {
    const state = writability()
    if (!state.writable) throw new GrantError('conflict', state.reason)
  }
  return {
    path,
    writability,
    list: () => [...store.userNames].sort(),
    async set(user, password, mustExist) {
      const name = checkUserName(user)
      const secret = checkPassword(password)
      requireWritable()
      const hash = await hashPassword(secret, MIN_BCRYPT_COST)
      // Read after hashing: a change made meanwhile (another admin, portier passwd) is kept.
      const users = readUsers(path)
      const existed = users.has(name)
      if (mustExist && !existed) throw new GrantError('not_found', `no user ${name} in ${path}`)
      if (!mustExist && existed) throw new GrantError('conflict', `the user ${name} exists already; set a new password instead`)
      users.set(name, hash)
      writeUsers(path, users, undefined)
      store.load()
      return existed ? 'updated' : 'created'
    },
    remove(user) {
      const name = checkUserName(user)
      requireWritable()
      const users = readUsers(path)
      if (!users.delete(name)) throw new GrantError('not_found', `no user ${name} in ${path}`)
      writeUsers(path, users, undefined)
      store.load()
    },
  }
}
