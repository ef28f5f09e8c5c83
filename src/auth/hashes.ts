// Password hash formats found in htpasswd files: bcrypt (preferred), Apache MD5 ($apr1$) and {SHA}.
import { createHash, timingSafeEqual } from 'node:crypto'
import bcrypt from 'bcryptjs'

export type HashKind = 'bcrypt' | 'apr1' | 'sha1' | 'unknown'

export function hashKind(hash: string): HashKind {
  if (/^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/.test(hash)) return 'bcrypt'
  if (/^\$apr1\$[^$]{1,8}\$[./0-9A-Za-z]{22}$/.test(hash)) return 'apr1'
  if (/^\{SHA\}[A-Za-z0-9+/]{27}=$/.test(hash)) return 'sha1'
  return 'unknown'
}

const itoa64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

function to64(value: number, count: number): string {
  let out = ''
  let v = value
  for (let i = 0; i < count; i++) {
    out += itoa64[v & 0x3f]
    v >>>= 6
  }
  return out
}

const md5 = (...parts: Buffer[]): Buffer => createHash('md5').update(Buffer.concat(parts)).digest()

/** Apache's MD5-crypt, as `htpasswd -m` and nginx produce it. */
export function apr1(password: string, salt: string): string {
  const pw = Buffer.from(password)
  const sl = Buffer.from(salt)
  const magic = Buffer.from('$apr1$')
  let final = md5(pw, sl, pw)
  const parts: Buffer[] = [pw, magic, sl]
  for (let left = pw.length; left > 0; left -= 16) parts.push(final.subarray(0, Math.min(left, 16)))
  for (let i = pw.length; i > 0; i >>= 1) parts.push(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1))
  final = md5(...parts)
  for (let i = 0; i < 1000; i++) {
    const round: Buffer[] = [i & 1 ? pw : final]
    if (i % 3) round.push(sl)
    if (i % 7) round.push(pw)
    round.push(i & 1 ? final : pw)
    final = md5(...round)
  }
  const b = final
  const encoded =
    to64(((b[0] as number) << 16) | ((b[6] as number) << 8) | (b[12] as number), 4) +
    to64(((b[1] as number) << 16) | ((b[7] as number) << 8) | (b[13] as number), 4) +
    to64(((b[2] as number) << 16) | ((b[8] as number) << 8) | (b[14] as number), 4) +
    to64(((b[3] as number) << 16) | ((b[9] as number) << 8) | (b[15] as number), 4) +
    to64(((b[4] as number) << 16) | ((b[10] as number) << 8) | (b[5] as number), 4) +
    to64(b[11] as number, 2)
  return `$apr1$${salt}$${encoded}`
}

function sameText(a: string, b: string): boolean {
  const left = Buffer.from(a)
  const right = Buffer.from(b)
  return left.length === right.length && timingSafeEqual(left, right)
}

/** Checks a password against a stored hash; bcrypt runs asynchronously so it never blocks the event loop. */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  switch (hashKind(hash)) {
    case 'bcrypt':
      return bcrypt.compare(password, hash)
    case 'apr1':
      return sameText(apr1(password, hash.split('$')[2] as string), hash)
    case 'sha1':
      return sameText(`{SHA}${createHash('sha1').update(password).digest('base64')}`, hash)
    default:
      return false
  }
}

/** bcrypt in the `$2y$` form that htpasswd and registry:2 read. */
export async function hashPassword(password: string, cost = 10): Promise<string> {
  const hash = await bcrypt.hash(password, cost)
  return hash.replace(/^\$2[ab]\$/, '$2y$')
}
