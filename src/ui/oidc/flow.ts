// One sign-in in progress: state, nonce and PKCE verifier kept in an encrypted, short-lived cookie, each usable once.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { BoundedCache } from '../../lib/bounded-cache.js'
import { deriveKey } from '../session.js'

/** Carried from the start of a sign-in to its callback. */
export interface Flow {
  state: string
  nonce: string
  codeVerifier: string
  /** The redirect_uri sent in the authorization request: the token request must repeat it. */
  redirectUri: string
  /** Milliseconds since the epoch. */
  expiresAt: number
}

/** `__Host-`: Secure, Path=/, no Domain. SameSite=Lax: the provider's redirect back is a cross-site navigation. */
export const FLOW_COOKIE = '__Host-portier-oidc'
const VERSION = 'o1'
const MAX_COOKIE_LENGTH = 2048
/** Sign-ins started and not finished that this instance remembers as used; beyond it the oldest are forgotten (their codes are single-use at the provider anyway). */
const MAX_CONSUMED = 10_000

export type FlowVerdict = { ok: true; flow: Flow } | { ok: false; reason: 'missing' | 'expired' | 'state' | 'replayed' }

export interface Flows {
  /** A fresh flow and the Set-Cookie header value that carries it. */
  start(fields: Omit<Flow, 'expiresAt'>, now?: number): { flow: Flow; setCookie: string }
  /**
   * The flow of a callback: the cookie must be ours, unexpired, name the `state` the provider sent back,
   * and not have been used before (here). Marks it used.
   */
  finish(cookieValue: string | undefined, state: string | null, now?: number): FlowVerdict
  readonly clearCookie: string
}

export function createFlows(secret: Buffer, ttlMs: number): Flows {
  const key = deriveKey(secret, 'oidc-flow')
  const consumed = new BoundedCache<string, true>({ max: MAX_CONSUMED, ttlMs })
  const cookie = (value: string, maxAgeSeconds: number): string =>
    `${FLOW_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; Secure; SameSite=Lax`

  const open = (value: string): Flow | undefined => {
    if (value.length > MAX_COOKIE_LENGTH) return undefined
    const parts = value.split('.')
    if (parts.length !== 4 || parts[0] !== VERSION) return undefined
    const [, iv, sealed, tag] = parts.map((part) => Buffer.from(part, 'base64url')) as [Buffer, Buffer, Buffer, Buffer]
    if (iv.length !== 12 || tag.length !== 16) return undefined
    let text: string
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, iv)
      decipher.setAAD(Buffer.from(VERSION))
      decipher.setAuthTag(tag)
      text = Buffer.concat([decipher.update(sealed), decipher.final()]).toString('utf8')
    } catch {
      return undefined
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return undefined
    }
    const fields = parsed as Partial<Record<keyof Flow, unknown>>
    if (typeof fields.state !== 'string' || typeof fields.nonce !== 'string' || typeof fields.codeVerifier !== 'string') return undefined
    if (typeof fields.redirectUri !== 'string' || typeof fields.expiresAt !== 'number') return undefined
    return { state: fields.state, nonce: fields.nonce, codeVerifier: fields.codeVerifier, redirectUri: fields.redirectUri, expiresAt: fields.expiresAt }
  }

  return {
    clearCookie: cookie('', 0),
    start(fields, now = Date.now()) {
      const flow: Flow = { ...fields, expiresAt: now + ttlMs }
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      cipher.setAAD(Buffer.from(VERSION))
      const sealed = Buffer.concat([cipher.update(JSON.stringify(flow), 'utf8'), cipher.final()])
      const value = [VERSION, iv, sealed, cipher.getAuthTag()].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.')
      return { flow, setCookie: cookie(value, Math.ceil(ttlMs / 1000)) }
    },
    finish(cookieValue, state, now = Date.now()) {
      if (!cookieValue) return { ok: false, reason: 'missing' }
      const flow = open(cookieValue)
      if (!flow) return { ok: false, reason: 'missing' }
      if (flow.expiresAt <= now) return { ok: false, reason: 'expired' }
      if (state === null || state !== flow.state) return { ok: false, reason: 'state' }
      if (consumed.get(flow.state)) return { ok: false, reason: 'replayed' }
      consumed.set(flow.state, true)
      return { ok: true, flow }
    },
  }
}
