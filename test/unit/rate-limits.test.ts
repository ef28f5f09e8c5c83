// Request rate limits (limits.rate): the token-bucket arithmetic, which rule and bucket count a request, the 429, the fallback, and config problems.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { createLocalCounters, takeFromBucket, type Counters } from '../../src/shared/index.js'
import { createRateLimiter, compileRateRule, actionOf, type RateLimitRule } from '../../src/ratelimit/index.js'
import { classify } from '../../src/registry/classify.js'
import { RegistryError } from '../../src/registry/errors.js'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { createRedisShared } from '../../src/shared/redis.js'
import { createAcl } from '../../src/auth/acl.js'
import { redisFixture } from '../helpers/redis.js'

const silent = pino({ level: 'silent' })
const dir = mkdtempSync(join(tmpdir(), 'portier-rate-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function rule(fields: Partial<RateLimitRule> & Pick<RateLimitRule, 'requests' | 'per'>): RateLimitRule {
  return { match: {}, actions: ['*'], count: 'requests', ...fields }
}

function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>)
      done()
    },
  })
  return { log: pino({ level: 'info' }, stream), lines }
}

t.test('token bucket (GCRA): burst at once, then one per interval; a refusal takes nothing', async (t) => {
  const bucket = { intervalMs: 100, burst: 3 }
  let tat: number | undefined
  const waits: number[] = []
  for (let i = 0; i < 4; i++) {
    const taken = takeFromBucket(tat, 1000, bucket)
    waits.push(taken.waitMs)
    if (taken.waitMs === 0) tat = taken.tat
  }
  t.same(waits, [0, 0, 0, 100], 'three at once, the fourth waits one interval')
  t.equal(tat, 1300)
  t.equal(takeFromBucket(tat, 1050, bucket).waitMs, 50, 'half an interval later: half an interval to wait')
  const later = takeFromBucket(tat, 1100, bucket)
  t.equal(later.waitMs, 0, 'one interval later one more goes')
  t.equal(later.tat, 1400)
  t.equal(takeFromBucket(later.tat, 1100, bucket).waitMs, 100, 'and the next waits again')
  t.equal(takeFromBucket(1300, 5000, bucket).tat, 5100, 'an idle bucket is full again: it starts from now')
  t.same(takeFromBucket(undefined, 7, { intervalMs: 60_000, burst: 1 }), { waitMs: 0, tat: 60_007 }, 'burst 1: one, then a whole interval')
  t.equal(takeFromBucket(60_007, 7, { intervalMs: 60_000, burst: 1 }).waitMs, 60_000)
})

t.test('600 per minute: 600 at once, the next one 100 ms later, 600 more over the next minute', async (t) => {
  let now = 0
  const counters = createLocalCounters(() => now)
  const bucket = { intervalMs: 60_000 / 600, burst: 600 }
  let passed = 0
  for (let i = 0; i < 601; i++) if ((await counters.take('k', bucket)) === 0) passed++
  t.equal(passed, 600)
  t.equal(await counters.take('k', bucket), 100)
  t.equal(await counters.take('other', bucket), 0, 'another key has its own bucket')
  let minute = 0
  for (now = 100; now <= 60_000; now += 100) if ((await counters.take('k', bucket)) === 0) minute++
  t.equal(minute, 600, 'one per 100 ms afterwards')
})

t.test('local counters with lockouts behave as the Redis ones: past the limit within the window, locked', async (t) => {
  let now = 0
  const counters = createLocalCounters(() => now)
  const rule = { limit: 2, windowMs: 1000, lockMs: 5000 }
  t.same([await counters.hit('k', rule), await counters.hit('k', rule)], [0, 0])
  t.equal(await counters.hit('k', rule), 5000, 'the third hit locks')
  now = 1000
  t.equal(await counters.lockedFor(['k', 'other']), 4000)
  t.equal(await counters.hit('k', rule), 4000, 'a hit while locked is told the time left')
  now = 5000
  t.equal(await counters.lockedFor(['k']), 0)
  t.equal(await counters.hit('k', rule), 0, 'a new window after the lock')
  await counters.reset('k')
  t.same([await counters.hit('k', rule), await counters.hit('k', rule)], [0, 0], 'reset forgets the count')
  now = 7000
  t.same([await counters.hit('k', rule), await counters.hit('k', rule), await counters.hit('k', rule)], [0, 0, 5000], 'the window ended: counted afresh')
})

