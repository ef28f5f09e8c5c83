// Reads the server name and ALPN protocols from a TLS ClientHello before any TLS library sees it.
// Node picks the certificate (SNICallback) without knowing the ALPN protocols, so a TLS-ALPN-01
// validation (ALPN "acme-tls/1") has to be recognised from the raw bytes first.

export interface ClientHello {
  serverName: string | undefined
  alpn: string[]
}

/** The parsed hello; 'incomplete' when more bytes are needed; 'not-tls' when it is not a ClientHello. */
export type HelloResult = ClientHello | 'incomplete' | 'not-tls'

const RECORD_HANDSHAKE = 22
const HANDSHAKE_CLIENT_HELLO = 1
const EXTENSION_SERVER_NAME = 0
const EXTENSION_ALPN = 16
/** A ClientHello larger than this is not worth waiting for (real ones are under 2 KiB, or ~ 8 KiB with post-quantum key shares). */
export const MAX_HELLO_BYTES = 64 * 1024

/** Joins the payloads of the handshake records at the start of `data` (a hello may span several records). */
function handshakeBytes(data: Buffer): { bytes: Buffer; complete: boolean } | 'not-tls' {
  const parts: Buffer[] = []
  let offset = 0
  let collected = 0
  let needed = Number.POSITIVE_INFINITY
  while (offset + 5 <= data.length) {
    if (data[offset] !== RECORD_HANDSHAKE || data[offset + 1] !== 3) return 'not-tls'
    const length = data.readUInt16BE(offset + 3)
    const body = data.subarray(offset + 5, Math.min(offset + 5 + length, data.length))
    parts.push(body)
    collected += body.length
    if (needed === Number.POSITIVE_INFINITY && collected >= 4) {
      const head = Buffer.concat(parts)
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return 'not-tls'
      needed = 4 + head.readUIntBE(1, 3)
    }
    if (collected >= needed) return { bytes: Buffer.concat(parts).subarray(0, needed), complete: true }
    if (body.length < length) break
    offset += 5 + length
  }
  if (data.length > 0 && data[0] !== RECORD_HANDSHAKE) return 'not-tls'
  return { bytes: Buffer.concat(parts), complete: false }
}

/** Walks the ClientHello body; throws RangeError on truncated fields (treated as not-tls). */
function parseHello(message: Buffer): ClientHello {
  let at = 4 + 2 + 32 // handshake header, legacy_version, random
  at += 1 + message.readUInt8(at) // session id
  at += 2 + message.readUInt16BE(at) // cipher suites
  at += 1 + message.readUInt8(at) // compression methods
  const hello: ClientHello = { serverName: undefined, alpn: [] }
  if (at >= message.length) return hello
  const end = at + 2 + message.readUInt16BE(at)
  at += 2
  if (end > message.length) throw new RangeError('extensions run past the message')
  while (at + 4 <= end) {
    const type = message.readUInt16BE(at)
    const length = message.readUInt16BE(at + 2)
    const body = message.subarray(at + 4, at + 4 + length)
    if (body.length !== length) throw new RangeError('extension runs past the message')
    if (type === EXTENSION_SERVER_NAME && body.length >= 2) {
      let p = 2
      while (p + 3 <= body.length) {
        const nameType = body.readUInt8(p)
        const nameLength = body.readUInt16BE(p + 1)
        if (nameType === 0) hello.serverName = body.subarray(p + 3, p + 3 + nameLength).toString('ascii').toLowerCase()
        p += 3 + nameLength
      }
    } else if (type === EXTENSION_ALPN && body.length >= 2) {
      let p = 2
      while (p < body.length) {
        const protocolLength = body.readUInt8(p)
        hello.alpn.push(body.subarray(p + 1, p + 1 + protocolLength).toString('latin1'))
        p += 1 + protocolLength
      }
    }
    at += 4 + length
  }
  return hello
}

/** Parses the ClientHello at the start of the bytes a client sent so far. */
export function readClientHello(data: Buffer): HelloResult {
  const joined = handshakeBytes(data)
  if (joined === 'not-tls') return 'not-tls'
  if (!joined.complete) return data.length >= MAX_HELLO_BYTES ? 'not-tls' : 'incomplete'
  try {
    return parseHello(joined.bytes)
  } catch {
    return 'not-tls'
  }
}
