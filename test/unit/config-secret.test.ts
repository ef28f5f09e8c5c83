// loadSecret: a key from the config, or from a file generated once and shared by every instance that shares the file.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { loadSecret, removeStaleDrafts } from '../../src/config/secret.js'
import { ROOT } from '../helpers/gateway.js'

t.test('the configured key wins; else the file is created once (0600, 64 hex characters) and read after', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'nested', 'secret')
  t.same(loadSecret('x'.repeat(40), file, 'routing.secret_file'), { secret: Buffer.from('x'.repeat(40)), created: false })
  const first = loadSecret('', file, 'routing.secret_file')
  t.equal(first.created, true)
  t.match(first.secret.toString(), /^[0-9a-f]{64}$/)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.same(readdirSync(join(dir, 'nested')), ['secret'], 'no temporary file left beside it')
  const again = loadSecret('', file, 'routing.secret_file')
  t.same(again, { secret: first.secret, created: false })
})

t.test('a file with a short key is an error naming the setting, after waiting 2 s for a key being written', async (t) => {
  const file = join(t.testdir(), 'secret')
  writeFileSync(file, 'short\n')
  const started = Date.now()
  t.throws(() => loadSecret('', file, 'ui.session_secret_file'), /^ui\.session_secret_file: .* holds 5 characters; expected a random key of at least 32/)
  t.ok(Date.now() - started >= 1_900, 'after the wait')
})

// Another instance (an older Portier, or any on a volume without hard links) created the file and writes its key a
// moment later: this one waits for the key instead of refusing to start.
t.test('a key file being written when first read: its key, once written', async (t) => {
  const file = join(t.testdir(), 'secret')
  writeFileSync(file, '')
  const key = 'c'.repeat(64)
  const writer = spawn(process.execPath, ['-e', `setTimeout(() => require('node:fs').writeFileSync(${JSON.stringify(file)}, '${key}\\n'), 400)`], { stdio: 'ignore' })
  const exited = new Promise((resolve) => writer.once('exit', resolve))
  await new Promise((resolve) => writer.once('spawn', resolve))
  const loaded = loadSecret('', file, 'routing.secret_file')
  await exited
  t.same(loaded, { secret: Buffer.from(key), created: false })
})

// Instances that share the file's volume start at once: each must get the same complete key, never a file another has
// created and not yet written (which read as "holds 0 characters").
t.test('processes creating the same files at once all read one complete key', async (t) => {
  const dir = t.testdir()
  const FILES = 300
  const PROCESSES = 6
  const script = join(dir, 'load.mjs')
  const secretModule = pathToFileURL(join(ROOT, 'src', 'config', 'secret.ts')).href
  writeFileSync(script, [
    `const { loadSecret } = await import(${JSON.stringify(secretModule)})`,
    `const [dir, count, startAt] = process.argv.slice(2)`,
    `while (Date.now() < Number(startAt)) {}`,
    `const keys = []`,
    `for (let i = 0; i < Number(count); i++) {`,
    `  try { keys.push(loadSecret('', dir + '/k' + i + '/secret', 'routing.secret_file').secret.toString()) }`,
    `  catch (error) { keys.push('error: ' + error.message) }`,
    `}`,
    `process.stdout.write(JSON.stringify(keys))`,
  ].join('\n'))
  mkdirSync(join(dir, 'keys'))
  const startAt = Date.now() + 1500
  const runs = await Promise.all(Array.from({ length: PROCESSES }, () => new Promise<string[]>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=tsx', script, join(dir, 'keys'), String(FILES), String(startAt)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => { out += chunk })
    child.on('error', reject)
    child.on('exit', (code) => code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`exit ${code}`)))
  })))
  const errors = runs.flat().filter((key) => key.startsWith('error: '))
  t.same(errors.slice(0, 3), [], `no process failed to read a key (${errors.length} failures)`)
  let differing = 0
  for (let i = 0; i < FILES; i++) {
    const onDisk = readFileSync(join(dir, 'keys', `k${i}`, 'secret'), 'utf8').trim()
    if (runs.some((keys) => keys[i] !== onDisk)) differing++
  }
  t.equal(differing, 0, `every process read the key on disk, for all ${FILES} files`)
  const leftovers = readdirSync(join(dir, 'keys')).flatMap((name) => readdirSync(join(dir, 'keys', name))).filter((name) => name !== 'secret')
  t.same(leftovers, [], 'no temporary files left')
})

