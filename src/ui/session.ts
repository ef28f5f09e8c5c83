// Web UI sessions: a signed, expiring cookie (HMAC-SHA256, no server-side store) and the key it is signed with.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { loadSecret } from '../config/secret.js'
import { localRevocations, type Revocations } from '../shared/index.js'

export interface Session {
  /** The account; '' for anonymous sessions (auth.mode none). */
  user: string
  /** Random per sign-in: the CSRF token is bound to it and logout revokes it. */
  id: string
  /** Milliseconds since the epoch. */
  issuedAt: number
  expiresAt: number
  /** How the user signed in; absent: with a password (htpasswd). */
  via?: 'oidc'
  /** Groups the identity provider vouched for at sign-in (only those auth.groups declares); the ACL matches them. */
  groups?: string[]
}

/** What a sign-in adds to the user name (single sign-on). */
export interface SessionExtras {
  via?: 'oidc'
  groups?: string[]
}

/** `__Host-`: the browser only keeps it when it is Secure, has Path=/ and no Domain, so no sibling host can plant one. */
export const SESSION_COOKIE = '__Host-portier-ui'
const VERSION = 'v1'
// Browsers keep cookies of up to 4096 bytes; a single sign-on session carries its groups too.
const MAX_COOKIE_LENGTH = 4000
const MIN_SECRET_LENGTH = 32

export interface Sessions {
  /** A new session and the Set-Cookie header value that carries it. */
  issue(user: string, now?: number, extras?: SessionExtras): { session: Session; setCookie: string }
  /** The session a Cookie header carries, when its signature holds and it has not expired or been revoked. */
  fromCookieHeader(header: string | undefined, now?: number): Session | undefined
  /** Verifies one cookie value. */
  verify(value: string, now?: number): Session | undefined
  /**
   * Ends a session early (logout): refused until it would have expired anyway, by this instance at once
   * and, with shared state (shared.redis), by every instance once the promise resolves.
   */
  revoke(session: Session, now?: number): Promise<void>
  /** The Set-Cookie header value that makes the browser drop the cookie. */
  readonly clearCookie: string
  readonly ttlMs: number
}

/** Separate keys for separate jobs, derived from the one configured secret. */
export function deriveKey(secret: Buffer, purpose: 'session' | 'csrf' | 'oidc-flow'): Buffer {
  return createHmac('sha256', secret).update(`portier-ui-${purpose}`).digest()
}

function sign(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest()
}

/** The kind of identifier revoked sessions are kept under in the shared revocations. */
export const SESSION_REVOCATION = 'ui-session'

export function createSessions(secret: Buffer, ttlMs: number, revocations: Revocations = localRevocations()): Sessions {
  if (secret.length < MIN_SECRET_LENGTH) throw new Error(`the UI session secret must have at least ${MIN_SECRET_LENGTH} bytes`)
  const key = deriveKey(secret, 'session')
  // Revoked session ids until their expiry: in this process, or across instances with shared state. Sessions
  // are signed with the shared secret (ui.session_secret[_file]), so any instance can verify any cookie.
  const cookie = (value: string, maxAgeSeconds: number): string =>
    `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=Strict`

  const verify = (value: string, now = Date.now()): Session | undefined => {
    if (value.length > MAX_COOKIE_LENGTH) return undefined
    const parts = value.split('.')
    if (parts.length !== 3 || parts[0] !== VERSION) return undefined
    const [, payload, signature] = parts as [string, string, string]
    const expected = sign(key, `${VERSION}.${payload}`)
    const presented = Buffer.from(signature, 'base64url')
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) return undefined
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
    } catch {
      return undefined
    }
    const fields = parsed as { u?: unknown; i?: unknown; t?: unknown; e?: unknown; v?: unknown; g?: unknown }
    if (typeof fields.u !== 'string' || typeof fields.i !== 'string' || typeof fields.t !== 'number' || typeof fields.e !== 'number') return undefined
    if (fields.e <= now || fields.t > now + 60_000) return undefined
    if (revocations.isRevoked(SESSION_REVOCATION, fields.i, now)) return undefined
    const session: Session = { user: fields.u, id: fields.i, issuedAt: fields.t, expiresAt: fields.e }
    if (fields.v === 'oidc') session.via = 'oidc'
    if (Array.isArray(fields.g)) session.groups = fields.g.filter((group): group is string => typeof group === 'string')
    return session
  }

  return {
    ttlMs,
    clearCookie: cookie('', 0),
    issue(user, now = Date.now(), extras = {}) {
      const session: Session = { user, id: randomBytes(16).toString('base64url'), issuedAt: now, expiresAt: now + ttlMs }
      if (extras.via) session.via = extras.via
      if (extras.groups) session.groups = [...extras.groups]
      const payload = Buffer.from(JSON.stringify({ u: user, i: session.id, t: session.issuedAt, e: session.expiresAt, ...(extras.via ? { v: extras.via } : {}), ...(extras.groups ? { g: extras.groups } : {}) })).toString('base64url')
      const value = `${VERSION}.${payload}.${sign(key, `${VERSION}.${payload}`).toString('base64url')}`
      return { session, setCookie: cookie(value, Math.floor(ttlMs / 1000)) }
    },
    verify,
    fromCookieHeader(header, now = Date.now()) {
      const value = cookieValue(header, SESSION_COOKIE)
      return value === undefined ? undefined : verify(value, now)
    },
    revoke(session) {
      return revocations.revoke(SESSION_REVOCATION, session.id, session.expiresAt)
    },
  }
}

/** The value of one cookie in a Cookie header (the first, if a confused client sends it twice). */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/**
 * The signing secret: ui.session_secret when set, else the file, created with a random key on first
 * start (mode 0600). Instances that share the file or the setting accept each other's sessions.
 */
export function loadSessionSecret(configured: string, file: string): { secret: Buffer; created: boolean } {
  return loadSecret(configured, file, 'ui.session_secret_file')
}
