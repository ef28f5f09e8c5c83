// The few DER (ASN.1 distinguished encoding) constructs one X.509 certificate needs, as Buffers.
import { isIP } from 'node:net'

/** Tag, definite length (short form below 128 bytes, long form above), contents. */
export function tlv(tag: number, contents: Buffer): Buffer {
  const length = contents.length
  if (length < 0x80) return Buffer.concat([Buffer.from([tag, length]), contents])
  const bytes: number[] = []
  for (let left = length; left > 0; left = Math.floor(left / 256)) bytes.unshift(left % 256)
  return Buffer.concat([Buffer.from([tag, 0x80 | bytes.length, ...bytes]), contents])
}

export const sequence = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items))
export const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items))
export const octetString = (contents: Buffer): Buffer => tlv(0x04, contents)
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'))
export const booleanTrue = (): Buffer => Buffer.from([0x01, 0x01, 0xff])
/** A context-specific constructed tag ([n] EXPLICIT). */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner)

/** A BIT STRING of whole bytes (no unused bits). */
export const bitString = (bytes: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), bytes]))

/**
 * A named-bit BIT STRING (X.509 KeyUsage): bit 0 is the most significant bit of the first byte; DER drops
 * trailing zero bits, so the unused-bits count is set from the last bit that is on.
 */
export function namedBits(bits: number[]): Buffer {
  if (bits.length === 0) return tlv(0x03, Buffer.from([0]))
  const last = Math.max(...bits)
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1)
  for (const bit of bits) bytes[bit >> 3] = bytes[bit >> 3] | (0x80 >> (bit & 7))
  return tlv(0x03, Buffer.concat([Buffer.from([7 - (last & 7)]), bytes]))
}

/** A non-negative INTEGER from big-endian bytes (a leading 0 is added when the top bit is set, leading zeros dropped). */
export function unsignedInteger(bytes: Buffer): Buffer {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed = bytes.subarray(start)
  const contents = ((trimmed[0] ?? 0) & 0x80) !== 0 || trimmed.length === 0 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed
  return tlv(0x02, contents)
}

export const smallInteger = (value: number): Buffer => unsignedInteger(Buffer.from([value & 0xff]))

/** An OBJECT IDENTIFIER from its dotted form ("2.5.29.17"). */
export function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number)
  const [first = 0, second = 0, ...rest] = arcs
  const bytes: number[] = [first * 40 + second]
  for (const arc of rest) {
    const base128: number[] = [arc & 0x7f]
    for (let left = Math.floor(arc / 128); left > 0; left = Math.floor(left / 128)) base128.unshift(0x80 | (left & 0x7f))
    bytes.push(...base128)
  }
  return tlv(0x06, Buffer.from(bytes))
}

/** UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5), to the second, in UTC. */
export function time(date: Date): Buffer {
  const iso = date.toISOString() // 2026-12-03T22:55:29.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') // 20261203225529
  const year = date.getUTCFullYear()
  return year >= 1950 && year < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`, 'ascii')) : tlv(0x18, Buffer.from(`${digits}Z`, 'ascii'))
}

/** The bytes of an IPv4 (4) or IPv6 (16) address, as a subjectAltName iPAddress holds them. */
export function ipBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number))
  if (isIP(address) !== 6) throw new Error(`not an IP address: ${address}`)
  let text = address
  // An IPv4 tail (::ffff:10.1.2.3) becomes two hex groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number]
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const groups = (part: string | undefined): string[] => (part ? part.split(':') : [])
  const left = groups(head)
  const right = groups(tail)
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
  const bytes = Buffer.alloc(16)
  all.forEach((group, index) => bytes.writeUInt16BE(parseInt(group, 16), index * 2))
  return bytes
}
