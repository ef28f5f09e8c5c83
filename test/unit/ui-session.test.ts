// Web UI sessions and CSRF: signed, expiring, revocable cookies; tokens bound to one session; same-origin checks; the secret file.
import t from 'tap'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cookieValue, createSessions, loadSessionSecret, SESSION_COOKIE } from '../../src/ui/session.js'
import { createCsrf, isSameOrigin } from '../../src/ui/csrf.js'

const secret = Buffer.from('0123456789abcdef0123456789abcdef-test-secret')
const HOUR = 3_600_000
const NOW = Date.UTC(2026, 10, 23, 12, 0, 0)

function valueOf(setCookie: string): string {
  return setCookie.split(';')[0]!.slice(`${SESSION_COOKIE}=`.length)
}

t.test('an issued session verifies and carries the user, id and expiry', async (t) => {
  const sessions = createSessions(secret, 12 * HOUR)
  const { session, setCookie } = sessions.issue('alice', NOW)
  t.equal(session.user, 'alice')
  t.equal(session.expiresAt, NOW + 12 * HOUR)
  const verified = sessions.verify(valueOf(setCookie), NOW + 1000)
  t.same(verified, session)
  t.same(sessions.fromCookieHeader(`other=1; ${SESSION_COOKIE}=${valueOf(setCookie)}; x=y`, NOW), session, 'found among other cookies')
})

t.test('the cookie is HttpOnly, Secure, SameSite=Strict, host-only and expiring', async (t) => {
  const sessions = createSessions(secret, 2 * HOUR)
  const { setCookie } = sessions.issue('alice', NOW)
  const attributes = setCookie.split(';').slice(1).map((part) => part.trim())
  t.ok(setCookie.startsWith('__Host-'), '__Host- prefix: no Domain, Path=/, Secure enforced by the browser')
  t.ok(attributes.includes('HttpOnly'))
  t.ok(attributes.includes('Secure'))
  t.ok(attributes.includes('SameSite=Strict'))
  t.ok(attributes.includes('Path=/'))
  t.ok(attributes.includes('Max-Age=7200'))
  t.notOk(attributes.some((attribute) => attribute.startsWith('Domain')), 'no Domain')
  t.match(sessions.clearCookie, /Max-Age=0/, 'sign-out clears it')
})

t.test('expired sessions are refused', async (t) => {
  const sessions = createSessions(secret, HOUR)
  const { setCookie } = sessions.issue('alice', NOW)
  t.ok(sessions.verify(valueOf(setCookie), NOW + HOUR - 1), 'valid until the end')
  t.equal(sessions.verify(valueOf(setCookie), NOW + HOUR), undefined, 'refused at expiry')
})

t.test('tampered, foreign or malformed cookies are refused', async (t) => {
  const sessions = createSessions(secret, HOUR)
  const value = valueOf(sessions.issue('alice', NOW).setCookie)
  const [version, payload, signature] = value.split('.') as [string, string, string]

  // Another user, longer expiry: same signature no longer fits.
  const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), u: 'admin', e: NOW + 100 * HOUR })).toString('base64url')
  t.equal(sessions.verify(`${version}.${forged}.${signature}`, NOW), undefined, 'changed payload')
  const flipped = `${signature.slice(0, -2)}${signature.endsWith('AA') ? 'AB' : 'AA'}`
  t.equal(sessions.verify(`${version}.${payload}.${flipped}`, NOW), undefined, 'changed signature')
  t.equal(sessions.verify(`${version}.${payload}.`, NOW), undefined, 'no signature')
  t.equal(sessions.verify(`v0.${payload}.${signature}`, NOW), undefined, 'unknown version')
  t.equal(sessions.verify('garbage', NOW), undefined, 'not a session')
  t.equal(sessions.verify(`${value}.extra`, NOW), undefined, 'extra part')
  t.equal(sessions.verify('x'.repeat(5000), NOW), undefined, 'oversized')

  const other = createSessions(Buffer.from('another-secret-of-at-least-32-bytes!!'), HOUR)
  t.equal(other.verify(value, NOW), undefined, 'signed with another secret')

  // A correctly signed payload with wrong field types (e.g. from an older version) is still refused.
  const odd = Buffer.from(JSON.stringify({ u: 1, i: 'x', t: NOW, e: NOW + HOUR })).toString('base64url')
  const { createHmac } = await import('node:crypto')
  const key = createHmac('sha256', secret).update('portier-ui-session').digest()
  const oddSignature = createHmac('sha256', key).update(`v1.${odd}`).digest('base64url')
  t.equal(sessions.verify(`v1.${odd}.${oddSignature}`, NOW), undefined, 'wrong field types')
})

t.test('a session from the future (clock games) is refused', async (t) => {
  const sessions = createSessions(secret, HOUR)
  const { setCookie } = sessions.issue('alice', NOW + 10 * 60_000)
  t.equal(sessions.verify(valueOf(setCookie), NOW), undefined)
})

t.test('revoked sessions are refused; other sessions of the same user are not', async (t) => {
  const sessions = createSessions(secret, HOUR)
  const first = sessions.issue('alice', NOW)
  const second = sessions.issue('alice', NOW)
  await sessions.revoke(first.session, NOW)
  t.equal(sessions.verify(valueOf(first.setCookie), NOW), undefined, 'revoked')
  t.ok(sessions.verify(valueOf(second.setCookie), NOW), 'another sign-in of the same user stays valid')
})

