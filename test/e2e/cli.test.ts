// The real CLI (dist/cli.js): check-config exit codes and messages, --help, unknown commands and options.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { CLI, ROOT } from '../helpers/gateway.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-cli-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/**
 * The environment without PORTIER_* variables (the host's settings must not leak in), and without
 * tap's process tracking (NODE_OPTIONS) and the CA bundle (NODE_EXTRA_CA_CERTS), which only slow each start.
 */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('PORTIER_') && !['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'].includes(name) && !name.startsWith('_TAPJS_')) env[name] = value
  }
  return { ...env, ...extra }
}

function cli(args: string[], extraEnv: NodeJS.ProcessEnv = {}) {
  return run(process.execPath, [CLI, ...args], { cwd: dir, env: cleanEnv(extraEnv), timeoutMs: 20_000 })
}

t.test('check-config on a bad file exits 2 and prints every problem on stderr', async (t) => {
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, [
    'server:',
    '  listen: everywhere',
    '  trusted_proxies: [10.0.0.0/33]',
    'limits:',
    '  blob_max_bytes: 12 parsecs',
    'tls:',
    '  min_version: SSLv3',
    'colour: blue',
    '',
  ].join('\n'))
  const r = await cli(['check-config', '--config', bad])
  t.equal(r.code, 2, 'exit code 2 means "the configuration is invalid"')
  t.match(r.stderr, /5 problems/)
  for (const key of ['server.listen', 'server.trusted_proxies[0]', 'limits.blob_max_bytes', 'tls.min_version', 'colour']) {
    t.ok(r.stderr.includes(`${bad}: ${key}: expected`), `stderr names ${key} with its file`)
  }
  t.match(r.stderr, /found "12 parsecs"/)
  t.match(r.stderr, /found an unknown key/)
  t.equal(r.stdout, '', 'nothing on stdout')
})

t.test('check-config on a valid file exits 0', async (t) => {
  const good = join(dir, 'good.yaml')
  writeFileSync(good, 'server:\n  listen: 127.0.0.1:5443\nupstreams:\n  - url: http://127.0.0.1:5000\nlimits:\n  blob_max_bytes: 10GB\n')
  const r = await cli(['check-config', '--config', good])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /valid/)
  t.match(r.stdout, good)
  const equals = await cli(['check-config', `--config=${good}`])
  t.equal(equals.code, 0, '--config=FILE works too')
  const fromEnv = await cli(['check-config'], { PORTIER_CONFIG: good })
  t.equal(fromEnv.code, 0, 'PORTIER_CONFIG names the file')
  t.match(fromEnv.stdout, good)
})

t.test('check-config with no file validates defaults and the environment', async (t) => {
  const ok = await cli(['check-config'])
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /defaults/)
  const bad = await cli(['check-config'], { PORTIER_LIMITS_BLOB_MAX_BYTES: 'lots', PORTIER_NO_SUCH_KEY: '1' })
  t.equal(bad.code, 2)
  t.match(bad.stderr, /environment PORTIER_LIMITS_BLOB_MAX_BYTES: limits\.blob_max_bytes: expected a size/)
  t.match(bad.stderr, /PORTIER_NO_SUCH_KEY/)
})

t.test('check-config on a missing or unparsable file exits 2 with the reason', async (t) => {
  const missing = await cli(['check-config', '--config', join(dir, 'nope.yaml')])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /nope\.yaml.*ENOENT/)
  const broken = join(dir, 'broken.yaml')
  writeFileSync(broken, 'server: [unclosed\n')
  const syntax = await cli(['check-config', '--config', broken])
  t.equal(syntax.code, 2)
  t.match(syntax.stderr, /broken\.yaml.*valid YAML.*syntax error/)
})

t.test('serve with an invalid config exits 2 before listening', async (t) => {
  const bad = join(dir, 'serve-bad.yaml')
  writeFileSync(bad, 'server:\n  listen: nowhere\n')
  const r = await cli(['serve', '--config', bad])
  t.equal(r.code, 2)
  t.match(r.stderr, /server\.listen/)
})

t.test('--help exits 0 and names the commands', async (t) => {
  for (const flag of ['--help', '-h']) {
    const r = await cli([flag])
    t.equal(r.code, 0, flag)
    t.match(r.stdout, /serve/)
    t.match(r.stdout, /check-config/)
    t.match(r.stdout, /PORTIER_/)
  }
  const version = await cli(['--version'])
  t.equal(version.code, 0)
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
})

