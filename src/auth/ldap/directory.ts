// One conversation with the directory (ldapts): connect (TLS or StartTLS), search the user's entry and groups as the
// service account, then bind as the user with the password given. Never throws: every failure is a verdict.
import type { Client, Entry } from 'ldapts'
import { ldapts } from './ldapts.js'
import { isIP } from 'node:net'
import type { ConnectionOptions } from 'node:tls'
import { fillFilter } from './filter.js'
import type { LdapConfig } from './section.js'

/** What the directory says of a user name and password. */
export type DirectoryVerdict =
  | { outcome: 'verified'; dn: string; groups: string[] }
  | { outcome: 'wrong_password'; dn: string }
  | { outcome: 'unknown_user' }
  /** The entry is there but refused: its locked attribute is set. */
  | { outcome: 'disabled'; dn: string; reason: string }
  /** The filter found more than one entry: the name does not say who it is. */
  | { outcome: 'ambiguous'; count: number }
  /** The directory could not answer (down, TLS refused, timeout, the service account refused). */
  | { outcome: 'unavailable'; error: string }

/** A user's entry found without a password (refresh tokens): whether it is there and usable, and its groups. */
export type EntryVerdict = { outcome: 'found'; dn: string; groups: string[] } | { outcome: 'unknown_user' | 'disabled' | 'ambiguous' } | { outcome: 'unavailable'; error: string }

export interface DirectorySettings {
  config: LdapConfig
  /** The service account's password (read from bind_password_file). */
  bindPassword: string
  /** PEM of ca_file, when set. */
  ca?: Buffer
}

function errorText(error: unknown): string {
  if (error instanceof ldapts().ResultCodeError) return `${error.name} (LDAP result ${error.code}): ${error.message}`
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  const message = error instanceof Error ? error.message : String(error)
  return code && !message.includes(code) ? `${code}: ${message}` : message
}

/** Attribute values as strings, whether ldapts gave one value, several, or buffers. */
function values(entry: Entry, attribute: string): string[] {
  const key = Object.keys(entry).find((name) => name.toLowerCase() === attribute.toLowerCase())
  if (key === undefined) return []
  const value = entry[key]
  const list = Array.isArray(value) ? value : value === undefined ? [] : [value]
  return list.map((item) => (Buffer.isBuffer(item) ? item.toString('utf8') : String(item)))
}

class Unavailable extends Error {}

export interface DirectoryConnection {
  /** Verifies a password: the entry is searched, then bound to with it. */
  verify(user: string, password: string): Promise<DirectoryVerdict>
  /** Finds a user's entry and groups without a password. */
  find(user: string): Promise<EntryVerdict>
  /** Connects and binds as the service account: whether the directory answers. */
  probe(): Promise<{ ok: true } | { ok: false; error: string }>
}