t.test('which rule counts a request', async (t) => {
  const groups = new Map([['ci', new Set(['bot'])]])
  const memberOf = (group: string, user: string): boolean => groups.get(group)?.has(user) === true
  const pull = classify('GET', '/v2/team/app/blobs/sha256:' + 'a'.repeat(64))
  const manifest = classify('HEAD', '/v2/team/app/manifests/latest')
  const push = classify('PATCH', '/v2/team/app/blobs/uploads/abc')
  const remove = classify('DELETE', '/v2/team/app/manifests/sha256:' + 'b'.repeat(64))
  const base = classify('GET', '/v2/')
  t.same([pull, manifest, push, remove, base].map(actionOf), ['pull', 'pull', 'push', 'delete', undefined], 'a request stands for its strongest action')

  const alice = { user: 'alice', address: '192.0.2.1' }
  const anonymous = { user: undefined, address: '192.0.2.1' }
  const every = compileRateRule(rule({ requests: 1, per: 1000 }), 0, memberOf)
  t.equal(every.fits(pull, alice), true, 'match {} fits every authenticated caller')
  t.equal(every.fits(pull, anonymous), false, 'but no anonymous one (as in auth.acl)')
  t.equal(every.fits(base, alice), true, '* counts /v2/ too')
  const anon = compileRateRule(rule({ match: { account: '' }, requests: 1, per: 1000 }), 1, memberOf)
  t.equal(anon.fits(pull, anonymous), true)
  t.equal(anon.fits(pull, alice), false)
  const pushes = compileRateRule(rule({ match: { account: 'ci-*' }, actions: ['push'], requests: 1, per: 1000 }), 2, memberOf)
  t.equal(pushes.fits(push, { user: 'ci-7', address: '::1' }), true)
  t.equal(pushes.fits(pull, { user: 'ci-7', address: '::1' }), false, 'a pull is not a push')
  t.equal(pushes.fits(base, { user: 'ci-7', address: '::1' }), false, '/v2/ stands for no action')
  t.equal(pushes.fits(push, alice), false, 'account glob')
  const group = compileRateRule(rule({ match: { group: 'ci' }, requests: 1, per: 1000 }), 3, memberOf)
  t.equal(group.fits(pull, { user: 'bot', address: '::1' }), true, 'member in auth.groups')
  t.equal(group.fits(pull, { user: 'carol', groups: ['ci'], address: '::1' }), true, 'vouched for by the credential source')
  t.equal(group.fits(pull, alice), false)
  const network = compileRateRule(rule({ match: { account: '', ip: '10.0.0.0/8' }, requests: 1, per: 1000 }), 4, memberOf)
  t.equal(network.fits(pull, { user: undefined, address: '10.1.2.3' }), true)
  t.equal(network.fits(pull, { user: undefined, address: '::ffff:10.1.2.3' }), true, 'IPv4-mapped')
  t.equal(network.fits(pull, anonymous), false)
  const repositories = compileRateRule(rule({ match: { name: 'team/**' }, requests: 1, per: 1000 }), 5, memberOf)
  t.equal(repositories.fits(pull, alice), true)
  t.equal(repositories.fits(classify('GET', '/v2/other/app/tags/list'), alice), false)
  t.equal(repositories.fits(base, alice), false, 'a rule with a name glob counts only repository requests')
  const manifests = compileRateRule(rule({ requests: 1, per: 1000, count: 'manifests' }), 6, memberOf)
  t.equal(manifests.fits(manifest, alice), true)
  t.equal(manifests.fits(pull, alice), false, 'count: manifests leaves blobs out')
})

t.test('match.group as the ACL sees it: auth.groups and the web UI\'s groups', async (t) => {
  const acl = createAcl({ mode: 'htpasswd', acl: [], groups: [{ name: 'ci', members: ['bot'] }] }, { grants: () => ({ groups: [{ name: 'ci', members: ['dave'] }], grants: [] }) })
  const group = compileRateRule(rule({ match: { group: 'ci' }, requests: 1, per: 1000 }), 0, (name, user) => acl.inGroup(name, user))
  const pull = classify('GET', '/v2/app/tags/list')
  t.equal(group.fits(pull, { user: 'bot', address: '::1' }), true, 'member through auth.groups')
  t.equal(group.fits(pull, { user: 'dave', address: '::1' }), true, 'member through the web UI')
  t.equal(group.fits(pull, { user: 'erin', address: '::1' }), false)
})

