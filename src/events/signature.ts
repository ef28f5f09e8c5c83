// The HMAC-SHA256 signature a receiver checks to know a POST came from this Portier: X-Portier-Signature: sha256=<hex>.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { readSecretFile } from '../config/files.js'

export const SIGNATURE_HEADER = 'X-Portier-Signature'

/** The header's value for `body` (the exact bytes sent) under `secret`. */
export function sign(secret: Buffer, body: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`
}

/** What a receiver does: recompute over the raw body and compare in constant time. */
export function verify(secret: Buffer, body: string | Buffer, header: string | undefined): boolean {
  if (header === undefined) return false
  const expected = Buffer.from(sign(secret, body))
  const given = Buffer.from(header.trim())
  return expected.length === given.length && timingSafeEqual(expected, given)
}

/** The key in a secret file: its content without the trailing newline editors add. Throws when unreadable or empty. */
export function readSecret(path: string): Buffer {
  return Buffer.from(readSecretFile(path), 'utf8')
}
