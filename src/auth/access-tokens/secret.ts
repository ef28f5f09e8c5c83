// Access token secrets: `portier_<random><checksum>`, recognisable in logs and by secret scanners, stored only as a SHA-256 hash.
import { createHash, randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

export const TOKEN_PREFIX = 'portier_'
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** 40 base62 characters: about 238 bits from the CSPRNG. */
const RANDOM_LENGTH = 40
const CHECKSUM_LENGTH = 6
const SHAPE = new RegExp(`^${TOKEN_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`)

function base62(value: number, length: number): string {
  let out = ''
  let rest = value
  for (let i = 0; i < length; i++) {
    out = (ALPHABET[rest % 62] as string) + out
    rest = Math.floor(rest / 62)
  }
  return out
}

function checksum(body: string): string {
  return base62(crc32(body), CHECKSUM_LENGTH)
}

/** A new secret. Rejection sampling keeps every character uniform (bytes ≥ 248 are drawn again). */
export function generateSecret(): string {
  let body = ''
  while (body.length < RANDOM_LENGTH) {
    for (const byte of randomBytes(64)) {
      if (byte < 248 && body.length < RANDOM_LENGTH) body += ALPHABET[byte % 62]
    }
  }
  return `${TOKEN_PREFIX}${body}${checksum(body)}`
}

/**
 * Whether `text` is shaped like an access token with a valid checksum: a password that is not is
 * checked as a password, and a mistyped token is refused without a store lookup.
 */
export function isAccessTokenSecret(text: string): boolean {
  if (!SHAPE.test(text)) return false
  const body = text.slice(TOKEN_PREFIX.length, TOKEN_PREFIX.length + RANDOM_LENGTH)
  return text.endsWith(checksum(body))
}

/** Whether `text` starts like a token (a token with a bad checksum is still a token, not a password). */
export function looksLikeAccessToken(text: string): boolean {
  return text.startsWith(TOKEN_PREFIX)
}

/**
 * The stored form: SHA-256, hex. A slow hash (bcrypt, argon2) protects low-entropy passwords from
 * guessing after a leak of the store; these secrets carry ~238 random bits, so no guessing attack
 * exists for a slow hash to slow down, and a fast hash lets every request be checked by lookup.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

/** The last characters, shown in lists so a holder can tell tokens apart; reveals nothing usable. */
export function secretHint(secret: string): string {
  return secret.slice(-4)
}
