// `portier passwd` writes htpasswd files that Apache's htpasswd verifies, reads the password from stdin, never argv.
import t from 'tap'
import { mkdtemp, rm, readFile, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { CLI } from '../helpers/gateway.js'

t.test('passwd add, list and remove; the file is bcrypt cost 10 and htpasswd -v accepts it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'portier-passwd-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'auth', 'htpasswd')

  const add = await run(process.execPath, [CLI, 'passwd', 'add', '--file', file, 'alice'], { input: 'alice-secret-1\n' })
  t.equal(add.code, 0, `add exits 0 (${add.stderr})`)
  const added = await run(process.execPath, [CLI, 'passwd', 'add', '--file', file, 'bob'], { input: 'bob-secret-22\n' })
  t.equal(added.code, 0, 'second user added')
  const text = await readFile(file, 'utf8')
  t.match(text, /^alice:\$2y\$10\$/m, 'alice is bcrypt $2y$ cost 10')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'file mode 0600')

  const verify = await run('htpasswd', ['-vb', file, 'alice', 'alice-secret-1'])
  t.equal(verify.code, 0, `Apache htpasswd verifies alice (${verify.stderr.trim()})`)
  const wrong = await run('htpasswd', ['-vb', file, 'alice', 'not-it'])
  t.not(wrong.code, 0, 'and rejects a wrong password')

  const list = await run(process.execPath, [CLI, 'passwd', 'list', '--file', file])
  t.equal(list.stdout, 'alice\nbob\n', 'list prints the users')
  const short = await run(process.execPath, [CLI, 'passwd', 'add', '--file', file, 'carol'], { input: 'short\n' })
  t.not(short.code, 0, 'a password under 8 characters is refused')
  const remove = await run(process.execPath, [CLI, 'passwd', 'remove', '--file', file, 'alice'])
  t.equal(remove.code, 0, 'remove exits 0')
  t.notMatch(await readFile(file, 'utf8'), /^alice:/m, 'alice is gone')
  const missing = await run(process.execPath, [CLI, 'passwd', 'remove', '--file', file, 'alice'])
  t.not(missing.code, 0, 'removing an unknown user fails')
})

t.test('passwd --mode sets the file mode (a gateway running as another user must read it); later changes keep it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'portier-passwd-mode-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'htpasswd')
  const add = await run(process.execPath, [CLI, 'passwd', 'add', '--mode', '0644', '--file', file, 'alice'], { input: 'alice-secret-1\n' })
  t.equal(add.code, 0, add.stderr)
  t.match(add.stdout, `created ${file} (mode 0644)`)
  t.equal((await stat(file)).mode & 0o777, 0o644, '--mode 0644')
  const later = await run(process.execPath, [CLI, 'passwd', 'add', '--file', file, 'bob'], { input: 'bob-secret-22\n' })
  t.equal(later.code, 0, later.stderr)
  t.equal((await stat(file)).mode & 0o777, 0o644, 'adding a user without --mode keeps 0644 (it used to reset the file to 0600)')
  const removed = await run(process.execPath, [CLI, 'passwd', 'remove', '--file', file, 'bob'])
  t.equal(removed.code, 0)
  t.equal((await stat(file)).mode & 0o777, 0o644, 'removing one keeps it too')
  const narrowed = await run(process.execPath, [CLI, 'passwd', 'add', '--mode=600', '--file', file, 'alice'], { input: 'alice-secret-2\n' })
  t.equal(narrowed.code, 0, narrowed.stderr)
  t.equal((await stat(file)).mode & 0o777, 0o600, '--mode=600 narrows it again')
  const bad = await run(process.execPath, [CLI, 'passwd', 'add', '--mode', 'rw-r--r--', '--file', file, 'carol'], { input: 'carol-secret-3\n' })
  t.not(bad.code, 0, 'a mode that is not octal is refused')
  t.match(bad.stderr, /--mode takes octal permissions/)
  t.notMatch(await readFile(file, 'utf8'), /^carol:/m, 'and nothing was written')
})
