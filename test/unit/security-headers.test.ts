// Headers on every answer: nosniff always, Strict-Transport-Security only where a client gets it over HTTPS.
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createSecurityHeaders } from '../../src/pipeline/security-headers.js'
import { createTrustedProxies } from '../../src/forward/headers.js'

/** The headers set for a request from `remoteAddress` with `headers`, on a TLS connection or not. */
function answerHeaders(set: (req: IncomingMessage, res: ServerResponse) => void, remoteAddress: string, headers: Record<string, string>, encrypted = false): Record<string, string> {
  const out: Record<string, string> = {}
  const req = { socket: { remoteAddress, ...(encrypted ? { encrypted: true } : {}) }, headers } as unknown as IncomingMessage
  const res = { setHeader: (name: string, value: string) => (out[name.toLowerCase()] = value) } as unknown as ServerResponse
  set(req, res)
  return out
}

t.test('send: always with TLS off: HSTS unless a trusted proxy says the client used plain HTTP', async (t) => {
  const set = createSecurityHeaders({
    hsts: { send: 'always', max_age: 86_400_000, include_subdomains: false },
    tlsEnabled: false,
    verifiableCertificate: () => false,
    trustedProxies: createTrustedProxies(['10.0.0.2']),
  })
  t.equal(answerHeaders(set, '10.0.0.2', { 'x-forwarded-proto': 'https' })['strict-transport-security'], 'max-age=86400', 'the proxy served the client over HTTPS')
  t.equal(answerHeaders(set, '::ffff:10.0.0.2', {})['strict-transport-security'], 'max-age=86400', 'the proxy says nothing: as configured')
  t.equal(answerHeaders(set, '10.0.0.2', { 'x-forwarded-proto': 'http' })['strict-transport-security'], undefined, 'never over plain HTTP (RFC 6797 7.2)')
  t.equal(answerHeaders(set, '::ffff:10.0.0.2', { 'x-forwarded-proto': 'HTTP, https' })['strict-transport-security'], undefined, 'the first hop counts, any case')
  t.equal(answerHeaders(set, '203.0.113.9', { 'x-forwarded-proto': 'http' })['strict-transport-security'], 'max-age=86400', 'an untrusted peer is not believed')
  t.equal(answerHeaders(set, '10.0.0.2', { 'x-forwarded-proto': 'http' })['x-content-type-options'], 'nosniff', 'nosniff on every answer')
})

t.test('send: auto sends HSTS only over TLS with a verifiable certificate', async (t) => {
  const options = { hsts: { send: 'auto', max_age: 86_400_000, include_subdomains: true }, verifiableCertificate: (name: string | undefined) => name === 'cr.example.org' } as const
  const tls = createSecurityHeaders({ ...options, tlsEnabled: true })
  t.equal(answerHeaders(tls, '203.0.113.9', {}, true)['strict-transport-security'], undefined, 'self-signed for this client')
  const plain = createSecurityHeaders({ ...options, tlsEnabled: false })
  t.equal(answerHeaders(plain, '203.0.113.9', {})['strict-transport-security'], undefined, 'TLS off')
})
