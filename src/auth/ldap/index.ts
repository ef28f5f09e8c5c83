// Public surface of auth/ldap: logins against a directory beside the htpasswd file, with verified credentials cached,
// failures throttled like the file's, and the directory's reachability for /readyz.
import { createHmac, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { htpasswdLogin, type Login, type LoginOutcome } from '../basic.js'
import type { HtpasswdStore } from '../htpasswd.js'
import type { Throttle } from '../throttle.js'
import type { Logger } from '../../observe/log.js'
import type { ReadinessCheck } from '../../observe/admin.js'
import { secretText, unreadable } from '../../config/files.js'
import { BoundedCache } from '../../lib/bounded-cache.js'
import { createDirectory, type DirectoryVerdict } from './directory.js'
import type { LdapConfig } from './section.js'

export { ldapSection, type LdapConfig } from './section.js'
export { escapeFilterValue, fillFilter, filterProblem } from './filter.js'
export { ldapFileProblems } from './files.js'

/** Verified credentials and known users remembered at once: clients choose the names, so memory must not grow with them. */
const MAX_REMEMBERED = 10_000

export type DirectoryAccount = { active: boolean; groups: readonly string[] } | 'unavailable'

export interface LdapLogins {
  /** htpasswd and the directory together (auth.ldap.order), under the login throttle. */
  login: Login
  /**
   * Whether a name is a directory user still taken as active: one the directory verified since this
   * process started and has not refused since (synchronous, for web UI sessions).
   */
  accountActive(user: string): boolean
  /** The groups the directory gave an active user (see accountActive), for callers known by name only. */
  groupsOf(user: string): readonly string[] | undefined
  /**
   * What a refresh token of an active directory user is bound to: its entry's DN (Portier never sees a
   * directory password's hash); undefined for others, whose refresh tokens are refused.
   */
  credentialOf(user: string): string | undefined
  /** Looks a user up without a password (refresh tokens): active and groups, or 'unavailable'. */
  account(user: string): Promise<DirectoryAccount>
  /** The directory's reachability, for /readyz. */
  readiness(): ReadinessCheck
  close(): void
}

export interface LdapDeps {
  store: HtpasswdStore
  throttle: Throttle
  log: Logger
}

/** Reads bind_password_file and ca_file; throws a message naming the key and the file. */
function loadSecrets(config: LdapConfig): { bindPassword: string; ca?: Buffer } {
  let bindPassword = ''
  if (config.bind_password_file !== '') {
    try {
      bindPassword = secretText(readFileSync(config.bind_password_file))
    } catch (error) {
      throw new Error(`auth.ldap.bind_password_file: ${unreadable(config.bind_password_file, error, `chmod 0640 ${config.bind_password_file}`)}`)
    }
  }
  if (config.ca_file === '') return { bindPassword }
  try {
    return { bindPassword, ca: readFileSync(config.ca_file) }
  } catch (error) {
    throw new Error(`auth.ldap.ca_file: ${unreadable(config.ca_file, error)}`)
  }
}

export function createLdapLogins(config: LdapConfig, deps: LdapDeps): LdapLogins {
  const { store, throttle, log } = deps
  const directory = createDirectory({ config, ...loadSecrets(config) })
  const local = htpasswdLogin(store, throttle)
  // Keys of the verified-credentials cache: an HMAC under a key that never leaves this process, so the
  // cache holds nothing a stolen heap dump could test passwords against offline.
  const cacheKey = randomBytes(32)
  const keyOf = (user: string, password: string): string => createHmac('sha256', cacheKey).update(user).update('\0').update(password).digest('base64')
  const verified = new BoundedCache<string, readonly string[]>({ max: MAX_REMEMBERED })
  /** Directory users verified (or looked up) and not refused since, with their groups. */
  const active = new BoundedCache<string, { dn: string; groups: readonly string[] }>({ max: MAX_REMEMBERED })
  const accounts = new BoundedCache<string, { active: boolean; groups: readonly string[] }>({ max: MAX_REMEMBERED })
  /** Checks running now, by credential: many connections with the same credential make one check. */
  const checking = new Map<string, Promise<DirectoryVerdict | 'locked' | 'busy'>>()
  let state: { status: 'unknown' | 'up' | 'down'; since: number; error?: string } = { status: 'unknown', since: Date.now() }

  const markUp = (): void => {
    if (state.status === 'down') log.info({ url: config.url, down_ms: Date.now() - state.since }, 'LDAP directory reachable again')
    if (state.status !== 'up') state = { status: 'up', since: Date.now() }
  }
  const markDown = (error: string): void => {
    if (state.status !== 'down') {
      log.error({ url: config.url, err: error }, 'LDAP directory unreachable: its users get 503 (not 401) until it answers again')
      state = { status: 'down', since: Date.now(), error }
    } else state.error = error
  }

  /** One directory check under the throttle; the attempt is counted before the directory is asked. */
  async function check(user: string, password: string, clientIp: string, localUser: boolean): Promise<DirectoryVerdict | 'locked' | 'busy'> {
    if (checking.size >= config.max_checks) return 'busy'
    const admission = throttle.attempt(user, clientIp)
    if (!admission) return 'locked'
    const verdict = await directory.verify(user, password)
    switch (verdict.outcome) {
      case 'verified':
        admission.succeeded()
        throttle.succeeded(user, clientIp)
        break
      case 'unavailable':
        admission.cancelled()
        break
      case 'unknown_user':
        // With ldap_first, a name the directory does not know goes on to the htpasswd file, which counts it.
        if (localUser) admission.cancelled()
        else admission.failed()
        break
      default:
        admission.failed()
    }
    return verdict
  }

  async function directoryLogin(user: string, password: string, clientIp: string, localUser: boolean): Promise<LoginOutcome> {
    if (throttle.retryAfter(user, clientIp) > 0) return 'locked'
    const key = keyOf(user, password)
    const groups = verified.get(key)
    if (groups !== undefined) return { via: 'ldap', groups }
    let running = checking.get(key)
    if (!running) {
      running = check(user, password, clientIp, localUser)
      const started = running
      checking.set(key, started)
      const done = (): void => {
        checking.delete(key)
      }
      started.then(done, done)
    }
    const verdict = await running
    if (verdict === 'locked' || verdict === 'busy') return verdict
    if (verdict.outcome === 'unavailable') markDown(verdict.error)
    else markUp()
    switch (verdict.outcome) {
      case 'verified':
        verified.set(key, verdict.groups, config.cache_ttl)
        active.set(user, { dn: verdict.dn, groups: verdict.groups })
        return { via: 'ldap', groups: verdict.groups }
      case 'unavailable':
        // ldap_first: the file's users still sign in while the directory is down.
        return localUser ? local(user, password, clientIp) : 'unavailable'
      case 'unknown_user':
        active.delete(user)
        return localUser ? local(user, password, clientIp) : false
      case 'disabled':
        active.delete(user)
        log.warn({ user, dn: verdict.dn, reason: verdict.reason }, 'LDAP user refused: the account is disabled')
        return false
      case 'ambiguous':
        log.error({ user, entries: verdict.count, filter: config.user_filter, base: config.user_base }, 'LDAP user refused: auth.ldap.user_filter finds more than one entry for this name')
        return false
      case 'wrong_password':
        return false
    }
  }

  let probing = false
  const probe = (): void => {
    if (probing) return
    probing = true
    directory
      .probe()
      .then((result) => (result.ok ? markUp() : markDown(result.error)))
      .catch((error: unknown) => markDown(String(error)))
      .finally(() => {
        probing = false
      })
  }
  probe()
  const timer = config.health_interval > 0 ? setInterval(probe, config.health_interval) : undefined
  timer?.unref()
  if (config.url.startsWith('ldap://') && !config.start_tls) log.warn({ url: config.url }, 'auth.ldap: passwords go to the directory unencrypted (use an ldaps:// URL or start_tls: true)')
  log.info({ url: config.url, start_tls: config.start_tls, user_base: config.user_base, group_base: config.group_base || undefined, order: config.order }, 'LDAP logins enabled')

  return {
    login: async (user, password, clientIp) => {
      const localUser = store.hashOf(user) !== undefined
      if (localUser && config.order === 'htpasswd_first') return local(user, password, clientIp)
      return directoryLogin(user, password, clientIp, localUser)
    },
    accountActive: (user) => active.has(user),
    groupsOf: (user) => active.peek(user)?.groups,
    credentialOf: (user) => {
      const entry = active.peek(user)
      return entry ? `ldap:${entry.dn}` : undefined
    },
    async account(user) {
      const known = accounts.get(user)
      if (known) return known
      const found = await directory.find(user)
      if (found.outcome === 'unavailable') {
        markDown(found.error)
        return 'unavailable'
      }
      markUp()
      const account = found.outcome === 'found' ? { active: true, groups: found.groups } : { active: false, groups: [] }
      if (found.outcome === 'found') active.set(user, { dn: found.dn, groups: found.groups })
      else active.delete(user)
      // Short-lived: a refresh asks whether the account is active and then for its groups.
      accounts.set(user, account, Math.min(config.cache_ttl, 10_000))
      return account
    },
    readiness: () => ({
      name: 'ldap',
      ready: state.status !== 'down' || !config.readiness,
      detail: { url: config.url, status: state.status, since: new Date(state.since).toISOString(), ...(state.error ? { error: state.error } : {}) },
    }),
    close: () => clearInterval(timer),
  }
}
