// htpasswd parsing, hash formats (checked against openssl and htpasswd outputs) and the verified-credential cache.
import t from 'tap'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { apr1, hashKind, hashPassword, verifyPassword } from '../../src/auth/hashes.js'
import { HtpasswdStore, parseHtpasswd, type CheckAdmission } from '../../src/auth/htpasswd.js'
import { createPasswordPool, PoolBusyError } from '../../src/auth/password-pool.js'
import { createThrottle } from '../../src/auth/throttle.js'
import { parseBasic, shownLoginName } from '../../src/auth/basic.js'

t.test('apr1 matches openssl passwd -apr1', async (t) => {
  const expected = execFileSync('openssl', ['passwd', '-apr1', '-salt', 'q1W2e3R4', 'correct horse']).toString().trim()
  t.equal(apr1('correct horse', 'q1W2e3R4'), expected)
  t.equal(await verifyPassword('correct horse', expected), true)
  t.equal(await verifyPassword('wrong horse', expected), false)
})

t.test('{SHA} and bcrypt hashes verify; bcrypt is written as $2y$ with cost >= 10', async (t) => {
  t.equal(await verifyPassword('password', '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='), true)
  t.equal(await verifyPassword('Password', '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='), false)
  const hash = await hashPassword('s3cret-pass', 10)
  t.match(hash, /^\$2y\$10\$/)
  t.equal(hashKind(hash), 'bcrypt')
  t.equal(await verifyPassword('s3cret-pass', hash), true)
  t.equal(await verifyPassword('s3cret-pasS', hash), false)
})

t.test('parse reports malformed lines with their numbers and names weak users', async (t) => {
  const parsed = parseHtpasswd([
    '# comment',
    'alice:$2y$05$zuV5bHs8kHzJ0FrV8pqVHuHMfYqkVwqf2IYyE9hJdXdZ9TKCxVd1G',
    'no-colon-here',
    'bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
    'carol:plaintext',
    '',
    'dave:$apr1$q1W2e3R4$abcdefghijklmnopqrstuv',
  ].join('\n'))
  t.same([...parsed.users.keys()], ['alice', 'bob', 'dave'])
  t.same(parsed.problems.map((p) => p.line), [3, 5])
  t.same(parsed.weak.map((w) => `${w.user}:${w.kind}`), ['bob:sha1', 'dave:apr1'])
})

t.test('Basic header parsing', async (t) => {
  t.same(parseBasic(`Basic ${Buffer.from('u:p:with:colons').toString('base64')}`), { user: 'u', password: 'p:with:colons' })
  t.equal(parseBasic('Bearer abc'), undefined)
  t.equal(parseBasic(`Basic ${Buffer.from('nocolon').toString('base64')}`), undefined)
  t.equal(parseBasic(undefined), undefined)
  // A name tried is client input: as the logs, the audit trail and webhooks show it.
  t.equal(shownLoginName('al\u0000ice\u001b[31m\u007f'), 'al\uFFFDice\uFFFD[31m\uFFFD', 'control characters (NUL, escape, DEL) replaced')
  t.equal(shownLoginName('é'.repeat(300)).length, 256, 'cut to 256 characters')
  t.equal(shownLoginName('robot$ci-bot'), 'robot$ci-bot')
})

t.test('the store caches a verified credential and drops the cache when the file changes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('first-password', 10)}\n`)
  const loads: number[] = []
  let hashChecks = 0
  const counting = (password: string, hash: string): Promise<boolean> => {
    hashChecks++
    return verifyPassword(password, hash)
  }
  const store = new HtpasswdStore(file, 60_000, { onLoad: (parsed) => loads.push(parsed.users.size), onError: () => undefined }, counting)
  t.teardown(() => store.close())

  const results: boolean[] = []
  for (let i = 0; i < 50; i++) results.push(await store.verify('ann', 'first-password'))
  t.ok(results.every(Boolean), 'the credential is accepted 50 times')
  t.equal(hashChecks, 1, 'bcrypt ran once for 50 requests with the same credential')
  t.equal(await store.verify('ann', 'wrong'), false)
  t.equal(await store.verify('nobody', 'first-password'), false)

  store.watch()
  writeFileSync(file, `ann:${await hashPassword('second-password', 10)}\n`)
  const deadline = Date.now() + 5000
  while (loads.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  t.equal(loads.length, 2, 'reloaded after the change')
  t.equal(await store.verify('ann', 'first-password'), false, 'old password no longer accepted (cache dropped)')
  t.equal(await store.verify('ann', 'second-password'), true)
})

