// htpasswd parsing, hash formats (checked against openssl and htpasswd outputs) and the verified-credential cache.
import t from 'tap'
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { apr1, hashKind, hashPassword, verifyPassword } from '../../src/auth/hashes.js'
import { HtpasswdStore, parseHtpasswd } from '../../src/auth/htpasswd.js'
import { parseBasic } from '../../src/auth/basic.js'

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
