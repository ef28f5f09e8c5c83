// The audit trail (src/store/audit.ts): which finished requests become entries and with what, queries, pruning; the CLI's --since.
import t, { type Test } from 'tap'
import { classify } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'
import type { FinishedRequest } from '../../src/observe/record.js'
import type { AuthOutcome } from '../../src/observe/metrics.js'
import { AuditTrail, auditEntryOf, type AuditTrailOptions } from '../../src/store/audit.js'
import { ENGINES, openEngine, type EngineName } from '../helpers/store-engines.js'
import { parseSince } from '../../src/cli/audit.js'

const A = `sha256:${'a'.repeat(64)}`
const T0 = Date.UTC(2026, 0, 10, 12)

function finished(method: string, path: string, status: number, more: Partial<FinishedRequest> = {}): FinishedRequest {
  return {
    requestId: 'req-1', method, request: classify(method, path), status, seconds: 0.01, clientIp: '203.0.113.9', user: 'alice',
    upstream: 'u', bytesReceived: 0, bytesSent: 0, failure: undefined, userAgent: 'docker/27.0', ...more,
  }
}

async function open(t: Test, engine: EngineName, now: { at: number }, options: AuditTrailOptions = {}): Promise<{ audit: AuditTrail }> {
  const store = await openEngine(t, engine, { flushIntervalMs: 60_000 })
  const audit = new AuditTrail(store, () => now.at, options)
  await audit.ready
  return { audit }
}

t.test('state-changing requests become entries with who, where, what and the outcome', async (t) => {
  const put = auditEntryOf(finished('PUT', '/v2/team/app/manifests/v1', 201, { contentDigest: A, bytesReceived: 528 }), T0)
  t.same(put, {
    at: T0, status: 201, user: 'alice', client: '203.0.113.9', userAgent: 'docker/27.0', requestId: 'req-1',
    action: 'manifest.push', outcome: 'success', repository: 'team/app', tag: 'v1', digest: A, size: 528, sourceRepository: undefined,
  })
  const blob = auditEntryOf(finished('PUT', `/v2/team/app/blobs/uploads/u1?digest=${A}`, 201, { bytesReceived: 100 }), T0)
  t.match(blob, { action: 'blob.push', digest: A, size: 100, tag: undefined })
  const mount = auditEntryOf(finished('POST', `/v2/team/app/blobs/uploads/?mount=${A}&from=base/img`, 201), T0)
  t.match(mount, { action: 'blob.mount', digest: A, sourceRepository: 'base/img' })
  const denied = auditEntryOf(finished('DELETE', `/v2/team/app/manifests/${A}`, 403, { failure: new RegistryError('DENIED', {}) }), T0)
  t.match(denied, { action: 'manifest.delete', outcome: 'DENIED', status: 403, digest: A, tag: undefined })
  t.match(auditEntryOf(finished('DELETE', `/v2/team/app/blobs/${A}`, 202), T0), { action: 'blob.delete', digest: A })
  t.match(auditEntryOf(finished('DELETE', '/v2/team/app/blobs/uploads/u1', 204), T0), { action: 'upload.cancel' })
})

t.test('reads and upload chunks are not audited; logins are', async (t) => {
  t.equal(auditEntryOf(finished('GET', '/v2/team/app/manifests/v1', 200), T0), undefined)
  t.equal(auditEntryOf(finished('PATCH', '/v2/team/app/blobs/uploads/u1', 202), T0), undefined)
  t.equal(auditEntryOf(finished('POST', '/v2/team/app/blobs/uploads/', 202), T0), undefined)
  const login = (status: number, authOutcome: AuthOutcome, more: Partial<FinishedRequest> = {}) => auditEntryOf(finished('GET', '/v2/', status, { authOutcome, ...more }), T0)
  t.match(login(200, 'success'), { action: 'login', outcome: 'success', user: 'alice' })
  t.match(login(401, 'invalid_credentials', { user: undefined, loginName: 'mallory' }), { action: 'login', outcome: 'invalid_credentials', user: 'mallory' }, 'a failed login names the user it tried')
  t.match(auditEntryOf(finished('GET', '/v2/x/manifests/v1', 429, { authOutcome: 'locked_out', user: undefined, loginName: 'bob' }), T0), { action: 'login', outcome: 'locked_out', user: 'bob', repository: 'x' })
  t.equal(auditEntryOf(finished('GET', '/v2/x/manifests/v1', 200, { authOutcome: 'success' }), T0), undefined, 'a pull with credentials is not a login')
  const token = auditEntryOf({ ...finished('GET', '/v2/', 401), request: undefined, route: 'token', user: undefined, loginName: 'carol' }, T0)
  t.match(token, { action: 'login.token', outcome: 'HTTP_401', user: 'carol' })
  t.match(auditEntryOf({ ...finished('GET', '/v2/', 200), request: undefined, route: 'token', user: undefined, loginName: 'carol' }, T0), { outcome: 'success' })
  const anyEntry = JSON.stringify(login(401, 'invalid_credentials', { loginName: 'mallory' }))
  t.notMatch(anyEntry, /authorization|password|Basic /i, 'no credentials in an entry')
})