t.test('many requests with the same uncached credential at once share one bcrypt check', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('right', 10)}\n`)
  let hashChecks = 0
  const counting = (password: string, hash: string): Promise<boolean> => {
    hashChecks++
    return verifyPassword(password, hash)
  }
  const store = new HtpasswdStore(file, 60_000, { onLoad: () => undefined, onError: () => undefined }, counting)
  t.teardown(() => store.close())

  const accepted = await Promise.all(Array.from({ length: 32 }, () => store.verify('ann', 'right')))
  t.ok(accepted.every(Boolean), '32 concurrent requests accepted')
  t.equal(hashChecks, 1, 'one bcrypt check for 32 concurrent requests (like 32 connections opened at once)')
  const rejected = await Promise.all(Array.from({ length: 8 }, () => store.verify('ann', 'wrong')))
  t.ok(rejected.every((ok) => !ok), 'a wrong password is refused for every request that shared its check')
  t.equal(hashChecks, 2, 'the wrong password was checked once for the concurrent requests')
  t.equal(await store.verify('ann', 'wrong'), false, 'and a later attempt is checked again (failures are not cached)')
  t.equal(hashChecks, 3)
})

t.test('unknown users cost what known users cost, alone and at the same instant (issue 12)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('right', 5)}\nbob:${await hashPassword('other', 5)}\n`)
  const checkedHashes: string[] = []
  const counting = (password: string, hash: string): Promise<boolean> => {
    checkedHashes.push(hash)
    return verifyPassword(password, hash)
  }
  const store = new HtpasswdStore(file, 60_000, { onLoad: () => undefined, onError: () => undefined }, counting)
  t.teardown(() => store.close())

  const burst = async (user: string, passwords: string[]): Promise<number> => {
    const before = checkedHashes.length
    const outcomes = await Promise.all(passwords.map((password) => store.verify(user, password)))
    t.ok(outcomes.every((outcome) => outcome === false), `${user}: all refused`)
    return checkedHashes.length - before
  }
  const same = Array.from({ length: 8 }, () => 'guess')
  const distinct = Array.from({ length: 8 }, (_, i) => `guess-${i}`)
  t.equal(await burst('ann', same), 1, 'known user, 8 identical guesses at once: one check')
  t.equal(await burst('mallory', same), 1, 'unknown user, 8 identical guesses at once: one check too')
  t.equal(await burst('ann', distinct), 8, 'known user, 8 different guesses: eight checks')
  t.equal(await burst('mallory', distinct), 8, 'unknown user, 8 different guesses: eight checks too')
  t.equal(await burst('mallory', ['again']), 1, 'an unknown user is never cached')
  t.equal(await burst('mallory', ['again']), 1)
  const decoy = checkedHashes.at(-1) ?? ''
  t.equal(hashKind(decoy), 'bcrypt', 'unknown users are checked against a bcrypt decoy')
  t.match(decoy, /^\$2y\$05\$/, 'at the cost the real users have (5 here), not a fixed 10')
})

t.test('a check is counted by the throttle before it runs: 100 different guesses at once check max_failures + 1 (issue 12)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('right', 5)}\n`)
  let checks = 0
  const counting = (password: string, hash: string): Promise<boolean> => {
    checks++
    return verifyPassword(password, hash)
  }
  const store = new HtpasswdStore(file, 60_000, { onLoad: () => undefined, onError: () => undefined }, counting)
  t.teardown(() => store.close())
  const throttle = createThrottle({ max_failures: 10, ip_max_failures: 50, window: 60_000, lockout: 60_000 })
  const admit = (user: string): (() => CheckAdmission | undefined) => () => throttle.attempt(user, '192.0.2.1')
  for (const user of ['ann', 'nobody']) {
    checks = 0
    const outcomes = await Promise.all(Array.from({ length: 100 }, (_, i) => store.check(user, `guess-${i}`, { admit: admit(user) })))
    t.equal(checks, 11, `${user}: 11 checks for 100 concurrent guesses (was 100)`)
    t.equal(outcomes.filter((outcome) => outcome === 'locked').length, 89, `${user}: the rest refused as locked`)
    t.equal(outcomes.filter((outcome) => outcome === false).length, 11)
  }
})

