// The one error catalogue: every code has a status and a subsystem, each surface renders its own wire format from it, and errors carry their cause.
import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { catalogue, catalogueBySubsystem, isErrorCode, type ErrorCode, type Subsystem } from '../../src/errors/catalogue.js'
import { causeChain } from '../../src/errors/cause.js'
import { createBearerAuthenticator } from '../../src/auth/bearer.js'
import { createIssuer, createTokenEndpoint, createVerifier, generateTokenKey, loadTokenKey, TokenError } from '../../src/auth/token/index.js'
import { TokenRefusal, tokenErrorBody, type TokenErrorCode } from '../../src/auth/token/refusal.js'
import { AdminError, createAdminHandler } from '../../src/observe/admin.js'
import { passwordChecksBusy } from '../../src/auth/basic.js'
import { Recorder } from '../../src/observe/record.js'
import { RecentPushes } from '../../src/observe/recent.js'
import { RegistryError, sendRegistryError, type RegistryErrorCode } from '../../src/registry/errors.js'

const SUBSYSTEMS: Subsystem[] = ['registry', 'gateway', 'token', 'admin']

function serve(t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server: Server = createServer(handler)
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}`)))
}

t.test('every code has a status, a subsystem, a message and a wire code, and is declared once', async (t) => {
  const codes = Object.keys(catalogue)
  for (const subsystem of SUBSYSTEMS) t.ok(Object.keys(catalogueBySubsystem[subsystem]).length > 0, `${subsystem} has codes`)
  let grouped = 0
  for (const subsystem of SUBSYSTEMS) {
    for (const code of Object.keys(catalogueBySubsystem[subsystem])) {
      grouped++
      t.equal(catalogue[code as ErrorCode].subsystem, subsystem, `${code} belongs to ${subsystem}`)
    }
  }
  t.equal(grouped, codes.length, 'no code in two groups (the flat catalogue has exactly the grouped codes)')
  for (const [code, entry] of Object.entries(catalogue)) {
    t.ok(Number.isInteger(entry.status) && entry.status >= 400 && entry.status <= 599, `${code}: status ${entry.status} is an error status`)
    t.ok(SUBSYSTEMS.includes(entry.subsystem), `${code}: subsystem ${entry.subsystem}`)
    t.match(entry.message, /^\S/, `${code}: has a message`)
    t.match(entry.wire, /^[A-Z_]+$/, `${code}: wire code ${entry.wire}`)
    if (entry.subsystem === 'token') t.match(entry.oauth, /^[a-z_]+$/, `${code}: OAuth2 error ${entry.oauth}`)
  }
  for (const inherited of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) t.notOk(isErrorCode(inherited), `${inherited} is no code`)
})

t.test('registry surface: the registry JSON format and headers, cause kept out of the answer', async (t) => {
  const socketError = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5999'), { code: 'ECONNREFUSED' })
  const error = new RegistryError('BAD_GATEWAY', { upstream: 'a' }, { 'Retry-After': '1' }, undefined, { cause: socketError })
  t.equal(error.cause, socketError, 'the underlying error is the cause')
  t.equal(error.subsystem, 'gateway')
  t.equal(error.name, 'RegistryError')
  const url = await serve(t, (_req, res) => sendRegistryError(res, error))
  const response = await fetch(url)
  t.equal(response.status, 502)
  t.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0')
  t.equal(response.headers.get('content-type'), 'application/json; charset=utf-8')
  t.equal(response.headers.get('retry-after'), '1')
  const text = await response.text()
  t.same(JSON.parse(text), { errors: [{ code: 'UNAVAILABLE', message: 'upstream registry failed', detail: { upstream: 'a' } }] })
  t.notMatch(text, /ECONNREFUSED/, 'the cause is for logs, not for clients')

  // A token or admin code is not a registry code: still a valid registry answer, a 500.
  const misplaced = new RegistryError('TOKEN_GRANT_INVALID' as RegistryErrorCode)
  t.equal(misplaced.status, 500)
  t.equal(misplaced.code, 'INTERNAL')
  t.same(JSON.parse(misplaced.body()), { errors: [{ code: 'UNKNOWN', message: 'internal error in the gateway' }] })
})

t.test('token surface: registry errors list plus OAuth2 error fields, the same codes and statuses as before the catalogue', async (t) => {
  // What the endpoint answered before its errors moved into the catalogue: docker and OAuth2 clients depend on it.
  const before: Record<TokenErrorCode, { status: number; wire: string; oauth: string }> = {
    TOKEN_REQUEST_INVALID: { status: 400, wire: 'UNSUPPORTED', oauth: 'invalid_request' },
    TOKEN_GRANT_TYPE_UNSUPPORTED: { status: 400, wire: 'UNSUPPORTED', oauth: 'unsupported_grant_type' },
    TOKEN_GRANT_INVALID: { status: 400, wire: 'UNAUTHORIZED', oauth: 'invalid_grant' },
    TOKEN_CREDENTIALS_INVALID: { status: 401, wire: 'UNAUTHORIZED', oauth: 'invalid_client' },
    TOKEN_METHOD_NOT_ALLOWED: { status: 405, wire: 'UNSUPPORTED', oauth: 'method_not_allowed' },
    TOKEN_BODY_TOO_LARGE: { status: 413, wire: 'UNSUPPORTED', oauth: 'payload_too_large' },
    TOKEN_UNAVAILABLE: { status: 503, wire: 'UNAVAILABLE', oauth: 'temporarily_unavailable' },
    TOKEN_INTERNAL: { status: 500, wire: 'UNKNOWN', oauth: 'server_error' },
  }
  t.same(Object.keys(catalogueBySubsystem.token).sort(), Object.keys(before).sort(), 'every token code is listed here')
  for (const [code, expected] of Object.entries(before) as Array<[TokenErrorCode, (typeof before)[TokenErrorCode]]>) {
    const refusal = new TokenRefusal(code, 'why')
    t.equal(refusal.status, expected.status, `${code} status`)
    t.same(tokenErrorBody(refusal), { errors: [{ code: expected.wire, message: 'why' }], error: expected.oauth, error_description: 'why' }, `${code} body`)
  }
  t.equal(new TokenRefusal('DENIED' as TokenErrorCode).code, 'TOKEN_INTERNAL', 'a registry code is no token refusal')

  // Over the wire, from the real endpoint: a forged refresh token is refused with the cause kept inside.
  const dir = mkdtempSync(join(tmpdir(), 'portier-errors-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const generated = generateTokenKey(dir, { bits: 2048 })
  const issuer = createIssuer({ key: loadTokenKey(generated.keyPath, generated.certPath), issuer: 'portier-test', service: 'registry.test' })
  const endpoint = createTokenEndpoint({ issuer, allowAnonymous: false, authenticate: async () => false, grant: (_who, scopes) => scopes })
  const url = await serve(t, (req, res) => void endpoint(req, res, '127.0.0.1'))
  const forged = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=refresh_token&refresh_token=not.a.jwt&service=registry.test',
  })
  t.equal(forged.status, 400)
  t.equal(forged.headers.get('cache-control'), 'no-store')
  t.same(await forged.json(), {
    errors: [{ code: 'UNAUTHORIZED', message: 'refresh token is not valid' }],
    error: 'invalid_grant',
    error_description: 'refresh token is not valid',
  })
  const wrongMethod = await fetch(url, { method: 'PUT' })
  t.equal(wrongMethod.status, 405)
  t.equal(wrongMethod.headers.get('allow'), 'GET, POST')
  t.match(await wrongMethod.json(), { errors: [{ code: 'UNSUPPORTED' }], error: 'method_not_allowed' })
  const refused = await issuer.verifyRefresh('not.a.jwt').then(() => undefined, (error: unknown) => error)
  t.ok(refused instanceof Error && refused.cause instanceof Error, "the refresh check keeps jose's error as the cause")
})

t.test('registry surface, Bearer: an expired token is a 401 challenge whose cause chain reaches jose\'s error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-errors-bearer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const generated = generateTokenKey(dir, { bits: 2048 })
  const base = { issuer: 'portier-test', service: 'registry.test' }
  const hourAgo = createIssuer({ key: loadTokenKey(generated.keyPath, generated.certPath), ...base, ttlSeconds: 60, now: () => Date.now() - 3600_000 })
  const expired = (await hourAgo.issue({ subject: 'ann', access: [] })).token
  const verifier = await createVerifier({ issuer: base.issuer, audience: base.service, keys: readFileSync(generated.certPath, 'utf8') })
  const bearer = createBearerAuthenticator({ verifier, service: base.service, realm: 'https://registry.test/auth/token' })
  const refused = await bearer.authenticate({ authorization: `Bearer ${expired}` }, { clientIp: '127.0.0.1', publicOrigin: 'https://registry.test', scopes: [] }).then(
    () => undefined,
    (error: unknown) => error,
  )
  t.ok(refused instanceof RegistryError, 'a registry error')
  if (!(refused instanceof RegistryError)) return
  t.equal(refused.status, 401)
  t.match(refused.headers['WWW-Authenticate'], /error="invalid_token"/)
  t.same(JSON.parse(refused.body()), { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: { reason: 'expired' } }] }, 'the client sees the problem only')
  t.ok(refused.cause instanceof TokenError, "the challenge's cause is the verifier's TokenError")
  const tokenError = refused.cause as TokenError
  t.equal(tokenError.problem, 'expired')
  t.ok(tokenError.cause instanceof Error && tokenError.cause.name === 'JWTExpired', "and its cause is jose's JWTExpired")
  t.same(causeChain(refused)?.[0], 'token expired')
})

t.test('admin surface: { error, code } from the catalogue, with the headers each refusal needs', async (t) => {
  const log = pino({ level: 'silent' })
  const admin = createAdminHandler({ metrics: undefined, allow: undefined, users: undefined, readiness: () => [], log })
  const url = await serve(t, (req, res) => void admin(req, res))
  const missing = await fetch(`${url}/nothing`)
  t.equal(missing.status, 404)
  t.same(await missing.json(), { error: 'not found', code: 'ADMIN_NOT_FOUND', paths: ['/metrics', '/healthz', '/readyz'] })
  const disabled = await fetch(`${url}/metrics`)
  t.equal(disabled.status, 404)
  t.same(await disabled.json(), { error: 'metrics are disabled (metrics.enabled: false)', code: 'METRICS_DISABLED' })
  const posted = await fetch(`${url}/healthz`, { method: 'POST' })
  t.equal(posted.status, 405)
  t.equal(posted.headers.get('allow'), 'GET, HEAD')
  t.same(await posted.json(), { error: 'method not allowed', code: 'ADMIN_METHOD_NOT_ALLOWED' })
  t.equal(new AdminError('BLOB_UNKNOWN' as 'ADMIN_NOT_FOUND').code, 'ADMIN_INTERNAL', 'a registry code is no admin refusal')
})

t.test('the access log line names the cause chain of a failed request, once', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const recorder = new Recorder(log, undefined, new RecentPushes(10))
  const socketError = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
  const wrapped = new Error('upstream answer ended early', { cause: socketError })
  const failure = new RegistryError('BAD_GATEWAY', { reason: 'transfer failed' }, {}, undefined, { cause: wrapped })
  recorder.record({ requestId: 'r1', method: 'GET', request: undefined, status: 502, seconds: 0.01, clientIp: '127.0.0.1', user: undefined, upstream: 'a', bytesReceived: 0, bytesSent: 0, failure })
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], { request_id: 'r1', error: 'BAD_GATEWAY', cause: ['upstream answer ended early', 'socket hang up (ECONNRESET)'] })
  t.same(causeChain(new Error('alone')), undefined, 'no cause, no field')
  const loop = new Error('loop')
  loop.cause = loop
  t.equal(causeChain(loop)?.length, 5, 'a cause pointing at itself is cut off')
  // A 503 for too many password checks at once is the clients' burst: a warning, not an error.
  recorder.record({ requestId: 'r2', method: 'GET', request: undefined, status: 503, seconds: 0.01, clientIp: '127.0.0.1', user: undefined, upstream: undefined, bytesReceived: 0, bytesSent: 0, failure: passwordChecksBusy(), authOutcome: 'busy' })
  recorder.record({ requestId: 'r3', method: 'GET', request: undefined, status: 503, seconds: 0.01, clientIp: '127.0.0.1', user: undefined, upstream: 'a', bytesReceived: 0, bytesSent: 0, failure: new RegistryError('UNAVAILABLE', { reason: 'no upstream' }) })
  // The directory (or the store) unreachable during a login is an outage: an error, though its auth outcome is counted as busy too.
  recorder.record({ requestId: 'r4', method: 'GET', request: undefined, status: 503, seconds: 0.01, clientIp: '127.0.0.1', user: undefined, upstream: undefined, bytesReceived: 0, bytesSent: 0, failure: new RegistryError('UNAVAILABLE', { reason: 'the user directory (LDAP) cannot be reached' }), authOutcome: 'busy' })
  t.same(lines.slice(1).map((line) => [line.request_id, line.level]), [['r2', 40], ['r3', 50], ['r4', 50]], 'a login burst\'s 503 is a warning; an upstream\'s or a directory\'s is an error')
})
