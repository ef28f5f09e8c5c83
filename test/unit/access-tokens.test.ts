// Access tokens (src/auth/access-tokens): the secret's shape and hash, scopes and their intersection with the ACL, expiry, revocation
// (across instances through shared revocations), owners' groups, the throttle; on SQLite and PostgreSQL (when installed).
import t, { type Test } from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { Store } from '../../src/store/store.js'
import type { StoreEngine } from '../../src/store/engine.js'
import { localRevocations, type Revocations } from '../../src/shared/index.js'
import { ENGINES, openEngine, type EngineName } from '../helpers/store-engines.js'
import {
  AccessTokens,
  createTokenLogin,
  generateSecret,
  hashSecret,
  isAccessTokenSecret,
  parseCreateBody,
  parseTokenScopes,
  tokenView,
  type TokenAuditEvent,
} from '../../src/auth/access-tokens/index.js'
import { ACCESS_TOKEN_MIGRATIONS } from '../../src/auth/access-tokens/table.js'
import { createAcl, withinLimit } from '../../src/auth/acl.js'
import { createThrottle } from '../../src/auth/throttle.js'

const T0 = Date.UTC(2026, 0, 10, 12)
const DAY = 86_400_000

type More = { accountActive?: (user: string) => boolean; revocations?: Revocations; cacheTtlMs?: number }

async function open(t: Test, engine: EngineName, now: { at: number }, more: More = {}): Promise<{ store: StoreEngine; tokens: AccessTokens; events: TokenAuditEvent[] }> {
  const store = await openEngine(t, engine, { flushIntervalMs: 60_000 })
  const events: TokenAuditEvent[] = []
  const tokens = new AccessTokens(store, { now: () => now.at, onAudit: (event) => events.push(event), ...more })
  await tokens.ready
  return { store, tokens, events }
}

/** One stored row, as the engine answers it (times as numbers on both). */
async function rowOf(store: StoreEngine, id: string): Promise<Record<string, unknown>> {
  await store.commit()
  const [row] = await store.all('SELECT * FROM access_tokens WHERE id = ?', [id])
  return row ?? {}
}

const reason = (check: { ok: boolean; reason?: string }): string => (check.ok ? 'ok' : (check.reason ?? '?'))

t.test('a secret is portier_ + 40 base62 characters + a checksum; one changed character fails the checksum', async (t) => {
  const seen = new Set<string>()
  for (let i = 0; i < 200; i++) {
    const secret = generateSecret()
    t.match(secret, /^portier_[0-9A-Za-z]{46}$/)
    t.ok(isAccessTokenSecret(secret))
    seen.add(secret)
  }
  t.equal(seen.size, 200, 'no two alike')
  const secret = generateSecret()
  const at = 20
  const changed = secret.slice(0, at) + (secret[at] === 'a' ? 'b' : 'a') + secret.slice(at + 1)
  t.notOk(isAccessTokenSecret(changed), 'a typo is caught by the checksum')
  t.notOk(isAccessTokenSecret('portier_short'))
  t.notOk(isAccessTokenSecret('hunter2'))
})

t.test('the stored form is the SHA-256 of the secret, in hex', async (t) => {
  const secret = generateSecret()
  t.equal(hashSecret(secret), createHash('sha256').update(secret).digest('hex'))
})

t.test('scopes: repository globs and actions are checked; bad ones are refused with the reason', async (t) => {
  t.same(parseTokenScopes(['repository:team/*:pull,push registry:catalog:*']), [
    { type: 'repository', name: 'team/*', actions: ['pull', 'push'] },
    { type: 'registry', name: 'catalog', actions: ['*'] },
  ])
  t.throws(() => parseTokenScopes(['repository:Team/*:pull']), /repository glob/)
  t.throws(() => parseTokenScopes(['repository:team/app:fly']), /actions are pull, push, delete/)
  t.throws(() => parseTokenScopes(['plugin:x:pull']), /repository or registry/)
  t.throws(() => parseTokenScopes(['team/app']), /TYPE:NAME:ACTIONS/)
  t.throws(() => parseTokenScopes([]), /at least one scope/)
})

