// Atomic writes (src/lib/atomic-write.ts): content and mode in place, no temporary file left, the old file kept when a write fails.
import t from 'tap'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { writeFileAtomically, writeFilesAtomically } from '../../src/lib/atomic-write.js'

t.test('writes the content with the mode asked for (0600 by default), creating the directory', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'sub', 'secret.pem')
  writeFileAtomically(path, 'key\n')
  t.equal(readFileSync(path, 'utf8'), 'key\n')
  t.equal(statSync(path).mode & 0o777, 0o600)
  writeFileAtomically(path, 'public\n', 0o644)
  t.equal(readFileSync(path, 'utf8'), 'public\n', 'replaced')
  t.equal(statSync(path).mode & 0o777, 0o644, 'the umask does not narrow the mode')
  t.same(readdirSync(join(dir, 'sub')), ['secret.pem'], 'no temporary file left')
})

t.test('several files: all written, then all renamed', async (t) => {
  const dir = t.testdir()
  writeFilesAtomically([
    { path: join(dir, 'tls.key'), data: 'K', mode: 0o600 },
    { path: join(dir, 'tls.crt'), data: 'C', mode: 0o644 },
  ])
  t.equal(readFileSync(join(dir, 'tls.key'), 'utf8'), 'K')
  t.equal(readFileSync(join(dir, 'tls.crt'), 'utf8'), 'C')
  t.equal(statSync(join(dir, 'tls.crt')).mode & 0o777, 0o644)
  t.same(readdirSync(dir).sort(), ['tls.crt', 'tls.key'])
})

t.test('a failure leaves the old files as they were and no temporary file', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'tls.key'), 'old key')
  // The second target's directory is a file: its temporary file cannot be created.
  writeFileSync(join(dir, 'blocker'), '')
  t.throws(() => writeFilesAtomically([{ path: join(dir, 'tls.key'), data: 'new key' }, { path: join(dir, 'blocker', 'tls.crt'), data: 'C' }]))
  t.equal(readFileSync(join(dir, 'tls.key'), 'utf8'), 'old key', 'the key was not renamed before the certificate was written')
  t.same(readdirSync(dir).sort(), ['blocker', 'tls.key'])
})