t.test('a store that cannot take more checks answers busy without counting an attempt', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('right', 5)}\n`)
  let room = false
  const store = new HtpasswdStore(file, 60_000, { onLoad: () => undefined, onError: () => undefined }, verifyPassword, () => room)
  t.teardown(() => store.close())
  let admitted = 0
  const admit = (): CheckAdmission => {
    admitted++
    return { failed: () => undefined, succeeded: () => undefined, cancelled: () => undefined }
  }
  t.equal(await store.check('ann', 'right', { admit }), 'busy')
  t.equal(await store.check('nobody', 'x', { admit }), 'busy', 'unknown users too')
  t.equal(await store.verify('ann', 'right'), false, 'verify() (the admin listener\'s) counts a check that could not run as a refusal')
  t.equal(admitted, 0, 'nothing reserved with the throttle')
  room = true
  t.equal(await store.check('ann', 'right', { admit }), true)
  room = false
  t.equal(await store.check('ann', 'right', { admit }), true, 'a cached credential needs no check, so never busy')
  t.equal(admitted, 1)
})

t.test('the password pool checks bcrypt off the main thread and refuses at once when its queue is full', async (t) => {
  const pool = createPasswordPool({ workers: 1, queue: 2 })
  t.teardown(() => pool.close())
  t.equal(pool.size, 1)
  const hash = await hashPassword('pool-password', 8)
  t.equal(await pool.compare('pool-password', hash), true, 'right password')
  t.equal(await pool.compare('wrong', hash), false, 'wrong password')
  t.equal(await pool.compare('x', '$2y$08$not-a-valid-hash'), false, 'a broken hash is a mismatch, not a crash')

  const running = [pool.compare('pool-password', hash), pool.compare('a', hash), pool.compare('b', hash)]
  t.equal(pool.pending, 3, 'one running, two queued')
  t.equal(pool.hasRoom(), false)
  await t.rejects(pool.compare('c', hash), PoolBusyError, 'the fourth is refused at once')
  // The main thread stays free while the thread pool runs bcrypt.
  let turns = 0
  const ticker = setInterval(() => turns++, 1)
  t.same(await Promise.all(running), [true, false, false], 'queued checks complete in order')
  clearInterval(ticker)
  t.ok(turns > 0, `the event loop kept turning during the checks (${turns} timer turns)`)
  t.equal(pool.hasRoom(), true)
  t.equal(pool.size, 1)
  t.equal(pool.pending, 0)

  const defaults = createPasswordPool({ workers: 0, queue: 0 })
  t.teardown(() => defaults.close())
  t.equal(defaults.size, Math.max(1, Math.min(2, availableParallelism() - 1)), `workers 0: min(2, cores - 1) = ${defaults.size}`)
  await defaults.close()
  await t.rejects(defaults.compare('x', hash), PoolBusyError, 'a closed pool refuses')
})

t.test('a file truncated then rewritten keeps its users in the gap; an empty file is taken only once it stays so (issue 12)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-htpasswd-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  writeFileSync(file, `ann:${await hashPassword('ann-password', 5)}\nbob:${await hashPassword('bob-password', 5)}\n`)
  const loads: number[] = []
  const holds: Array<{ users: number; kept: number }> = []
  const settleMs = 1500
  const store = new HtpasswdStore(
    file,
    60_000,
    { onLoad: (parsed) => loads.push(parsed.users.size), onError: () => undefined, onHold: (parsed, _path, kept) => holds.push({ users: parsed.users.size, kept }) },
    verifyPassword,
    () => true,
    settleMs,
  )
  t.teardown(() => store.close())
  store.watch()
  const waitFor = async (check: () => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms
    while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 25))
    return check()
  }

  // What an editor or `echo >` does: truncate, then write the new content a moment later.
  writeFileSync(file, '')
  t.ok(await waitFor(() => holds.length === 1, 3000), 'the empty file is noticed and held back')
  t.same(holds[0], { users: 0, kept: 2 })
  t.same(store.userNames.sort(), ['ann', 'bob'], 'the users stay during the gap')
  t.equal(await store.verify('bob', 'bob-password'), true, 'and log in (checked, not from a cache)')
  writeFileSync(file, `ann:${await hashPassword('ann-password', 5)}\ncarol:${await hashPassword('carol-password', 5)}\n`)
  t.ok(await waitFor(() => loads.length === 2, 3000), 'the rewritten file is loaded')
  t.same(store.userNames.sort(), ['ann', 'carol'])
  t.equal(await store.verify('bob', 'bob-password'), false, 'the removed user is gone')

  // Half a line (a write caught in the middle): held back too.
  writeFileSync(file, `ann:$2y$05$abc`)
  t.ok(await waitFor(() => holds.length === 2, 3000), 'an unreadable line is held back')
  t.same(store.userNames.sort(), ['ann', 'carol'], 'the users stay')
  // Left that way, it is taken after settleMs: the operator's file wins in the end.
  t.ok(await waitFor(() => loads.length === 3, settleMs + 3000), 'taken once it stayed unchanged')
  t.same(store.userNames, [], 'with what it holds (nothing readable)')
})
