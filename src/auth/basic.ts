// Basic authentication against an htpasswd file, answering with the challenge Docker clients expect.
import type { IncomingHttpHeaders } from 'node:http'
import { RegistryError } from '../registry/errors.js'
import type { HtpasswdStore } from './htpasswd.js'

export interface Identity {
  /** The account name, or '' for anonymous callers. */
  user: string
  via: 'htpasswd' | 'anonymous'
}

export interface Authenticator {
  /** Who is calling; throws UNAUTHORIZED (with the challenge header) when credentials are missing or wrong. */
  authenticate(headers: IncomingHttpHeaders): Promise<Identity>
}

export const anonymous: Authenticator = {
  authenticate: async () => ({ user: '', via: 'anonymous' }),
}

export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  const match = header ? /^Basic\s+([A-Za-z0-9+/=._~-]+)\s*$/i.exec(header) : null
  if (!match) return undefined
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return undefined
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

export function createBasicAuthenticator(store: HtpasswdStore, realm: string): Authenticator {
  const challenge = { 'WWW-Authenticate': `Basic realm="${realm.replace(/"/g, "'")}"` }
  return {
    async authenticate(headers) {
      const credentials = parseBasic(headers.authorization)
      if (!credentials) throw new RegistryError('UNAUTHORIZED', undefined, challenge)
      if (!(await store.verify(credentials.user, credentials.password))) {
        throw new RegistryError('UNAUTHORIZED', { reason: 'invalid username or password' }, challenge, 'authentication failed')
      }
      return { user: credentials.user, via: 'htpasswd' }
    },
  }
}