t.test('two instances sharing the secret accept each other\'s sessions', async (t) => {
  const a = createSessions(secret, HOUR)
  const b = createSessions(Buffer.from(secret), HOUR)
  t.equal(b.verify(valueOf(a.issue('alice', NOW).setCookie), NOW)?.user, 'alice')
})

t.test('a secret shorter than 32 bytes is refused', async (t) => {
  t.throws(() => createSessions(Buffer.from('short'), HOUR), /at least 32 bytes/)
})

t.test('cookieValue reads one cookie out of a Cookie header', async (t) => {
  t.equal(cookieValue('a=1; b=2', 'b'), '2')
  t.equal(cookieValue('a=1; ab=2', 'b'), undefined, 'no partial name match')
  t.equal(cookieValue(undefined, 'b'), undefined)
  t.equal(cookieValue('b=first; b=second', 'b'), 'first')
})

t.test('CSRF tokens fit only the session they were made for', async (t) => {
  const sessions = createSessions(secret, HOUR)
  const csrf = createCsrf(secret)
  const alice = sessions.issue('alice', NOW).session
  const aliceAgain = sessions.issue('alice', NOW).session
  const token = csrf.tokenFor(alice)
  t.ok(csrf.verify(alice, token), 'its own session')
  t.notOk(csrf.verify(aliceAgain, token), 'another session of the same user')
  t.notOk(csrf.verify(alice, undefined), 'missing')
  t.notOk(csrf.verify(alice, ''), 'empty')
  t.notOk(csrf.verify(alice, [token, token]), 'repeated header')
  t.notOk(csrf.verify(alice, `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`), 'one character changed')
  // 32 bytes take 43 base64url characters; the last one carries 2 spare bits that decoding ignores.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const spareBitFlipped = `${token.slice(0, -1)}${alphabet[alphabet.indexOf(token.slice(-1)) ^ 1]}`
  t.same(Buffer.from(spareBitFlipped, 'base64url'), Buffer.from(token, 'base64url'), 'decodes to the same bytes')
  t.notOk(csrf.verify(alice, spareBitFlipped), 'another spelling of the same bytes')
  t.notOk(createCsrf(Buffer.from('another-secret-of-at-least-32-bytes!!')).verify(alice, token), 'another secret')
  t.not(token, sessions.issue('alice', NOW).setCookie, 'not derivable from the cookie alone')
  t.equal(csrf.tokenFor(alice), token, 'stable for the session')
})

t.test('same-origin check: Origin must name this host or the public origin', async (t) => {
  const publicOrigin = 'https://registry.example.com'
  t.ok(isSameOrigin({ origin: 'https://registry.example.com', host: 'registry.example.com' }, publicOrigin))
  t.ok(isSameOrigin({ origin: 'https://127.0.0.1:5443', host: '127.0.0.1:5443' }, publicOrigin), 'the host the browser used')
  t.ok(isSameOrigin({ origin: 'https://REGISTRY.example.com', host: 'internal:5443' }, publicOrigin), 'the public origin, any case')
  t.ok(isSameOrigin({ origin: 'https://127.0.0.1:5443', host: '127.0.0.1:5443', 'sec-fetch-site': 'same-origin' }, publicOrigin))
  t.notOk(isSameOrigin({ origin: 'https://evil.example', host: 'registry.example.com' }, publicOrigin), 'another site')
  t.notOk(isSameOrigin({ origin: 'http://registry.example.com', host: 'registry.example.com' }, publicOrigin), 'the same host over http:// is another origin')
  t.notOk(isSameOrigin({ origin: 'http://127.0.0.1:5443', host: '127.0.0.1:5443' }, publicOrigin), 'also for the host the browser used')
  t.ok(isSameOrigin({ origin: 'http://127.0.0.1:8080', host: '127.0.0.1:8080' }, 'http://127.0.0.1:8080'), 'an http:// public origin (TLS off) accepts its own scheme')
  t.notOk(isSameOrigin({ origin: 'https://registry.example.com.evil.example', host: 'registry.example.com' }, publicOrigin), 'a look-alike')
  t.notOk(isSameOrigin({ host: 'registry.example.com' }, publicOrigin), 'no Origin')
  t.notOk(isSameOrigin({ origin: 'null', host: 'registry.example.com' }, publicOrigin), 'opaque origin')
  t.notOk(isSameOrigin({ origin: 'not a url', host: 'registry.example.com' }, publicOrigin))
  t.notOk(isSameOrigin({ origin: 'https://registry.example.com', host: 'registry.example.com', 'sec-fetch-site': 'cross-site' }, publicOrigin), 'the browser says cross-site')
  t.notOk(isSameOrigin({ origin: 'https://registry.example.com', host: 'registry.example.com', 'sec-fetch-site': 'same-site' }, publicOrigin), 'a sibling subdomain')
})

t.test('the session secret: configured, or generated once into a 0600 file and reused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-ui-secret-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'nested', 'session-secret')
  const first = loadSessionSecret('', file)
  t.equal(first.created, true)
  t.ok(first.secret.length >= 32)
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600')
  const second = loadSessionSecret('', file)
  t.equal(second.created, false)
  t.same(second.secret, first.secret, 'reused after a restart')

  const configured = loadSessionSecret('x'.repeat(40), file)
  t.same(configured.secret, Buffer.from('x'.repeat(40)), 'the configured secret wins')

  writeFileSync(file, 'short\n')
  t.throws(() => loadSessionSecret('', file), /ui\.session_secret_file: .* holds 5 characters/)
  t.equal(readFileSync(file, 'utf8'), 'short\n', 'a bad file is reported, never overwritten')
})
