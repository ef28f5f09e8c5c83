// Single sign-on without a browser: the flow cookie, claims to user and groups, groups in the session, config
// checks, and ID tokens a provider would not normally send (another audience, another issuer, expired, another key)
// from a small issuer on loopback that signs with a test key, through the same callback and openid-client checks.
import t from 'tap'
import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, SignJWT } from 'jose'
import pino from 'pino'
import { createSso, oidcSection } from '../../src/ui/oidc/index.js'
import { createFlows } from '../../src/ui/oidc/flow.js'
import { identityOf } from '../../src/ui/oidc/claims.js'
import { createSessions } from '../../src/ui/session.js'
import { loadConfig } from '../../src/app/config.js'
import { ConfigError } from '../../src/config/index.js'
import { selfSignedCertificate } from '../../src/tls/x509.js'

const secret = Buffer.alloc(32, 7)
const dir = mkdtempSync(join(tmpdir(), 'portier-oidc-unit-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

t.test('flow cookie: round trip once; tampered, expired, other state or replayed refused', async (t) => {
  const flows = createFlows(secret, 60_000)
  // Values long enough that ciphertext never contains them by chance (two-letter ones did, about once in 200 runs).
  const fields = { state: 's1', nonce: 'nonce-0f3a9c2e7b51d846', codeVerifier: 'verifier-8d27e1b4c90f3a65', redirectUri: 'https://portier.test/ui/oidc/callback' }
  const { setCookie } = flows.start(fields, 1_000)
  t.match(setCookie, /^__Host-portier-oidc=o1\.[^;]+; Path=\/; Max-Age=60; HttpOnly; Secure; SameSite=Lax$/)
  const value = setCookie.split(';')[0]?.split('=')[1] ?? ''
  for (const part of value.split('.')) {
    const decoded = Buffer.from(part, 'base64url').toString('latin1')
    t.notOk(decoded.includes(fields.nonce) || decoded.includes(fields.codeVerifier) || part.includes(fields.nonce) || part.includes(fields.codeVerifier), 'the nonce and verifier are not readable in the cookie')
  }
  const tampered = `${value.slice(0, -2)}${value.endsWith('AA') ? 'BB' : 'AA'}`
  t.same(flows.finish(tampered, 's1', 2_000), { ok: false, reason: 'missing' }, 'a changed cookie is unreadable')
  t.same(flows.finish(undefined, 's1', 2_000), { ok: false, reason: 'missing' })
  t.same(flows.finish(value, 's1', 61_000), { ok: false, reason: 'expired' })
  t.same(flows.finish(value, 'other', 2_000), { ok: false, reason: 'state' })
  t.same(flows.finish(value, null, 2_000), { ok: false, reason: 'state' })
  t.same(flows.finish(value, 's1', 2_000), { ok: true, flow: { ...fields, expiresAt: 61_000 } })
  t.same(flows.finish(value, 's1', 2_000), { ok: false, reason: 'replayed' }, 'single use')
  t.same(createFlows(Buffer.alloc(32, 8), 60_000).finish(flows.start(fields).setCookie.split(';')[0]?.split('=')[1], 's1'), { ok: false, reason: 'missing' }, 'another key cannot read it')
})

t.test('claims: user from the configured claim, only declared groups, dotted names', async (t) => {
  const declared = new Set(['ci', 'admins'])
  t.same(identityOf({ preferred_username: 'carol', groups: ['ci', 'staff', 'ci'] }, { usernameClaim: 'preferred_username', groupsClaim: 'groups', declared }), { ok: true, user: 'carol', groups: ['ci'], ignoredGroups: 1 })
  t.same(identityOf({ email: 'c@x', groups: 'admins' }, { usernameClaim: 'email', groupsClaim: 'groups', declared }), { ok: true, user: 'c@x', groups: ['admins'], ignoredGroups: 0 }, 'a lone group as a string')
  t.same(identityOf({ sub: 'u1', realm_access: { roles: ['ci'] } }, { usernameClaim: 'sub', groupsClaim: 'realm_access.roles', declared }), { ok: true, user: 'u1', groups: ['ci'], ignoredGroups: 0 })
  t.same(identityOf({ sub: 'u1', groups: ['ci'] }, { usernameClaim: 'sub', groupsClaim: '', declared }), { ok: true, user: 'u1', groups: [], ignoredGroups: 0 }, 'groups_claim "" reads none')
  t.match(identityOf({ sub: 'u1' }, { usernameClaim: 'preferred_username', groupsClaim: 'groups', declared }), { ok: false, problem: /no "preferred_username" claim/ })
  t.match(identityOf({ preferred_username: 'a\nb' }, { usernameClaim: 'preferred_username', groupsClaim: 'groups', declared }), { ok: false })
})

t.test('session cookie carries the sign-in method and groups', async (t) => {
  const sessions = createSessions(secret, 60_000)
  const { setCookie } = sessions.issue('carol', Date.now(), { via: 'oidc', groups: ['ci'] })
  const session = sessions.fromCookieHeader(setCookie.split(';')[0])
  t.match(session, { user: 'carol', via: 'oidc', groups: ['ci'] })
  const password = sessions.fromCookieHeader(sessions.issue('alice').setCookie.split(';')[0])
  t.equal(password?.via, undefined)
  t.equal(password?.groups, undefined)
})

function problemsOf(config: Record<string, unknown>): string[] {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`)
  writeFileSync(file, JSON.stringify(config))
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.map((problem) => `${problem.key}: ${problem.expected}`)
    throw error
  }
  return []
}

t.test('config: ui.oidc problems name the key and what was expected', async (t) => {
  t.same(problemsOf({ ui: { oidc: { enabled: false } } }), [], 'off by default, nothing required')
  const missing = problemsOf({ ui: { oidc: { enabled: true } } })
  t.match(missing.join('\n'), /ui\.oidc\.issuer: the provider's issuer URL/)
  t.match(missing.join('\n'), /ui\.oidc\.client_id: the client id/)
  t.match(problemsOf({ ui: { oidc: { enabled: true, issuer: 'http://id.example', client_id: 'p' } } }).join('\n'), /ui\.oidc\.issuer: the provider's issuer, an https:\/\/ URL/)
  t.match(problemsOf({ ui: { oidc: { enabled: true, issuer: 'https://id.example', client_id: 'p', scopes: ['profile'] } } }).join('\n'), /ui\.oidc\.scopes: a list of scopes that includes "openid"/)
  t.match(problemsOf({ ui: { oidc: { enabled: true, issuer: 'https://id.example', client_id: 'p', redirect_path: '/ui/api/cb' } } }).join('\n'), /ui\.oidc\.redirect_path: a path under \/ui\/ \(not \/ui\/api\/\)/)
  t.match(problemsOf({ auth: { mode: 'none' }, ui: { oidc: { enabled: true, issuer: 'https://id.example', client_id: 'p' } } }).join('\n'), /ui\.oidc\.enabled: false with auth\.mode none/)
  t.same(problemsOf({ ui: { oidc: { enabled: true, issuer: 'https://id.example/realms/x', client_id: 'p' } } }), [])
})

/** A minimal issuer on https://127.0.0.1: discovery, JWKS, and a token endpoint answering whatever ID token the test sets. */
async function testIssuer(): Promise<{ issuer: string; caFile: string; key: KeyObject; setIdToken: (make: (issuer: string) => Promise<string>) => void; setDown: (down: boolean) => void; close: () => Promise<void> }> {
  const { privateKey: tlsKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const now = Date.now()
  const cert = selfSignedCertificate({ privateKey: tlsKey, commonName: '127.0.0.1', organization: 'test issuer', dnsNames: [], ipAddresses: ['127.0.0.1'], notBefore: new Date(now - 60_000), notAfter: new Date(now + 3_600_000) })
  const caFile = join(dir, 'issuer-ca.pem')
  writeFileSync(caFile, cert)
  const { privateKey: key, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }
  let makeIdToken: (issuer: string) => Promise<string> = () => Promise.reject(new Error('no ID token set'))
  let issuer = ''
  let down = false
  const server = createServer({ key: tlsKey.export({ type: 'pkcs8', format: 'pem' }), cert }, (req, res) => {
    const json = (body: unknown): void => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body))
    }
    const path = (req.url ?? '').split('?')[0]
    if (down) return void res.writeHead(503).end()
    if (path === '/.well-known/openid-configuration') {
      return json({
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['ES256'],
        code_challenge_methods_supported: ['S256'],
      })
    }
    if (path === '/jwks') return json({ keys: [jwk] })
    if (path === '/token' && req.method === 'POST') {
      req.resume()
      req.on('end', () => {
        makeIdToken(issuer).then(
          (idToken) => json({ access_token: 'at', token_type: 'Bearer', expires_in: 60, id_token: idToken }),
          () => res.writeHead(500).end(),
        )
      })
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    issuer,
    caFile,
    key,
    setIdToken: (make) => {
      makeIdToken = make
    },
    setDown: (value) => {
      down = value
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  }
}

interface Answer {
  status: number
  headers: IncomingHttpHeaders
}

function get(server: HttpServer, path: string, cookie?: string, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, path, method, headers: cookie ? { cookie } : {} }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('ID tokens for another audience, from another issuer, expired, or signed by another key are refused', async (t) => {
  const idp = await testIssuer()
  t.teardown(() => idp.close())
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const sessions = createSessions(secret, 60_000)
  const sso = createSso({
    config: oidcSection.parse({ enabled: true, issuer: idp.issuer, client_id: 'portier', ca_file: idp.caFile }),
    secret,
    sessions,
    declaredGroups: ['ci'],
    log,
  })
  t.teardown(() => sso.close())
  // The UI's routes of the sso module, behind a plain HTTP server (TLS in front of it is the gateway's job).
  const server = createHttpServer((req, res) => {
    sso.handle(req, res, (req.url ?? '').split('?')[0] ?? '', { clientIp: '127.0.0.1', publicOrigin: 'https://portier.test' }).catch(() => res.destroy())
  })
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))

  /** Starts a sign-in, has the issuer answer with the ID token `claims` makes, and returns where the callback sent the browser. */
  const signIn = async (claims: (issuer: string, nonce: string) => Record<string, unknown>, signWith: KeyObject = idp.key): Promise<Answer> => {
    const started = await get(server, '/ui/oidc/login')
    t.equal(started.status, 302)
    const authorization = new URL(String(started.headers.location))
    const flow = [started.headers['set-cookie'] ?? []].flat()[0]?.split(';')[0] ?? ''
    const nonce = authorization.searchParams.get('nonce') ?? ''
    idp.setIdToken((issuer) => new SignJWT(claims(issuer, nonce)).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).sign(signWith))
    return get(server, `/ui/oidc/callback?code=c1&state=${authorization.searchParams.get('state') ?? ''}`, flow)
  }
  const good = (issuer: string, nonce: string): Record<string, unknown> => {
    const now = Math.floor(Date.now() / 1000)
    return { iss: issuer, sub: 'u1', aud: 'portier', iat: now, exp: now + 300, nonce, preferred_username: 'carol', groups: ['ci', 'staff'] }
  }
  const sessionOf = (answer: Answer): string | undefined =>
    [answer.headers['set-cookie'] ?? []].flat().find((line) => line.startsWith('__Host-portier-ui='))?.split(';')[0]

  t.equal((await get(server, '/ui/oidc/login', undefined, 'HEAD')).status, 405, 'GET only: a HEAD starts no sign-in')
  t.equal((await get(server, '/ui/oidc/callback', undefined, 'POST')).status, 405)

  const accepted = await signIn(good)
  t.equal(accepted.headers.location, '/ui/', 'a correct ID token signs in (the control case)')
  t.match(sessions.fromCookieHeader(sessionOf(accepted)), { user: 'carol', via: 'oidc', groups: ['ci'] })

  const cases: Array<[string, (issuer: string, nonce: string) => Record<string, unknown>, RegExp, KeyObject?]> = [
    ['another audience', (issuer, nonce) => ({ ...good(issuer, nonce), aud: 'some-other-client' }), /aud/],
    ['another issuer', (issuer, nonce) => ({ ...good(issuer, nonce), iss: 'https://evil.example' }), /iss/],
    ['expired', (issuer, nonce) => ({ ...good(issuer, nonce), iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 }), /exp/],
    ['another nonce', (issuer, nonce) => ({ ...good(issuer, nonce), nonce: 'not-the-nonce' }), /nonce/],
    ['signed by another key', good, /signature/, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey],
  ]
  for (const [name, claims, reason, key] of cases) {
    const answer = await signIn(claims, key)
    t.equal(answer.headers.location, '/ui/?sso_error=refused', `${name}: refused`)
    t.equal(sessionOf(answer), undefined, `${name}: no session`)
    await new Promise((resolve) => setImmediate(resolve))
    const logged = lines.filter((line) => String(line.msg).startsWith('ui single sign-on refused')).pop()
    t.match(logged?.reason, reason, `${name}: the log says what failed`)
    lines.length = 0
  }

  await idp.close()
  const down = await get(server, '/ui/oidc/login')
  t.equal(down.headers.location, '/ui/?sso_error=unavailable', 'provider gone: back to the login page')
  t.match(sso.offer(), { available: false, reason: /^cannot reach https:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/ })
  t.match(sso.readiness(), { name: 'sso', ready: true, detail: /^single sign-on unavailable: cannot reach/ })
})

t.test('a provider answering 503 at start is unavailable with the reason, and ready once a retry finds it back', async (t) => {
  const idp = await testIssuer()
  t.teardown(() => idp.close())
  idp.setDown(true)
  const sso = createSso({
    config: oidcSection.parse({ enabled: true, issuer: idp.issuer, client_id: 'portier', ca_file: idp.caFile, retry_interval: '200ms' }),
    secret,
    sessions: createSessions(secret, 60_000),
    declaredGroups: [],
    log: pino({ level: 'silent' }),
  })
  t.teardown(() => sso.close())
  const settle = async (available: boolean): Promise<boolean> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      if (sso.readiness().detail.startsWith('single sign-on starting') === false && sso.offer().available === available) return true
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return false
  }
  t.ok(await settle(false), 'unavailable')
  t.match(sso.offer().reason, /^discovery at https:\/\/127\.0\.0\.1:\d+ failed: unexpected HTTP response status code/)
  t.match(sso.readiness(), { ready: true, detail: /^single sign-on unavailable: discovery at/ })
  idp.setDown(false)
  t.ok(await settle(true), 'a later retry finds the provider')
  t.match(sso.readiness(), { ready: true, detail: /^single sign-on ready \(https:/ })
})