t.test('buckets: one per user, one per address for anonymous callers (IPv6 by /64), one set per rule', async (t) => {
  const first = compileRateRule(rule({ requests: 1, per: 1000 }), 0, () => false)
  const second = compileRateRule(rule({ requests: 2, per: 1000 }), 1, () => false)
  const alice = first.bucketOf({ user: 'alice', address: '192.0.2.1' })
  t.equal(alice.by, 'user')
  t.equal(first.bucketOf({ user: 'alice', address: '192.0.2.99' }).key, alice.key, 'a user is one bucket from every address')
  t.not(first.bucketOf({ user: 'bob', address: '192.0.2.1' }).key, alice.key)
  t.not(second.bucketOf({ user: 'alice', address: '192.0.2.1' }).key, alice.key, 'another rule, another bucket')
  const v6 = first.bucketOf({ user: undefined, address: '2001:db8:1:2::1' })
  t.equal(v6.by, 'address')
  t.equal(first.bucketOf({ user: undefined, address: '2001:db8:1:2:ffff::9' }).key, v6.key, 'same /64, same bucket')
  t.not(first.bucketOf({ user: undefined, address: '2001:db8:1:3::1' }).key, v6.key)
  t.notMatch(alice.key, /alice|192/, 'names and addresses are hashed')
  t.not(first.bucketOf({ user: '', address: '192.0.2.1' }).key, first.bucketOf({ user: undefined, address: '192.0.2.1' }).key)
})

t.test('the limiter: 429 TOOMANYREQUESTS with Retry-After, logged once per period, counted; others unaffected', async (t) => {
  let now = 1_000_000
  const counters = createLocalCounters(() => now)
  const { log, lines } = capture()
  const limited: string[] = []
  const limiter = createRateLimiter([rule({ name: 'users', requests: 2, per: 10_000, burst: 2 })], { counters, fallback: counters, memberOf: () => false, log, onLimited: (name, by) => limited.push(`${name}/${by}`), now: () => now })
  t.ok(limiter)
  if (!limiter) return
  const request = classify('GET', '/v2/app/manifests/latest')
  const alice = { user: 'alice', address: '127.0.0.1' }
  await limiter.admit(request, alice)
  await limiter.admit(request, alice)
  const refusals: RegistryError[] = []
  for (let i = 0; i < 3; i++) {
    try {
      await limiter.admit(request, alice)
    } catch (error) {
      if (error instanceof RegistryError) refusals.push(error)
    }
  }
  t.equal(refusals.length, 3)
  t.equal(refusals[0]?.code, 'TOOMANYREQUESTS')
  t.equal(refusals[0]?.status, 429)
  t.same(refusals[0]?.headers, { 'Retry-After': '5' }, 'one request refills in 5 s')
  t.match(refusals[0]?.detail, { limit: 'rate', rule: 'users', requests: 2, per_seconds: 10 })
  t.same(limited, ['users/user', 'users/user', 'users/user'])
  t.equal(lines.filter((line) => String(line.msg).startsWith('rate limit reached')).length, 1, 'logged once for three refusals')
  await limiter.admit(request, { user: 'bob', address: '127.0.0.1' })
  t.pass('another user is unaffected')
  await limiter.admit(request, { user: undefined, address: '127.0.0.1' })
  t.pass('anonymous callers fit no rule here: not limited')
  now += 10_000
  await limiter.admit(request, alice)
  await limiter.admit(request, alice)
  t.pass('after the period alice has her whole burst again')
  await t.rejects(limiter.admit(request, alice))
  await t.rejects(limiter.admit(request, alice))
  t.equal(lines.filter((line) => String(line.msg).startsWith('rate limit reached')).length, 2, 'a new period logs again')
  t.same(limiter.status(), { rules: 1, counted: 'here' })
  t.equal(createRateLimiter([], { counters, fallback: counters, memberOf: () => false, log }), undefined, 'no rules: no stage')
})

t.test('shared counters unreachable: each instance counts alone (fail open), says so once, and recovers', async (t) => {
  let down = true
  const fallback = createLocalCounters()
  const remote = createLocalCounters()
  const flaky: Counters = { ...remote, take: (key, bucket) => (down ? Promise.reject(new Error('connection refused')) : remote.take(key, bucket)) }
  const { log, lines } = capture()
  const limiter = createRateLimiter([rule({ requests: 1, per: 60_000 })], { counters: flaky, fallback, memberOf: () => false, log })
  if (!limiter) return t.fail('no limiter')
  const request = classify('GET', '/v2/')
  const alice = { user: 'alice', address: '127.0.0.1' }
  await limiter.admit(request, alice)
  t.match(limiter.status(), { counted: 'here', reason: /unreachable/ })
  await t.rejects(limiter.admit(request, alice), { code: 'TOOMANYREQUESTS' }, 'the local bucket still limits')
  t.equal(lines.filter((line) => String(line.msg).includes('unreachable')).length, 1, 'told once')
  down = false
  await limiter.admit(request, alice)
  t.same(limiter.status(), { rules: 1, counted: 'shared' })
  t.ok(lines.some((line) => String(line.msg).includes('reachable again')))
})