for (const engine of ENGINES) {
  t.test(`${engine}: queries filter by repository glob, user, since and action; newest first; limit`, async (t) => {
    const now = { at: T0 }
    const { audit } = await open(t, engine, now)
    const listen = audit.listener()
    listen(finished('PUT', '/v2/team/app/manifests/v1', 201, { contentDigest: A }))
    now.at = T0 + 1000
    listen(finished('PUT', '/v2/team/web/manifests/v1', 201, { contentDigest: A, user: 'bob' }))
    now.at = T0 + 2000
    listen(finished('DELETE', `/v2/other/manifests/${A}`, 202))
    listen(finished('GET', '/v2/team/app/manifests/v1', 200))
    t.same((await audit.query()).map((entry) => entry.repository), ['other', 'team/web', 'team/app'])
    t.same((await audit.query({ repository: 'team/*' })).map((entry) => entry.repository), ['team/web', 'team/app'])
    t.same((await audit.query({ user: 'bob' })).map((entry) => entry.repository), ['team/web'])
    t.same((await audit.query({ since: T0 + 1000 })).map((entry) => entry.repository), ['other', 'team/web'])
    t.same((await audit.query({ action: 'manifest.delete' })).map((entry) => entry.repository), ['other'])
    t.same((await audit.query({ limit: 1 })).map((entry) => entry.repository), ['other'])
  })

  t.test(`${engine}: pruning deletes what is older than the retention, and only that`, async (t) => {
    const now = { at: T0 }
    const { audit } = await open(t, engine, now)
    audit.listener()(finished('PUT', '/v2/old/manifests/v1', 201))
    now.at = T0 + 10 * 86_400_000
    audit.listener()(finished('PUT', '/v2/new/manifests/v1', 201))
    t.equal(await audit.prune(5 * 86_400_000), 1)
    t.same((await audit.query()).map((entry) => entry.repository), ['new'])
  })
}