export function createDirectory(settings: DirectorySettings): DirectoryConnection {
  const { config } = settings
  const { Client, InvalidCredentialsError, ResultCodeError, SizeLimitExceededError } = ldapts()
  const host = new URL(config.url).hostname.replace(/^\[(.*)\]$/, '$1')
  // The certificate is checked against the URL's host, for StartTLS too (its socket carries no host of its own).
  const tlsOptions: ConnectionOptions = { host, ...(isIP(host) === 0 ? { servername: host } : {}), ...(settings.ca ? { ca: settings.ca } : {}) }

  /** Runs `work` on a fresh connection bound as the service account; the connection is always closed. */
  async function withServiceBind<T>(work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({
      url: config.url,
      connectTimeout: config.connect_timeout,
      timeout: config.search_timeout,
      // ldapts takes any TLS option as "connect with TLS": plain ldap:// gets none (StartTLS gets them below).
      ...(config.url.startsWith('ldaps://') ? { tlsOptions } : {}),
      strictDN: false,
    })
    try {
      try {
        if (config.start_tls) await client.startTLS(tlsOptions)
        if (config.bind_dn !== '') await client.bind(config.bind_dn, settings.bindPassword)
      } catch (error) {
        const reason = error instanceof InvalidCredentialsError ? `the service account ${config.bind_dn} (auth.ldap.bind_dn) was refused: ${errorText(error)}` : errorText(error)
        throw new Unavailable(reason)
      }
      return await work(client)
    } finally {
      // A connection that broke cannot say goodbye: unbind's failure changes nothing.
      await client.unbind().catch(() => undefined)
    }
  }

  /** The one entry the user filter finds, or why there is not exactly one. */
  async function entryOf(client: Client, user: string): Promise<{ outcome: 'found'; entry: Entry } | { outcome: 'unknown_user' } | { outcome: 'ambiguous'; count: number }> {
    const attributes = config.locked_attribute === '' ? ['1.1'] : [config.locked_attribute]
    let entries: Entry[]
    try {
      ;({ searchEntries: entries } = await client.search(config.user_base, {
        scope: 'sub',
        filter: fillFilter(config.user_filter, { user }),
        attributes,
        sizeLimit: 2,
        timeLimit: Math.max(1, Math.ceil(config.search_timeout / 1000)),
      }))
    } catch (error) {
      if (error instanceof SizeLimitExceededError) return { outcome: 'ambiguous', count: 2 }
      throw new Unavailable(`searching ${config.user_base} (auth.ldap.user_base) failed: ${errorText(error)}`)
    }
    if (entries.length === 0) return { outcome: 'unknown_user' }
    if (entries.length > 1) return { outcome: 'ambiguous', count: entries.length }
    return { outcome: 'found', entry: entries[0] as Entry }
  }

  async function groupsOf(client: Client, user: string, dn: string): Promise<string[]> {
    if (config.group_base === '') return []
    try {
      const { searchEntries } = await client.search(config.group_base, {
        scope: 'sub',
        filter: fillFilter(config.group_filter, { user, dn }),
        attributes: [config.group_attribute],
        timeLimit: Math.max(1, Math.ceil(config.search_timeout / 1000)),
      })
      return [...new Set(searchEntries.flatMap((entry) => values(entry, config.group_attribute)))].sort()
    } catch (error) {
      throw new Unavailable(`searching groups under ${config.group_base} (auth.ldap.group_base) failed: ${errorText(error)}`)
    }
  }

  const lockOf = (entry: Entry): string | undefined => {
    if (config.locked_attribute === '') return undefined
    const lock = values(entry, config.locked_attribute)
    return lock.length > 0 ? `${config.locked_attribute}: ${lock.join(', ')}` : undefined
  }

  const unavailable = (error: unknown): { outcome: 'unavailable'; error: string } => ({ outcome: 'unavailable', error: error instanceof Unavailable ? error.message : errorText(error) })

  return {
    async verify(user, password) {
      try {
        return await withServiceBind(async (client): Promise<DirectoryVerdict> => {
          const found = await entryOf(client, user)
          if (found.outcome !== 'found') return found
          const { entry } = found
          const dn = entry.dn
          const lock = lockOf(entry)
          if (lock) return { outcome: 'disabled', dn, reason: lock }
          // Groups are read while bound as the service account: a user may not be allowed to read them.
          const groups = await groupsOf(client, user, dn)
          // An empty password would be an unauthenticated bind (RFC 4513 5.1.2), which many servers accept.
          if (password === '') return { outcome: 'wrong_password', dn }
          try {
            await client.bind(dn, password)
          } catch (error) {
            if (error instanceof InvalidCredentialsError) return { outcome: 'wrong_password', dn }
            // Other refusals of a user's bind (ppolicy, account restrictions) refuse the user, not the directory.
            if (error instanceof ResultCodeError) return { outcome: 'disabled', dn, reason: errorText(error) }
            throw error
          }
          return { outcome: 'verified', dn, groups }
        })
      } catch (error) {
        return unavailable(error)
      }
    },
    async find(user) {
      try {
        return await withServiceBind(async (client): Promise<EntryVerdict> => {
          const found = await entryOf(client, user)
          if (found.outcome !== 'found') return { outcome: found.outcome }
          if (lockOf(found.entry)) return { outcome: 'disabled' }
          return { outcome: 'found', dn: found.entry.dn, groups: await groupsOf(client, user, found.entry.dn) }
        })
      } catch (error) {
        return unavailable(error)
      }
    },
    async probe() {
      try {
        // The root DSE: readable by anyone, so this asks the directory something even without bind_dn.
        await withServiceBind((client) => client.search('', { scope: 'base', attributes: ['1.1'] }))
        return { ok: true }
      } catch (error) {
        return { ok: false, error: unavailable(error).error }
      }
    },
  }
}
