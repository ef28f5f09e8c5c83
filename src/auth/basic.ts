// Basic authentication against an htpasswd file, answering with the challenge Docker clients expect.
import type { IncomingHttpHeaders } from 'node:http'
import { RegistryError } from '../registry/errors.js'
import type { HtpasswdStore } from './htpasswd.js'
import type { Throttle } from './throttle.js'

export interface Identity {
  /** The account name, or '' for anonymous callers. */
  user: string
  via: 'htpasswd' | 'anonymous'
}

export interface Authenticator {
  /**
   * Who is calling: anonymous when no credentials were sent; throws UNAUTHORIZED for wrong ones and
   * TOOMANYREQUESTS while the user or address is locked out after repeated failures.
   */
  authenticate(headers: IncomingHttpHeaders, clientIp: string): Promise<Identity>
  /** The 401 that asks a client for credentials (the challenge header Docker clients expect). */
  challenge(detail?: unknown): RegistryError
  /** False when auth is off: then nothing, not even the base endpoint, asks for credentials. */
  readonly asksForCredentials: boolean
}

export const anonymous: Authenticator = {
  authenticate: async () => ({ user: '', via: 'anonymous' }),
  challenge: (detail) => new RegistryError('UNAUTHORIZED', detail),
  asksForCredentials: false,
}

export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const match = header ? /^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header) : null
  if (!match) return undefined
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

export function createBasicAuthenticator(store: HtpasswdStore, realm: string, throttle: Throttle): Authenticator {
  const header = { 'WWW-Authenticate': `Basic realm="${realm.replace(/"/g, "'")}"` }
  const challenge = (detail?: unknown, message?: string): RegistryError => new RegistryError('UNAUTHORIZED', detail, header, message)
  return {
    challenge,
    asksForCredentials: true,
    async authenticate(headers, clientIp) {
      if (headers.authorization === undefined) return { user: '', via: 'anonymous' }
      const credentials = parseBasic(headers.authorization)
      if (!credentials) throw challenge({ reason: 'expected Basic credentials' })
      const wait = throttle.retryAfter(credentials.user, clientIp)
      if (wait > 0) {
        throw new RegistryError('TOOMANYREQUESTS', { reason: 'too many failed logins; try later' }, { 'Retry-After': String(wait) })
      }
      if (!(await store.verify(credentials.user, credentials.password))) {
        throttle.failed(credentials.user, clientIp)
        throw challenge({ reason: 'invalid username or password' }, 'authentication failed')
      }
      throttle.succeeded(credentials.user, clientIp)
      return { user: credentials.user, via: 'htpasswd' }
    },
  }
}