t.test('unknown commands and options exit non-zero with the help text', async (t) => {
  const command = await cli(['frobnicate'])
  t.not(command.code, 0)
  t.match(command.stderr, /unknown command frobnicate/)
  t.match(command.stderr, /check-config/)
  const option = await cli(['serve', '--frobnicate'])
  t.not(option.code, 0)
  t.match(option.stderr, /unknown option --frobnicate/)
  const missingValue = await cli(['check-config', '--config'])
  t.not(missingValue.code, 0)
  t.match(missingValue.stderr, /--config needs a file/)
  const none = await cli([])
  t.not(none.code, 0, 'no command is a usage error')
  t.match(none.stdout + none.stderr, /serve/)
})

const COMMANDS = ['serve', 'check-config', 'passwd', 'healthcheck', 'token-key', 'token', 'audit', 'times']

t.test('COMMAND --help prints that command\'s usage (not the global help) and exits 0, for every command', async (t) => {
  for (const command of COMMANDS) {
    const long = await cli([command, '--help'])
    t.equal(long.code, 0, `${command} --help exits 0 (${long.stderr})`)
    t.ok(long.stdout.startsWith(`Usage: portier ${command}`), `${command} --help starts with its own usage line`)
    t.notMatch(long.stdout, /an HTTPS gateway for Docker\/OCI registries/, `${command} --help is not the global help`)
    t.match(long.stdout, /-h, --help/, `${command} --help lists its options`)
    t.equal(long.stderr, '')
    if (command === 'serve' || command === 'passwd') {
      const short = await cli([command, '-h'])
      t.equal(short.code, 0)
      t.equal(short.stdout, long.stdout, `${command} -h prints the same`)
      const topic = await cli(['help', command])
      t.equal(topic.code, 0)
      t.equal(topic.stdout, long.stdout, `portier help ${command} prints the same`)
    }
  }
  // Each usage names the options of its command only.
  const passwd = await cli(['passwd', '--help'])
  t.match(passwd.stdout, /-f, --file FILE/)
  t.match(passwd.stdout, /-m, --mode MODE/)
  const tokenKey = await cli(['token-key', '--help'])
  t.match(tokenKey.stdout, /-o, --out DIR/)
  const serve = await cli(['serve', '--help'])
  t.notMatch(serve.stdout, /--out|--mode|--file/)
})

t.test('an unknown option of any command exits 64 with the message and that command\'s usage on stderr', async (t) => {
  for (const command of COMMANDS) {
    const r = await cli([command, '--frobnicate'])
    t.equal(r.code, 64, `${command} --frobnicate exits 64 (EX_USAGE)`)
    t.match(r.stderr, /^portier: unknown option --frobnicate\n/, `${command}: the message comes first`)
    t.match(r.stderr, new RegExp(`Usage: portier ${command}`), `${command}: then its usage`)
    t.equal(r.stdout, '', 'nothing on stdout')
  }
  // Options belong to their command now: serve has no --out, check-config no --mode.
  const out = await cli(['serve', '--out', dir])
  t.equal(out.code, 64)
  t.match(out.stderr, /unknown option --out/)
  const mode = await cli(['check-config', '-m', '0644'])
  t.equal(mode.code, 64)
  t.match(mode.stderr, /unknown option -m/)
  const value = await cli(['token-key', '--out'])
  t.equal(value.code, 64)
  t.match(value.stderr, /--out needs a directory/)
  const extra = await cli(['check-config', 'extra'])
  t.equal(extra.code, 64)
  t.match(extra.stderr, /unexpected argument extra/)
  const topic = await cli(['help', 'frobnicate'])
  t.equal(topic.code, 64)
  t.match(topic.stderr, /unknown command frobnicate/)
})

t.test('options before the command still reach it', async (t) => {
  const good = join(dir, 'before.yaml')
  writeFileSync(good, 'server:\n  listen: 127.0.0.1:5443\n')
  const r = await cli(['--config', good, 'check-config'])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, good)
})

t.test('the example config in the repository is valid', async (t) => {
  const r = await cli(['check-config', '--config', join(ROOT, 'config', 'portier.yaml')])
  t.equal(r.code, 0, r.stderr)
})