t.test('accepted logins are recorded once per user, client and user agent every login interval; refused ones every time', async (t) => {
  const now = { at: T0 }
  const { audit } = await open(t, 'sqlite', now, { loginIntervalMs: 300_000, monotonic: () => now.at })
  const listen = audit.listener()
  const ping = (more: Partial<FinishedRequest> = {}): void => listen(finished('GET', '/v2/', 200, { authOutcome: 'success', ...more }))
  const token = (status: number, more: Partial<FinishedRequest> = {}): void => listen({ ...finished('GET', '/v2/', status), request: undefined, route: 'token', ...more })
  ping()
  now.at = T0 + 1_000
  ping() // the same runner before its next pull: coalesced
  ping({ clientIp: '203.0.113.10' }) // another address
  ping({ userAgent: 'podman/5.0' }) // another client on the same address
  ping({ user: 'bob' })
  token(200)
  token(200) // coalesced
  token(401, { user: undefined, loginName: 'alice' })
  token(401, { user: undefined, loginName: 'alice' }) // refusals: every one
  listen(finished('GET', '/v2/', 401, { authOutcome: 'invalid_credentials', user: undefined, loginName: 'alice' }))
  listen(finished('GET', '/v2/', 401, { authOutcome: 'invalid_credentials', user: undefined, loginName: 'alice' }))
  listen(finished('PUT', '/v2/team/app/manifests/v1', 201, { contentDigest: A }))
  listen(finished('PUT', '/v2/team/app/manifests/v1', 201, { contentDigest: A }))
  const rows = (entries: Array<{ action: string; outcome: string; user?: string | undefined; client: string; userAgent?: string | undefined }>): string[] =>
    entries.map((entry) => `${entry.action} ${entry.outcome} ${entry.user ?? '-'} ${entry.client} ${entry.userAgent ?? '-'}`).reverse()
  t.same(rows(await audit.query()), [
    'login success alice 203.0.113.9 docker/27.0',
    'login success alice 203.0.113.10 docker/27.0',
    'login success alice 203.0.113.9 podman/5.0',
    'login success bob 203.0.113.9 docker/27.0',
    'login.token success alice 203.0.113.9 docker/27.0',
    'login.token HTTP_401 alice 203.0.113.9 docker/27.0',
    'login.token HTTP_401 alice 203.0.113.9 docker/27.0',
    'login invalid_credentials alice 203.0.113.9 docker/27.0',
    'login invalid_credentials alice 203.0.113.9 docker/27.0',
    'manifest.push success alice 203.0.113.9 docker/27.0',
    'manifest.push success alice 203.0.113.9 docker/27.0',
  ])
  now.at = T0 + 301_001
  ping()
  token(200)
  t.same(rows(await audit.query({ since: T0 + 300_000 })), ['login success alice 203.0.113.9 docker/27.0', 'login.token success alice 203.0.113.9 docker/27.0'], 'recorded again once the interval has passed')

  const every = await open(t, 'sqlite', now, { loginIntervalMs: 0 })
  every.audit.listener()(finished('GET', '/v2/', 200, { authOutcome: 'success' }))
  every.audit.listener()(finished('GET', '/v2/', 200, { authOutcome: 'success' }))
  t.equal((await every.audit.query()).length, 2, 'an interval of 0 records every one')
})

t.test('a login with an access token names the token, and is coalesced apart from the password\'s and other tokens\'; the left-out ones are counted', async (t) => {
  const now = { at: T0 }
  const coalesced: string[] = []
  const { audit } = await open(t, 'sqlite', now, { loginIntervalMs: 300_000, monotonic: () => now.at, onCoalesced: (action) => coalesced.push(action) })
  const listen = audit.listener()
  const ping = (more: Partial<FinishedRequest> = {}): void => listen(finished('GET', '/v2/', 200, { authOutcome: 'success', ...more }))
  const token = (more: Partial<FinishedRequest> = {}): void => listen({ ...finished('GET', '/v2/', 200), request: undefined, route: 'token', ...more })
  ping()
  ping({ accessToken: 'tok_ci' }) // the same user, address and client with an access token: a row of its own
  ping({ accessToken: 'tok_ci' }) // coalesced
  ping({ accessToken: 'tok_laptop' }) // another token
  ping() // coalesced
  token({ accessToken: 'tok_ci' })
  token({ accessToken: 'tok_ci' }) // coalesced
  token()
  // Refresh grants (a POST: no Authorization header, the account from the refresh token) name their refresh token.
  const refresh = (id: string): void => token({ user: 'alice', loginName: 'alice', credentialsSent: false, refreshToken: id })
  refresh('rt-1')
  refresh('rt-1') // coalesced
  refresh('rt-2') // another refresh token
  token() // coalesced: the password's row above
  const rows = (await audit.query()).map((entry) => `${entry.action} ${entry.user ?? '-'} ${entry.subject ?? '-'}`).reverse()
  t.same(rows, ['login alice -', 'login alice tok_ci', 'login alice tok_laptop', 'login.token alice tok_ci', 'login.token alice -', 'login.token alice refresh-token:rt-1', 'login.token alice refresh-token:rt-2'])
  t.same(coalesced, ['login', 'login', 'login.token', 'login.token', 'login.token'], 'each login left out is told, with its action')
})

t.test('--since takes a duration back from now or a time', async (t) => {
  const now = Date.UTC(2026, 5, 1)
  t.equal(parseSince('24h', now), now - 86_400_000)
  t.equal(parseSince('7d', now), now - 7 * 86_400_000)
  t.equal(parseSince('2026-01-31', now), Date.UTC(2026, 0, 31))
  t.equal(parseSince('2026-01-31T12:00:00Z', now), Date.UTC(2026, 0, 31, 12))
  t.throws(() => parseSince('yesterday', now), /--since needs/)
})
