// CSRF defences for the web UI's state-changing calls: a token bound to the session, and a same-origin check.
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { deriveKey, type Session } from './session.js'

export const CSRF_HEADER = 'x-csrf-token'

export interface Csrf {
  /** The token the page sends back in X-CSRF-Token; it only fits the session it was made for. */
  tokenFor(session: Session): string
  /** Whether `presented` is the token of this session. */
  verify(session: Session, presented: string | string[] | undefined): boolean
}

export function createCsrf(secret: Buffer): Csrf {
  const key = deriveKey(secret, 'csrf')
  const tokenFor = (session: Session): string => createHmac('sha256', key).update(session.id).digest('base64url')
  return {
    tokenFor,
    verify(session, presented) {
      if (typeof presented !== 'string' || presented.length > 100) return false
      // Compare the text, not the decoded bytes: base64url decoding ignores the spare low bits of the
      // last character, so several spellings would decode to the same token.
      const given = Buffer.from(presented, 'utf8')
      const expected = Buffer.from(tokenFor(session), 'utf8')
      return given.length === expected.length && timingSafeEqual(given, expected)
    },
  }
}

/**
 * Whether a state-changing request comes from a page of this origin. Browsers send Origin on every
 * POST and DELETE; it must be the whole public origin, or the host the request was sent to (the Host
 * header) under the public origin's scheme: a page served over http:// is another origin than the
 * https:// UI, and anyone on the network can write it. Sec-Fetch-Site, when sent, must say
 * same-origin. A request without Origin is refused: the UI's API is for the UI's pages, and every
 * browser the UI supports sends it.
 */
export function isSameOrigin(headers: IncomingHttpHeaders, publicOrigin: string): boolean {
  const site = headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin') return false
  const origin = headers.origin
  if (typeof origin !== 'string' || origin === 'null') return false
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return false
  }
  if (url.origin.toLowerCase() === publicOrigin.toLowerCase()) return true
  const host = headers.host
  const scheme = new URL(publicOrigin).protocol
  return typeof host === 'string' && url.protocol === scheme && url.host.toLowerCase() === host.toLowerCase()
}
