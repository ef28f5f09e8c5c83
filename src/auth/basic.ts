// Basic authentication against an htpasswd file (or any Login, e.g. a directory's), answering with the challenge Docker clients expect.
import type { IncomingHttpHeaders } from 'node:http'
import { RegistryError } from '../registry/errors.js'
import type { CheckOutcome, HtpasswdStore } from './htpasswd.js'
import type { Throttle } from './throttle.js'
import type { Scope } from '../registry/classify.js'

export interface Identity {
  /** The account name, or '' for anonymous callers. */
  user: string
  via: 'htpasswd' | 'ldap' | 'token' | 'access-token' | 'anonymous'
  /** Groups the credential's source vouches for (see Caller.groups). */
  groups?: readonly string[]
  /** An access token's scopes: the ACL grants at most these (see Caller.limit). */
  limit?: readonly Scope[]
  /** A robot account's access token: granted exactly `limit` (see Caller.robot). */
  robot?: boolean
  /** The access token (its id, tok_…) that was the credential, never its secret: the audit trail names it. */
  accessToken?: string
  /** What a verified token grants (token mode only). */
  access?: Scope[]
}

/** What a stage knows about the request when it must authenticate or challenge. */
export interface AuthContext {
  clientIp: string
  /** e.g. https://registry.example.com, for the token realm. */
  publicOrigin: string
  /** The scopes the operation needs (for the Bearer challenge). */
  scopes: Scope[]
}

export type ChallengeError = 'invalid_token' | 'insufficient_scope'

export interface Authenticator {
  /**
   * Who is calling: anonymous when no credentials were sent; throws UNAUTHORIZED for wrong ones,
   * TOOMANYREQUESTS while the user or address is locked out after repeated failures, and UNAVAILABLE
   * (503, Retry-After) when too many password checks are waiting for a worker.
   */
  authenticate(headers: IncomingHttpHeaders, context: AuthContext): Promise<Identity>
  /** The 401 that asks a client for credentials (the challenge header Docker clients expect). */
  challenge(context: AuthContext, detail?: unknown, error?: ChallengeError): RegistryError
  /** False when auth is off: then nothing, not even the base endpoint, asks for credentials. */
  readonly asksForCredentials: boolean
  /** True when anonymous callers may reach the ACL (Basic); false when they must fetch a token first. */
  readonly anonymousReachesAcl: boolean
}

export const anonymous: Authenticator = {
  authenticate: async () => ({ user: '', via: 'anonymous' }),
  challenge: (_context, detail) => new RegistryError('UNAUTHORIZED', detail),
  asksForCredentials: false,
  anonymousReachesAcl: true,
}

export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const match = header ? /^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header) : null
  if (!match) return undefined
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

/** A verified password: which source vouched for it and the groups it vouches for. */
export interface Verified {
  via: 'htpasswd' | 'ldap'
  groups?: readonly string[]
}

/**
 * The outcome of one login under the throttle: Verified, false for wrong credentials, 'locked' while
 * locked out, 'busy' when too many checks wait, 'unavailable' when the user directory cannot be reached.
 */
export type LoginOutcome = Verified | false | 'locked' | 'busy' | 'unavailable'

/** Checks a user name and password for a client address (see htpasswdLogin, and auth/ldap for a directory). */
export type Login = (user: string, password: string, clientIp: string) => Promise<LoginOutcome>

/** Logins against the htpasswd file alone. */
export function htpasswdLogin(store: HtpasswdStore, throttle: Throttle): Login {
  return async (user, password, clientIp) => {
    const outcome = await verifyThrottled(store, throttle, user, password, clientIp)
    return outcome === true ? { via: 'htpasswd' } : outcome
  }
}

/** Retry-After for a 503 while the user directory cannot be reached. */
export const DIRECTORY_RETRY_AFTER_SECONDS = 5

/** The 503 for a login the user directory (LDAP) could not answer: not a wrong password. */
export function directoryUnavailable(): RegistryError {
  return new RegistryError('UNAVAILABLE', { reason: 'the user directory (LDAP) cannot be reached; try again shortly' }, { 'Retry-After': String(DIRECTORY_RETRY_AFTER_SECONDS) }, 'the user directory cannot be reached')
}

export function createBasicAuthenticator(login: Login, realm: string, throttle: Throttle): Authenticator {
  const header = { 'WWW-Authenticate': `Basic realm="${realm.replace(/"/g, "'")}"` }
  const challenge = (detail?: unknown, message?: string): RegistryError => new RegistryError('UNAUTHORIZED', detail, header, message)
  return {
    challenge: (_context, detail) => challenge(detail),
    asksForCredentials: true,
    anonymousReachesAcl: true,
    async authenticate(headers, context) {
      if (headers.authorization === undefined) return { user: '', via: 'anonymous' }
      const credentials = parseBasic(headers.authorization)
      if (!credentials) throw challenge({ reason: 'expected Basic credentials' })
      // `Basic Og==` (":"): skopeo and podman send empty credentials when they have none. Anonymous, as
      // without the header (the ACL decides; a 401 challenge otherwise), never a failed login to throttle.
      if (credentials.user === '' && credentials.password === '') return { user: '', via: 'anonymous' }
      const user = await login(credentials.user, credentials.password, context.clientIp)
      if (user === 'locked') {
        throw new RegistryError('TOOMANYREQUESTS', { reason: 'too many failed logins; try later' }, { 'Retry-After': String(Math.max(1, throttle.retryAfter(credentials.user, context.clientIp))) })
      }
      if (user === 'busy') throw passwordChecksBusy()
      if (user === 'unavailable') throw directoryUnavailable()
      if (!user) throw challenge({ reason: 'invalid username or password' }, 'authentication failed')
      return { user: credentials.user, via: user.via, ...(user.groups ? { groups: user.groups } : {}) }
    },
  }
}

/** Retry-After for a 503 when too many password checks wait: they drain within about a second. */
export const BUSY_RETRY_AFTER_SECONDS = 1

/** The 503 for a password check refused because too many are waiting for a worker. */
export function passwordChecksBusy(): RegistryError {
  return new PasswordChecksBusy('UNAVAILABLE', { reason: 'too many password checks at once; try again shortly' }, { 'Retry-After': String(BUSY_RETRY_AFTER_SECONDS) }, 'too many password checks at once')
}

/**
 * One password check under the throttle: whether it was right, 'locked' while locked out, 'busy' when
 * too many checks wait. The attempt is counted before the password is checked (Throttle.attempt).
 */
export async function verifyThrottled(store: HtpasswdStore, throttle: Throttle, user: string, password: string, clientIp: string): Promise<CheckOutcome> {
  // Without shared counters check() answers from memory; with them it also asks whether another instance locked this login.
  if ((await throttle.check(user, clientIp)) > 0) return 'locked'
  const outcome = await store.check(user, password, { admit: () => throttle.attempt(user, clientIp) })
  if (outcome === true) throttle.succeeded(user, clientIp)
  // A failure is in the shared counters before it is answered: the client's next try at any instance counts it.
  else if (outcome === false) await throttle.settled()
  return outcome
}

/**
 * A login name as the logs, the audit trail and webhooks may show it: a name tried is client input, so
 * control characters (a terminal's escape sequences, NUL) become U+FFFD, and it is cut to 256 characters.
 */
export function shownLoginName(name: string): string {
  return name.slice(0, 256).replace(CONTROL_CHARACTERS, '\uFFFD')
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/g

/** The 503 for too many password checks at once: the clients' burst, not a backend that is down (logged as a warning). */
export class PasswordChecksBusy extends RegistryError {}