t.test('a limit intersects with what the ACL grants the owner; a robot gets exactly its scopes', async (t) => {
  const acl = createAcl({
    mode: 'htpasswd',
    groups: [],
    acl: [
      { match: { account: 'alice', name: 'team/**' }, actions: ['pull', 'push', 'delete'] },
      { match: { account: 'alice', name: 'other/*' }, actions: ['pull'] },
    ],
  })
  const limit = parseTokenScopes(['repository:team/*:pull,push', 'repository:other/*:*'])
  const alice = { user: 'alice', anonymous: false, limit }
  const scope = (name: string, ...actions: Array<'pull' | 'push' | 'delete' | '*'>) => ({ type: 'repository' as const, name, actions })
  t.same(acl.granted(alice, scope('team/app', 'pull', 'push', 'delete'), '127.0.0.1'), ['pull', 'push'], 'delete is the ACL\'s but not the token\'s')
  t.same(acl.granted(alice, scope('team/a/b', 'pull'), '127.0.0.1'), [], 'team/* is one component: the ACL grants it, the token does not')
  t.same(acl.granted(alice, scope('other/x', 'pull', 'push'), '127.0.0.1'), ['pull'], 'the token allows *, the ACL only pull')
  t.same(acl.granted(alice, scope('elsewhere/x', 'pull'), '127.0.0.1'), [], 'neither')
  t.same(acl.granted({ user: 'alice', anonymous: false }, scope('team/app', 'delete'), '127.0.0.1'), ['delete'], 'without a limit the ACL alone decides')
  const robot = { user: 'robot$ci', anonymous: false, robot: true, limit: parseTokenScopes(['repository:ci/*:pull']) }
  t.same(acl.granted(robot, scope('ci/app', 'pull', 'push'), '127.0.0.1'), ['pull'], 'no ACL rule names the robot: its scopes decide')
  t.same(acl.granted(robot, scope('team/app', 'pull'), '127.0.0.1'), [])
  t.same(acl.granted({ user: 'robot$x', anonymous: false, robot: true }, scope('ci/app', 'pull'), '127.0.0.1'), [], 'a robot without scopes gets nothing')
  t.same(withinLimit(parseTokenScopes(['repository:a:pull']), scope('a', '*'), ['*']), [], 'asking for * needs * in the limit')
  t.same(withinLimit(parseTokenScopes(['registry:catalog:*']), { type: 'registry', name: 'catalog', actions: ['*'] }, ['*']), ['*'])
})