t.test('a file system without hard links: the file is created exclusively, and one being written is waited for', async (t) => {
  const fs = await import('node:fs')
  const noLinks = (): never => {
    throw Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' })
  }
  const { loadSecret: load } = await t.mockImport<typeof import('../../src/config/secret.js')>('../../src/config/secret.js', { 'node:fs': { ...fs, linkSync: noLinks } })
  const dir = t.testdir()
  const created = load('', join(dir, 'secret'), 'routing.secret_file')
  t.equal(created.created, true)
  t.equal(readFileSync(join(dir, 'secret'), 'utf8').trim(), created.secret.toString())
  t.same(readdirSync(dir), ['secret'], 'no temporary file left beside it')
  t.same(load('', join(dir, 'secret'), 'routing.secret_file'), { secret: created.secret, created: false })
  // Another instance created the file just after our first look and never wrote its key: an error after a short wait.
  const empty = join(dir, 'empty')
  writeFileSync(empty, '')
  let reads = 0
  const notYet = (path: string, encoding: 'utf8'): string => {
    if (path === empty && reads++ === 0) throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' })
    return fs.readFileSync(path, encoding)
  }
  const { loadSecret: loadLate } = await t.mockImport<typeof import('../../src/config/secret.js')>('../../src/config/secret.js', { 'node:fs': { ...fs, linkSync: noLinks, readFileSync: notYet } })
  const started = Date.now()
  t.throws(() => loadLate('', empty, 'routing.secret_file'), /^routing\.secret_file: .* holds 0 characters/)
  t.ok(Date.now() - started >= 1_900, 'after waiting about 2 s for the key')
  t.ok(reads > 10, `read again while waiting (${reads} reads)`)
})

t.test('drafts left by a process that died between writing and linking are removed at the next start, and nothing else', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'secret')
  const old = (Date.now() - 120_000) / 1000
  const names = {
    stale: 'secret.4242.0123456789ab.tmp',
    fresh: 'secret.4243.ba9876543210.tmp',
    otherFile: 'session.4242.0123456789ab.tmp',
    notADraft: 'secret.backup',
    badHex: 'secret.4242.0123456789AB.tmp',
    noPid: 'secret..0123456789ab.tmp',
  }
  for (const [kind, name] of Object.entries(names)) {
    writeFileSync(join(dir, name), 'k'.repeat(65))
    if (kind !== 'fresh') utimesSync(join(dir, name), old, old)
  }
  const created = loadSecret('', file, 'routing.secret_file')
  t.equal(created.created, true)
  const left = readdirSync(dir).sort()
  t.notOk(left.includes(names.stale), 'the stale draft is gone')
  t.same(left, ['secret', ...Object.entries(names).filter(([kind]) => kind !== 'stale').map(([, name]) => name)].sort(), 'a fresh draft (another instance writing), other files and names that are not drafts stay')
  // Also when the key file exists already (another instance linked its own): swept at every start.
  writeFileSync(join(dir, names.stale), 'k'.repeat(65))
  utimesSync(join(dir, names.stale), old, old)
  t.same(loadSecret('', file, 'routing.secret_file'), { secret: created.secret, created: false })
  t.notOk(readdirSync(dir).includes(names.stale), 'swept when the key file was there already')
  t.same(removeStaleDrafts(join(dir, 'missing-dir', 'secret')), [], 'a directory that does not exist: nothing, no error')
  t.same(removeStaleDrafts(file, Date.now() + 120_000), [join(dir, names.fresh)], 'the fresh one once it is a minute old')
})

t.test('a draft swept before its link (another instance\'s clock ahead of the volume\'s) is written again', async (t) => {
  const fs = await import('node:fs')
  let links = 0
  const sweptFirst = (existing: string, target: string): void => {
    if (links++ === 0) {
      fs.unlinkSync(existing)
      throw Object.assign(new Error(`ENOENT: no such file or directory, link '${existing}' -> '${target}'`), { code: 'ENOENT' })
    }
    fs.linkSync(existing, target)
  }
  const { loadSecret: load } = await t.mockImport<typeof import('../../src/config/secret.js')>('../../src/config/secret.js', { 'node:fs': { ...fs, linkSync: sweptFirst } })
  const dir = t.testdir()
  const created = load('', join(dir, 'secret'), 'routing.secret_file')
  t.equal(created.created, true, 'created on the second draft')
  t.equal(links, 2)
  t.equal(readFileSync(join(dir, 'secret'), 'utf8').trim(), created.secret.toString())
  t.same(readdirSync(dir), ['secret'], 'no draft left')
  let always = 0
  const { loadSecret: never } = await t.mockImport<typeof import('../../src/config/secret.js')>('../../src/config/secret.js', {
    'node:fs': { ...fs, linkSync: (existing: string) => { always++; throw Object.assign(new Error(`ENOENT: no such file or directory, link '${existing}'`), { code: 'ENOENT' }) } },
  })
  t.throws(() => never('', join(dir, 'other'), 'routing.secret_file'), { code: 'ENOENT' }, 'a link that never works is an error')
  t.equal(always, 3, 'after three drafts')
  t.same(readdirSync(dir), ['secret'], 'and leaves no draft')
})
