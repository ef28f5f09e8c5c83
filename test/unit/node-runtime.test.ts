// The supported Node.js: one major version everywhere (engines, Dockerfile, scripts/node-runtime.sh, the CLI's
// check), the tests themselves run on it, the scripts provide it on a machine whose node is older, and an older
// node gets a clear error instead of a half-working gateway.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { run } from '../helpers/exec.js'
import { CLI, ROOT } from '../helpers/gateway.js'
import { MIN_NODE_MAJOR, nodeMajor } from '../../src/runtime.js'

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  engines: { node: string }
  devDependencies: Record<string, string>
  scripts: Record<string, string>
}
const runtimeScript = readFileSync(join(ROOT, 'scripts', 'node-runtime.sh'), 'utf8')
const pinned = /^PORTIER_NODE_VERSION=(\d+\.\d+\.\d+)$/m.exec(runtimeScript)?.[1]
const TOOLS = join(ROOT, '.tools')

/** PATH without the project's own Node.js (what a fresh shell on this machine has). */
function machinePath(): string {
  return (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '' && !dir.startsWith(TOOLS)).join(delimiter)
}

/** A node binary on the machine's PATH that is older than the supported one, if there is one. */
async function olderNode(): Promise<{ path: string; version: string } | undefined> {
  for (const dir of machinePath().split(delimiter)) {
    const candidate = join(dir, 'node')
    if (!existsSync(candidate)) continue
    const r = await run(candidate, ['--version'], { timeoutMs: 20_000 })
    const version = r.stdout.trim()
    if (r.code === 0 && nodeMajor(version.replace(/^v/, '')) < MIN_NODE_MAJOR) return { path: candidate, version }
  }
  return undefined
}

const old = await olderNode()
const noOld = old ? false : 'no node older than the supported one on this machine'

t.test('one supported major version: engines, @types/node, Dockerfile, scripts/node-runtime.sh', async (t) => {
  t.equal(MIN_NODE_MAJOR, 24)
  t.equal(pkg.engines.node, `>=${MIN_NODE_MAJOR}`)
  t.match(pkg.devDependencies['@types/node'], new RegExp(`^\\^${MIN_NODE_MAJOR}\\.`), '@types/node describes the same runtime')
  const froms = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').split('\n').filter((line) => line.startsWith('FROM '))
  t.equal(froms.length, 2)
  for (const from of froms) t.match(from, new RegExp(`^FROM node:${MIN_NODE_MAJOR}-`), from)
  t.ok(pinned, 'scripts/node-runtime.sh pins an exact version')
  t.equal(nodeMajor(pinned ?? ''), MIN_NODE_MAJOR, 'the pinned Node.js has the supported major version')
  t.match(runtimeScript, new RegExp(`^PORTIER_NODE_MIN_MAJOR=${MIN_NODE_MAJOR}$`, 'm'))
})

t.test('the tests run on the supported Node.js (the gateway is spawned with this same binary)', async (t) => {
  t.ok(nodeMajor() >= MIN_NODE_MAJOR, `tap runs on ${process.version}`)
})

t.test('npm scripts that start node go through scripts/with-node.sh or a script that sources node-runtime.sh', async (t) => {
  // With the V8 flags the image runs Portier with (deploy-files.test.ts checks which).
  t.match(pkg.scripts.start, /^bash scripts\/with-node\.sh node (--[a-z-]+(=\d+)? )*dist\/cli\.js serve$/)
  t.match(pkg.scripts['test:only'], /^bash scripts\/with-node\.sh tap$/)
  for (const name of ['test.sh', 'quickstart.sh', 'node-deps.sh']) {
    t.match(readFileSync(join(ROOT, 'scripts', name), 'utf8'), /^source scripts\/node-runtime\.sh/m, `scripts/${name}`)
  }
  for (const [name, command] of Object.entries(pkg.scripts)) {
    if (/(^|&& )node /.test(command)) t.fail(`npm script ${name} starts node directly: ${command}`)
  }
})

t.test('an older node gets a clear error from the CLI, not a half-working gateway', { skip: noOld }, async (t) => {
  if (!old) return
  // --version: without the check it would print the version and exit 0 (and start nothing).
  const r = await run(old.path, [CLI, '--version'], { cwd: ROOT, timeoutMs: 30_000 })
  t.equal(r.code, 1)
  t.equal(r.stdout, '')
  t.equal(r.stderr, `portier: Node.js ${MIN_NODE_MAJOR} or newer is required, this is ${old.version}. Run it through npm start or scripts/with-node.sh, which provide Node.js ${MIN_NODE_MAJOR} (see README, "Node.js version").\n`)
})

t.test('scripts/with-node.sh runs commands on the pinned Node.js when the machine has an older one', { skip: noOld }, async (t) => {
  if (!old) return
  const env = { ...process.env, PATH: machinePath() }
  const before = await run('bash', ['-c', 'node -p process.version'], { cwd: ROOT, env, timeoutMs: 20_000 })
  t.equal(before.stdout.trim(), old.version, 'without the script: the machine\'s older node')
  // Installs into .tools/ when it is not there yet (npm registry), so the time-out is generous.
  const r = await run('bash', [join(ROOT, 'scripts', 'with-node.sh'), 'node', '-p', 'process.version + " " + process.execPath'], { cwd: ROOT, env, timeoutMs: 300_000 })
  t.equal(r.code, 0, r.stderr)
  const [version, execPath] = r.stdout.trim().split(' ')
  t.equal(version, `v${pinned}`)
  t.equal(dirname(dirname(dirname(execPath ?? ''))), join(TOOLS, `node${MIN_NODE_MAJOR}`, 'node_modules'), 'from .tools/')
  // npm itself (a `#!/usr/bin/env node` script) and what it runs get the same node, also below an npm that ran
  // on the older node (`npm test` typed in a shell): that one exports its global prefix, whose bin/ npm and npx
  // would put first on PATH again, and its node's path.
  const underOldNpm = { ...env, npm_config_prefix: dirname(dirname(old.path)), NODE: old.path, npm_node_execpath: old.path }
  for (const command of [['npm', 'exec', '--no', '--', 'node', '-p', 'process.version'], ['npx', '--no-install', 'node', '-p', 'process.version']]) {
    const r = await run('bash', [join(ROOT, 'scripts', 'with-node.sh'), ...command], { cwd: ROOT, env: underOldNpm, timeoutMs: 60_000 })
    t.equal(r.stdout.trim(), `v${pinned}`, `${command.slice(0, 2).join(' ')} runs on the pinned node`)
  }
  // The same for scripts/test.sh's own path: it sources node-runtime.sh, then runs tap through npx.
  const tap = await run('bash', ['-c', 'source scripts/node-runtime.sh && npx --no-install tap --version >/dev/null && npx --no-install node -p process.execPath'], { cwd: ROOT, env: underOldNpm, timeoutMs: 60_000 })
  t.equal(dirname(dirname(dirname(tap.stdout.trim()))), join(TOOLS, `node${MIN_NODE_MAJOR}`, 'node_modules'), 'npx after node-runtime.sh: the pinned node')
})