for (const engine of ENGINES) {
  t.test(`${engine}: create shows the secret once, stores only its hash, and verify answers the owner with its scopes`, async (t) => {
    const now = { at: T0 }
    const { store, tokens, events } = await open(t, engine, now, { accountActive: (user) => user === 'alice' })
    const { secret, record } = await tokens.create({ owner: 'alice', name: 'ci', scopes: parseTokenScopes(['repository:team/*:pull']), expiresInMs: 90 * DAY, robot: false, by: 'alice', client: '10.0.0.1' })
    t.match(record.id, /^tok_/)
    t.equal(record.expiresAt, T0 + 90 * DAY)
    const row = await rowOf(store, record.id)
    t.equal(row.hash, hashSecret(secret), 'the hash is stored')
    t.equal(Number(row.expires_at), T0 + 90 * DAY)
    t.notOk(Object.values(row).some((value) => typeof value === 'string' && value.includes(secret.slice(8, 40))), 'the secret is not')
    t.same(events.map((e) => [e.action, e.outcome, e.user]), [['token.create', 'success', 'alice']])
    const check = await tokens.verify(secret, 'alice', '10.0.0.2')
    t.ok(check.ok)
    if (check.ok) t.same(check.record.scopes, [{ type: 'repository', name: 'team/*', actions: ['pull'] }])
    const used = await rowOf(store, record.id)
    t.same([Number(used.last_used_at), used.last_used_from], [T0, '10.0.0.2'], 'last use is recorded (batched)')
    const wrong = await tokens.verify(secret, 'bob', '10.0.0.2')
    t.equal(reason(wrong), 'wrong_user', 'the token is for its owner\'s name only')
    t.same(events.at(-1)?.action, 'token.refused')
    const listed = await tokens.list({ owner: 'alice' })
    t.same(listed.map((token) => [token.id, token.lastUsedFrom]), [[record.id, '10.0.0.2']], 'list: the owner\'s tokens with their last use')
    t.same((await tokens.list({ owner: 'bob' })).length, 0)
  })

  t.test(`${engine}: revoke takes effect at the next check, though the token was cached`, async (t) => {
    const now = { at: T0 }
    const { tokens, events } = await open(t, engine, now)
    const { secret, record } = await tokens.create({ owner: 'alice', name: 'ci', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    t.ok((await tokens.verify(secret, 'alice', 'c')).ok, 'cached now')
    t.ok(await tokens.isLive(record.id), 'live (and cached) before')
    await tokens.revoke(record.id, 'admin', 'c', () => true)
    t.equal(reason(await tokens.verify(secret, 'alice', 'c')), 'revoked')
    await t.rejects(tokens.revoke(record.id, 'admin', 'c', () => true), /revoked already/)
    await t.rejects(tokens.revoke('tok_nope', 'admin', 'c', () => true), /no token/)
    t.same(events.map((e) => e.action), ['token.create', 'token.revoke', 'token.refused'])
    t.equal(tokenView((await tokens.get(record.id))!, now.at).state, 'revoked')
    t.notOk(await tokens.isLive(record.id), 'JWTs issued for it are refused too')
    t.notOk(await tokens.isLive('tok_unknown'))
  })

  t.test(`${engine}: an expired token is refused, cached or not`, async (t) => {
    const now = { at: T0 }
    const { tokens } = await open(t, engine, now)
    const { secret, record } = await tokens.create({ owner: 'alice', name: 'short', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: 60_000, robot: false, by: 'alice', client: 'c' })
    t.ok((await tokens.verify(secret, 'alice', 'c')).ok)
    now.at += 60_000
    t.equal(reason(await tokens.verify(secret, 'alice', 'c')), 'expired')
    t.equal(tokenView((await tokens.get(record.id))!, now.at).state, 'expired')
    t.notOk(await tokens.isLive(record.id))
  })

  t.test(`${engine}: a removed htpasswd owner's tokens stop working; an unknown secret is refused`, async (t) => {
    const now = { at: T0 }
    const users = new Set(['alice'])
    const { tokens } = await open(t, engine, now, { accountActive: (user) => users.has(user) })
    const { secret } = await tokens.create({ owner: 'alice', name: 'x', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    users.delete('alice')
    t.equal(reason(await tokens.verify(secret, 'alice', 'c')), 'owner_removed')
    t.equal(reason(await tokens.verify(generateSecret(), 'alice', 'c')), 'unknown')
  })

  t.test(`${engine}: robot accounts are robot$NAME, one live token each, also when two instances race`, async (t) => {
    const now = { at: T0 }
    const { store, tokens } = await open(t, engine, now)
    const other = new AccessTokens(store, { now: () => now.at })
    await other.ready
    const made = (on: AccessTokens) => on.create({ owner: 'admin', name: 'ci-deploy', scopes: parseTokenScopes(['repository:ci/*:pull']), expiresInMs: DAY, robot: true, by: 'admin', client: 'c' })
    const raced = await Promise.allSettled([made(tokens), made(other), made(tokens), made(other)])
    t.equal(raced.filter((outcome) => outcome.status === 'fulfilled').length, 1, 'one of four creations at once succeeds')
    for (const outcome of raced) if (outcome.status === 'rejected') t.match(String(outcome.reason), /already has a live token/)
    const first = raced.find((outcome) => outcome.status === 'fulfilled')
    const record = first?.status === 'fulfilled' ? first.value.record : undefined
    t.equal(record?.owner, 'robot$ci-deploy')
    t.ok(record?.robot)
    await t.rejects(tokens.create({ owner: 'admin', name: 'Bad Name', scopes: parseTokenScopes(['repository:ci/*:pull']), expiresInMs: DAY, robot: true, by: 'admin', client: 'c' }), /robot name/)
    await tokens.revoke(record?.id ?? '', 'admin', 'c', () => true)
    t.ok((await made(other)).secret, 'a new one once the old is revoked')
  })

  t.test(`${engine}: two instances on one store: without shared revocations the other one's cache holds until cache_ttl; with them the next check refuses`, async (t) => {
    const now = { at: T0 }
    const { store, tokens: a } = await open(t, engine, now, { cacheTtlMs: 30_000 })
    const b = new AccessTokens(store, { now: () => now.at, cacheTtlMs: 30_000 })
    const { secret, record } = await a.create({ owner: 'alice', name: 'ci', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    t.ok((await b.verify(secret, 'alice', 'c')).ok, 'B knows a token made at A (read from the store)')
    await a.revoke(record.id, 'admin', 'c', () => true)
    t.ok((await b.verify(secret, 'alice', 'c')).ok, 'B answers from its cache (no shared revocations)')
    now.at += 30_001
    t.equal(reason(await b.verify(secret, 'alice', 'c')), 'revoked', 'until cache_ttl ends')

    // Shared revocations (what shared.redis gives every instance): one object seen by both.
    const shared = localRevocations()
    const c = new AccessTokens(store, { now: () => now.at, revocations: shared })
    const d = new AccessTokens(store, { now: () => now.at, revocations: shared })
    const made = await c.create({ owner: 'alice', name: 'ci2', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    t.ok((await d.verify(made.secret, 'alice', 'c')).ok, 'D caches it')
    t.ok(await d.isLive(made.record.id), 'D caches its liveness (JWTs)')
    await c.revoke(made.record.id, 'alice', 'c', (token) => token.owner === 'alice')
    t.ok(shared.isRevoked('access-token', made.record.id, now.at), 'announced under kind access-token')
    t.notOk(shared.isRevoked('access-token', made.record.id, T0 + 30_001 + DAY + 1), '… until the token would have expired')
    t.equal(reason(await d.verify(made.secret, 'alice', 'c')), 'revoked', 'D refuses at the very next check')
    t.notOk(await d.isLive(made.record.id), 'and its JWTs')
  })

  t.test(`${engine}: while shared state cannot vouch for a token (isRevoked true) the store decides, and a live token still works`, async (t) => {
    const now = { at: T0 }
    let stale = false
    const revocations: Revocations = { revoke: () => Promise.resolve(), isRevoked: () => stale }
    const { tokens, store } = await open(t, engine, now, { revocations })
    const { secret, record } = await tokens.create({ owner: 'alice', name: 'ci', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    t.ok((await tokens.verify(secret, 'alice', 'c')).ok)
    stale = true
    t.ok((await tokens.verify(secret, 'alice', 'c')).ok, 'read from the store: not revoked there')
    // Revoked behind this instance's back (another instance whose announcement was lost): the store says so.
    await store.atomic([{ sql: 'UPDATE access_tokens SET revoked_at = ? WHERE id = ?', params: [now.at, record.id] }])
    t.equal(reason(await tokens.verify(secret, 'alice', 'c')), 'revoked')
  })

  t.test(`${engine}: a token carries the groups recorded at creation; the ACL matches them like the owner's (match.group)`, async (t) => {
    const now = { at: T0 }
    const { tokens, store } = await open(t, engine, now)
    const scopes = parseTokenScopes(['repository:team/**:pull,push'])
    const withGroups = await tokens.create({ owner: 'sso-carol', name: 'laptop', scopes, expiresInMs: DAY, robot: false, by: 'sso-carol', client: 'c', groups: ['developers', 'developers'] })
    const without = await tokens.create({ owner: 'sso-carol', name: 'old', scopes, expiresInMs: DAY, robot: false, by: 'sso-carol', client: 'c' })
    const robot = await tokens.create({ owner: 'admin', name: 'bot', scopes, expiresInMs: DAY, robot: true, by: 'admin', client: 'c', groups: ['developers'] })
    t.same(withGroups.record.groups, ['developers'])
    t.same(JSON.parse(String((await rowOf(store, withGroups.record.id)).groups)), ['developers'], 'stored with the token')
    t.equal((await rowOf(store, robot.record.id)).groups, null, 'a robot records none')
    t.same(tokenView(withGroups.record).groups, ['developers'])
    const acl = createAcl({ mode: 'htpasswd', groups: [{ name: 'developers', members: [] }], acl: [{ match: { group: 'developers', name: 'team/**' }, actions: ['pull', 'push'] }] })
    const login = createTokenLogin(tokens, createThrottle({ max_failures: 5, window: 60_000, lockout: 60_000 }, { now: () => now.at }))
    const asks = { type: 'repository' as const, name: 'team/app', actions: ['pull' as const, 'push' as const] }
    const granted = async (secret: string, user: string): Promise<string[]> => {
      const outcome = await login(user, secret, '10.0.0.1')
      if (!outcome || outcome === 'locked') return ['refused']
      const { identity } = outcome
      return acl.granted({ user: identity.user, anonymous: false, ...(identity.groups ? { groups: identity.groups } : {}), ...(identity.limit ? { limit: identity.limit } : {}), ...(identity.robot ? { robot: true } : {}) }, asks, '10.0.0.1')
    }
    t.same(await granted(withGroups.secret, 'sso-carol'), ['pull', 'push'], 'the token made with the group gets what the group has')
    t.same(await granted(without.secret, 'sso-carol'), [], 'one made without groups gets nothing from the group')
    const fresh = new AccessTokens(store, { now: () => now.at })
    const again = await fresh.verify(withGroups.secret, 'sso-carol', 'c')
    t.same(again.ok ? again.record.groups : undefined, ['developers'], 'read back from the store by another instance')
  })

  t.test(`${engine}: the throttle counts token logins; the store unreachable on a miss is a 503, not a failure`, async (t) => {
    const now = { at: T0 }
    const { tokens, store } = await open(t, engine, now)
    const { secret, record } = await tokens.create({ owner: 'alice', name: 'x', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'alice', client: 'c' })
    const throttle = createThrottle({ max_failures: 2, window: 60_000, lockout: 60_000 }, { now: () => now.at })
    const login = createTokenLogin(tokens, throttle)
    const identity = await login('alice', secret, '10.0.0.9')
    t.same(identity, { identity: { user: 'alice', via: 'access-token', limit: [{ type: 'repository', name: 'a', actions: ['pull'] }], accessToken: record.id }, tokenId: record.id })
    for (let i = 0; i < 3; i++) t.equal(await login('alice', generateSecret(), '10.0.0.9'), false)
    t.equal(await login('alice', secret, '10.0.0.9'), 'locked', 'locked out after max_failures + 1 failures')
    t.same(await login('alice', secret, '10.0.0.10'), identity, 'another address is not locked')
    const other = await tokens.create({ owner: 'bob', name: 'y', scopes: parseTokenScopes(['repository:a:pull']), expiresInMs: DAY, robot: false, by: 'bob', client: 'c' })
    await store.close()
    t.same(await login('alice', secret, '10.0.0.11'), identity, 'a cached token works with the store gone')
    await t.rejects(login('bob', other.secret, '10.0.0.11'), { code: 'UNAVAILABLE' }, 'an uncached one is a 503')
    t.equal(throttle.retryAfter('bob', '10.0.0.11'), 0, 'and counts no failure')
  })
}

t.test('sqlite: a store made before PostgreSQL support (access_tokens version 1) is upgraded; its tokens keep working', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-tokens-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'portier.db')
  const old = Store.open(path)
  old.migrate('access_tokens', [ACCESS_TOKEN_MIGRATIONS.sqlite[0] as string])
  const secret = generateSecret()
  old.statement(`INSERT INTO access_tokens (id, hash, hint, name, owner, robot, local_owner, scopes, created_at, created_by, expires_at)
    VALUES ('tok_old', ?, 'abcd', 'old', 'alice', 0, 0, '[{"type":"repository","name":"a","actions":["pull"]}]', ?, 'alice', NULL)`).run(hashSecret(secret), T0)
  old.close()
  const store = Store.open(path)
  t.teardown(() => store.close())
  const tokens = new AccessTokens(store, { now: () => T0 })
  await tokens.ready
  const check = await tokens.verify(secret, 'alice', 'c')
  t.ok(check.ok, 'the old token verifies')
  if (check.ok) t.equal(check.record.groups, undefined, 'with no groups')
  const db = new DatabaseSync(path, { readOnly: true })
  t.teardown(() => db.close())
  t.same(db.prepare("SELECT max(version) AS v FROM schema_migrations WHERE module = 'access_tokens'").get(), { v: 2 })
})

t.test('create bodies: default and maximum expiry, "never", scopes as text or list', async (t) => {
  const policy = { default_expiry: 90 * DAY, max_expiry: 365 * DAY }
  t.same(parseCreateBody({ name: 'ci', scopes: 'repository:a:pull' }, policy), { name: 'ci', scopes: [{ type: 'repository', name: 'a', actions: ['pull'] }], expiresInMs: 90 * DAY, robot: false })
  t.equal(parseCreateBody({ name: 'ci', scopes: ['repository:a:pull'], expires: '7d' }, policy).expiresInMs, 7 * DAY)
  t.throws(() => parseCreateBody({ name: 'ci', scopes: ['repository:a:pull'], expires: '400d' }, policy), /at most 365d/)
  t.throws(() => parseCreateBody({ name: 'ci', scopes: ['repository:a:pull'], expires: 'never' }, policy), /at most 365d/)
  t.equal(parseCreateBody({ name: 'ci', scopes: ['repository:a:pull'], expires: 'never' }, { ...policy, max_expiry: 0 }).expiresInMs, 0)
  t.throws(() => parseCreateBody({ name: 'ci', scopes: ['repository:a:pull'], expires: 'soon' }, policy), /duration/)
  t.throws(() => parseCreateBody({ name: 'ci', scopes: 5 }, policy), /list of scopes/)
})

t.test('config: access_tokens.* problems are named by key (check-config reports them)', async (t) => {
  const { loadConfig } = await import('../../src/app/config.js')
  const attempt = (env: NodeJS.ProcessEnv): string => {
    try {
      loadConfig({ env })
      return ''
    } catch (error) {
      return (error as Error).message
    }
  }
  t.match(attempt({ PORTIER_ACCESS_TOKENS_DEFAULT_EXPIRY: '400d' }), /access_tokens\.default_expiry.*no longer than access_tokens\.max_expiry/s)
  t.match(attempt({ PORTIER_ACCESS_TOKENS_MAX_EXPIRY: 'soon' }), /access_tokens\.max_expiry.*a duration/s)
  t.match(attempt({ PORTIER_ACCESS_TOKENS_ENABLED: 'maybe' }), /access_tokens\.enabled/)
  t.equal(attempt({ PORTIER_ACCESS_TOKENS_MAX_EXPIRY: '0', PORTIER_ACCESS_TOKENS_DEFAULT_EXPIRY: '0' }), '', 'tokens that never expire, when allowed')
  t.match(attempt({ PORTIER_ACCESS_TOKENS_DEFAULT_EXPIRY: '0' }), /access_tokens\.default_expiry.*max_expiry: 0/s)
})
