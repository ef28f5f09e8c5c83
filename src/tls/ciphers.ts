// Which cipher a handshake settles on. AES-128-GCM comes first, as in Go's crypto/tls (so Caddy) and
// Mozilla's "intermediate" list: as safe as AES-256-GCM and cheaper per byte, which matters here
// because encrypting blob downloads is what limits their speed (BENCHMARKS.md). OpenSSL would take
// the client's order, and curl and OpenSSL-based clients list AES-256 first. A client that lists
// ChaCha20 first (typically one without AES hardware) still gets ChaCha20.
import { constants } from 'node:crypto'
import { DEFAULT_CIPHERS, type SecureContextOptions } from 'node:tls'

const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']

/** Node's TLS 1.2 list, kept as it is, after the TLS 1.3 suites in our order. */
const SERVER_CIPHERS = [...TLS13_SUITES, ...DEFAULT_CIPHERS.split(':').filter((name) => !name.startsWith('TLS_'))].join(':')

export const serverCipherOptions: Pick<SecureContextOptions, 'ciphers' | 'honorCipherOrder' | 'secureOptions'> = {
  ciphers: SERVER_CIPHERS,
  honorCipherOrder: true,
  secureOptions: constants.SSL_OP_PRIORITIZE_CHACHA,
}