t.test('Redis buckets: the same arithmetic on Redis\'s clock, one bucket for two instances', async (t) => {
  const redis = await redisFixture(t)
  const open = () => {
    const shared = createRedisShared({ url: redis.url, username: '', password: '', ca: undefined, keyPrefix: 'rl:', connectTimeoutMs: 2000, commandTimeoutMs: 500, staleAfterMs: 60_000, log: silent })
    t.teardown(() => shared.close())
    return shared
  }
  const a = open()
  const b = open()
  t.equal(await a.connected(), true)
  t.equal(await b.connected(), true)
  const counters = [a.counters, b.counters]
  if (!counters[0] || !counters[1]) return t.fail('no counters')
  const bucket = { intervalMs: 60_000, burst: 3 }
  const waits: number[] = []
  for (let i = 0; i < 4; i++) waits.push(await (counters[i % 2] as Counters).take('k1', bucket))
  t.same(waits.slice(0, 3), [0, 0, 0], 'three at once, alternating instances')
  t.ok((waits[3] ?? 0) > 55_000 && (waits[3] ?? 0) <= 60_000, `the fourth waits about one interval (${waits[3]} ms)`)
  t.equal(await counters[0].take('k2', bucket), 0, 'another key')
  const ttl = Number((await redis.command('PTTL', 'rl:rate:{k1}')).replace(/^:/, '').trim())
  t.ok(ttl > 170_000 && ttl <= 180_001, `the bucket key expires when it is full again (${ttl} ms)`)
  await redis.command('SCRIPT', 'FLUSH')
  t.equal(await counters[1].take('k3', bucket), 0, 'a Redis that forgot the script gets it again')
  await redis.kill()
  await t.rejects(counters[0].take('k1', bucket), 'unreachable: rejects (the limiter falls back)')
})

function problemsOf(text: string): ConfigProblem[] {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(file, text)
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

t.test('config: defaults off; problems name the key and what was expected', async (t) => {
  t.same(loadConfig({ env: {} }).config.limits.rate, [], 'no rate limits unless configured')
  const { config } = loadConfig({ env: { PORTIER_LIMITS_RATE: '[{match: {account: ""}, requests: 60, per: 1m}]' } })
  t.same(config.limits.rate, [{ match: { account: '' }, actions: ['*'], count: 'requests', requests: 60, per: 60_000 }], 'PORTIER_LIMITS_RATE as YAML flow')
  const problems = problemsOf(`
auth:
  groups: [{ name: ci, members: [bot] }]
limits:
  rate:
    - { match: { ip: 10.0.0.0/33 }, requests: 10, per: 1m }
    - { match: { group: builders }, requests: 10, per: 1m }
    - { match: { account: "" , group: ci }, requests: 10, per: 1m }
    - { match: { name: "Team/*" }, requests: 10, per: 1m }
    - { requests: 0, per: 1m }
    - { requests: 10, per: 0s }
    - { requests: 10, per: 1m, actions: [read] }
    - { requests: 10, per: 1m, count: blobs }
    - { requests: 10, per: soon }
    - { match: { account: "\${account}" }, requests: 10, per: 1m }
    - { requests: 10, per: 1m, burst: 0 }
    - { per: 1m }
    - { name: dup, requests: 10, per: 1m }
    - { name: dup, requests: 10, per: 1m }
`)
  const byKey = new Map(problems.map((problem) => [problem.key, problem]))
  const expected: Array<[string, RegExp]> = [
    ['limits.rate[0].match.ip', /IP address or CIDR/],
    ['limits.rate[1].match.group', /a group defined in auth.groups \(ci\)/],
    ['limits.rate[2].match.group', /anonymous/],
    ['limits.rate[3].match.name', /repository glob/],
    ['limits.rate[4].requests', /≥ 1/],
    ['limits.rate[5].per', /longer than zero/],
    ['limits.rate[6].actions[0]', /"pull", "push", "delete", "\*"/],
    ['limits.rate[7].count', /"requests", "manifests"/],
    ['limits.rate[8].per', /a duration like/],
    ['limits.rate[9].match.account', /without placeholders/],
    ['limits.rate[10].burst', /≥ 1/],
    ['limits.rate[11].requests', /required/],
    ['limits.rate[13].name', /no other rule has \(limits.rate\[12\]/],
  ]
  for (const [key, pattern] of expected) {
    t.match(byKey.get(key)?.expected, pattern, key)
    t.match(byKey.get(key)?.source, /\.yaml$/, `${key} names the file`)
  }
  t.equal(problems.length, expected.length, problems.map((p) => `${p.key}: ${p.expected}`).join('\n'))
})
