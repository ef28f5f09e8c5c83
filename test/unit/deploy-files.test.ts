// Dockerfile, .dockerignore, compose.yaml and config/compose.portier.yaml agree with each other and with the CLI (ports, paths, user, health check).
import t from 'tap'
import { readFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs'
import { createServer } from 'node:https'
import { createServer as createHttpServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import yaml from 'js-yaml'
import { run, runOk } from '../helpers/exec.js'
import { CLI, ROOT } from '../helpers/gateway.js'
import { loadConfig } from '../../src/app/config.js'

interface Instruction {
  keyword: string
  args: string
  line: number
}

interface Stage {
  from: string
  name: string | undefined
  instructions: Instruction[]
}

/** Line-based Dockerfile reader: comments dropped, backslash continuations joined, split into stages at FROM. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = []
  let pending = ''
  let startLine = 0
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim()
    if (pending === '' && (line === '' || line.startsWith('#'))) return
    if (pending !== '' && line.startsWith('#')) return
    if (pending === '') startLine = index + 1
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `
      return
    }
    const full = `${pending}${line}`.trim()
    pending = ''
    const match = /^(\w+)\s+(.*)$/s.exec(full)
    if (!match) throw new Error(`Dockerfile line ${startLine}: cannot parse ${JSON.stringify(full)}`)
    const keyword = (match[1] as string).toUpperCase()
    const args = match[2] as string
    if (keyword === 'FROM') {
      const from = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)
      if (!from) throw new Error(`Dockerfile line ${startLine}: bad FROM`)
      stages.push({ from: from[1] as string, name: from[2], instructions: [] })
      return
    }
    const stage = stages[stages.length - 1]
    if (!stage) throw new Error(`Dockerfile line ${startLine}: ${keyword} before FROM`)
    stage.instructions.push({ keyword, args, line: startLine })
  })
  return stages
}

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword)
}

function last(stage: Stage, keyword: string): Instruction | undefined {
  return all(stage, keyword).pop()
}

/** The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD. */
function execForm(args: string): string[] {
  const parsed = JSON.parse(args) as unknown
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === 'string')) throw new Error(`not an exec-form array: ${args}`)
  return parsed
}

type Tree = Record<string, unknown>

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const compose = yaml.load(readFileSync(join(ROOT, 'compose.yaml'), 'utf8')) as { services: Record<string, Tree>; volumes: Record<string, unknown> }
const composeConfigFile = join(ROOT, 'config', 'compose.portier.yaml')
const composeConfig = yaml.load(readFileSync(composeConfigFile, 'utf8')) as { server: { listen: string }; admin?: { listen?: string }; upstreams?: Array<{ url: string }> }

const build = dockerfile[0] as Stage
const runtime = dockerfile[dockerfile.length - 1] as Stage
const listenPort = Number(/:(\d+)$/.exec(composeConfig.server.listen)?.[1])
const adminPort = Number(/:(\d+)$/.exec(composeConfig.admin?.listen ?? '')?.[1])
/** The V8 flags the image runs Portier with; the quick start, npm start, the tests and the benchmarks use the same. */
const NODE_FLAGS = ['--max-semi-space-size=1', '--liftoff-only', '--no-concurrent-recompilation']
const entrypoint = execForm(last(runtime, 'ENTRYPOINT')?.args ?? '[]')
const cmd = execForm(last(runtime, 'CMD')?.args ?? '[]')
const configPathInImage = cmd[cmd.indexOf('--config') + 1] as string

/** "host:container[/proto]" or the long syntax → the container port. */
function containerPort(mapping: unknown): number {
  if (typeof mapping === 'object' && mapping !== null) return Number((mapping as { target: unknown }).target)
  const text = String(mapping).replace(/\/(tcp|udp)$/, '')
  return Number(text.split(':').pop())
}

/** "source:target[:mode]" or the long syntax → { source, target }. */
function volume(entry: unknown): { source: string; target: string; readOnly: boolean } {
  if (typeof entry === 'object' && entry !== null) {
    const long = entry as { source: string; target: string; read_only?: boolean }
    return { source: long.source, target: long.target, readOnly: long.read_only === true }
  }
  const [source, target, mode] = String(entry).split(':') as [string, string, string | undefined]
  return { source, target, readOnly: mode === 'ro' }
}

t.test('Dockerfile: two stages on node:24-bookworm-slim; the build stage builds and prunes', async (t) => {
  t.equal(dockerfile.length, 2, 'build and runtime stages')
  t.equal(build.from, 'node:24-bookworm-slim')
  t.equal(build.name, 'build')
  t.equal(runtime.from, 'node:24-bookworm-slim')
  const runs = all(build, 'RUN').map((i) => i.args).join('\n')
  t.match(runs, /npm ci\b/, 'npm ci (the lock file decides)')
  t.match(runs, /npm run build/)
  t.match(runs, /npm prune --omit=dev/, 'dev dependencies are not shipped')
  const copies = all(build, 'COPY').map((i) => i.args)
  t.ok(copies.some((c) => /package-lock\.json/.test(c)), 'the lock file is copied for npm ci')
  const ciAt = all(build, 'RUN').find((i) => /npm ci/.test(i.args))?.line ?? 0
  const srcAt = all(build, 'COPY').find((i) => /\bsrc\b/.test(i.args))?.line ?? 0
  t.ok(ciAt > 0 && srcAt > ciAt, 'dependencies install before the source is copied (layer cache)')
})

t.test('Dockerfile: the runtime stage runs as a non-root user with a health check', async (t) => {
  const user = last(runtime, 'USER')?.args.trim()
  t.equal(user, 'portier', 'USER portier')
  t.notOk(user === 'root' || user?.startsWith('0'), 'not root')
  t.match(all(runtime, 'RUN').map((i) => i.args).join('\n'), /useradd[^\n]*\bportier\b/, 'the user is created')
  t.equal(last(runtime, 'WORKDIR')?.args.trim(), '/app')
  const copies = all(runtime, 'COPY').map((i) => i.args)
  for (const item of ['dist', 'node_modules', 'package.json']) {
    t.ok(copies.some((c) => c.startsWith('--from=build') && c.includes(`/${item}`)), `${item} comes from the build stage`)
  }
  t.ok(copies.some((c) => /^config\s/.test(c)), 'config/ is copied')
  t.same(entrypoint, ['node', ...NODE_FLAGS, 'dist/cli.js'])
  t.same(cmd, ['serve', '--config', '/etc/portier/portier.yaml'])
  const healthcheck = last(runtime, 'HEALTHCHECK')
  t.ok(healthcheck, 'HEALTHCHECK present')
  t.match(healthcheck?.args, /\bCMD\s+\[/, 'exec form')

  const expose = all(runtime, 'EXPOSE').flatMap((i) => i.args.trim().split(/\s+/).map((port) => Number(port.replace(/\/tcp$/, ''))))
  t.same(expose, [listenPort, adminPort], `EXPOSE equals the ports of config/compose.portier.yaml server.listen (${listenPort}) and admin.listen (${adminPort})`)
  t.match(composeConfig.admin?.listen, /^0\.0\.0\.0:/, 'the admin listener is reachable from the compose network')

  // The generated self-signed certificate lands in WORKDIR + tls.self_signed.dir, which must be writable by the user.
  const runs = all(runtime, 'RUN').map((i) => i.args).join('\n')
  t.match(runs, /chown[^\n]*portier[^\n]*\/app\/certs/, '/app/certs belongs to portier (a fresh named volume copies this ownership)')
})

t.test('compose.yaml: registry service', async (t) => {
  const registry = compose.services.registry as Tree
  t.ok(registry, 'a service called registry')
  t.equal(registry.image, 'registry:2.8.3', 'the last registry 2 release, not the floating registry:2')
  t.equal(registry.ports, undefined, 'no published ports: only reachable through Portier')
  const volumes = (registry.volumes as unknown[]).map(volume)
  t.ok(volumes.some((v) => v.source === 'registry-data' && v.target === '/var/lib/registry'), 'registry-data:/var/lib/registry')
  t.ok('registry-data' in compose.volumes, 'the named volume is declared')
  const environment = registry.environment as Record<string, unknown> | string[]
  const env: Record<string, unknown> = Array.isArray(environment) ? Object.fromEntries(environment.map((e) => e.split('=') as [string, string])) : environment
  const deleteEnabled = env.REGISTRY_STORAGE_DELETE_ENABLED
  t.ok(deleteEnabled === 'true' || deleteEnabled === true, `REGISTRY_STORAGE_DELETE_ENABLED is true (${JSON.stringify(deleteEnabled)})`)
})

/** The config file each registry major version reads by default (registry:3 moved it). */
const registryConfigPath: Record<string, string> = { '2': '/etc/docker/registry/config.yml', '3': '/etc/distribution/config.yml' }

t.test('every registry image in the compose files and the README is a pinned release, run with the config path that release reads', async (t) => {
  let services = 0
  for (const file of ['compose.yaml', 'compose.multi.yaml', 'compose.acme.yaml']) {
    const tree = yaml.load(readFileSync(join(ROOT, file), 'utf8')) as { services?: Record<string, Tree> }
    for (const [name, service] of Object.entries(tree.services ?? {})) {
      if (typeof service.image !== 'string' || !/^registry(:|$)/.test(service.image)) continue
      services++
      const pinned = /^registry:(\d+)\.\d+\.\d+$/.exec(service.image)
      t.ok(pinned, `${file} ${name}: ${service.image} names an exact release (no floating registry:2 or :latest)`)
      const expected = registryConfigPath[pinned?.[1] ?? ''] as string
      t.ok(expected, `${file} ${name}: a registry major version whose config path is known`)
      t.same(service.command, [expected], `${file} ${name}: runs with ${expected}, the path registry ${pinned?.[1]} reads`)
      // A config file mounted anywhere else would be ignored by the registry.
      for (const mount of ((service.volumes as unknown[] | undefined) ?? []).map(volume)) {
        if (/config\.ya?ml$/.test(mount.target)) t.equal(mount.target, expected, `${file} ${name}: its config is mounted where the registry reads it`)
      }
    }
  }
  t.equal(services, 3, 'registry, registry-b and registry-c')
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const images = [...readme.matchAll(/^\s*image:\s*(registry\S*)/gm)].map((match) => match[1] as string)
  t.ok(images.length > 0, 'the README shows registry services')
  for (const image of images) t.match(image, /^registry:\d+\.\d+\.\d+$/, `README example ${image} is pinned`)
})

t.test('compose.yaml: portier service matches the image and its config', async (t) => {
  const portier = compose.services.portier as Tree
  t.ok(portier, 'a service called portier')
  const build = portier.build
  t.equal(typeof build === 'object' && build !== null ? (build as { context: string }).context : build, '.', 'built from this repository')
  t.equal(portier.restart, 'unless-stopped')
  const dependsOn = portier.depends_on
  t.ok(Array.isArray(dependsOn) ? dependsOn.includes('registry') : typeof dependsOn === 'object' && dependsOn !== null && 'registry' in dependsOn, 'depends on registry')

  const ports = portier.ports as unknown[]
  t.equal(ports.length, 1)
  t.equal(containerPort(ports[0]), listenPort, `the container side of the port mapping is the listen port (${listenPort})`)
  t.equal(Number(String(ports[0]).split(':')[0]), 443, 'published on 443')

  const volumes = (portier.volumes as unknown[]).map(volume)
  const configMount = volumes.find((v) => v.target === configPathInImage)
  t.ok(configMount, `a volume is mounted at the CMD --config path ${configPathInImage}`)
  t.equal(configMount?.source, './config/compose.portier.yaml')
  t.ok(configMount?.readOnly, 'read-only')
  const certs = volumes.find((v) => v.source === 'portier-certs')
  t.equal(certs?.target, '/app/certs')
  t.ok('portier-certs' in compose.volumes, 'the named volume is declared')
  const selfSignedDir = posix.join('/app', 'certs/self-signed')
  t.ok(selfSignedDir.startsWith(`${certs?.target}/`), 'the default self-signed directory (relative to WORKDIR) is inside the certs volume')
  t.ok(volumes.some((v) => v.source === './auth' && v.target === '/etc/portier/auth' && v.readOnly), './auth:/etc/portier/auth:ro')
  // The web UI's session key (and the routing secret) are generated into data/: without a volume every
  // re-create would sign everyone out.
  const data = volumes.find((v) => v.source === 'portier-data')
  t.equal(data?.target, '/app/data', 'portier-data:/app/data')
  t.ok('portier-data' in compose.volumes, 'the named volume is declared')
  const { config } = loadConfig({ file: composeConfigFile, env: {} })
  for (const file of [config.ui.session_secret_file, config.routing.secret_file]) {
    t.ok(posix.join('/app', file).startsWith('/app/data/'), `${file} (relative to WORKDIR) lies in the data volume`)
  }
})

t.test('the upstream Portier uses in compose is the registry service on port 5000', async (t) => {
  const portier = compose.services.portier as Tree
  const environment = (portier.environment ?? {}) as Record<string, unknown>
  const fromEnv = environment.PORTIER_UPSTREAMS
  const upstreams = fromEnv !== undefined ? (yaml.load(typeof fromEnv === 'string' ? fromEnv : JSON.stringify(fromEnv)) as Array<{ url: string }>) : composeConfig.upstreams
  t.ok(upstreams && upstreams.length > 0, 'upstreams are configured (otherwise Portier would try to run its own registry)')
  for (const upstream of upstreams ?? []) {
    const url = new URL(upstream.url)
    t.equal(url.protocol, 'http:')
    t.equal(url.hostname, 'registry', 'the host is the registry service name')
    t.ok(url.hostname in compose.services, 'which exists in compose.yaml')
    t.equal(url.port, '5000', 'registry:2 listens on 5000')
  }
})

t.test('the compose auth setup works with a read-only ./auth mount', async (t) => {
  const portier = compose.services.portier as Tree
  const volumes = (portier.volumes as unknown[]).map(volume)
  const { config } = loadConfig({ file: composeConfigFile, env: {} })
  if (config.auth.mode === 'none') {
    t.pass('auth is off in the compose config')
    return
  }
  const file = config.auth.htpasswd.path
  t.ok(posix.isAbsolute(file), `the htpasswd path is absolute (${file})`)
  const mount = volumes.find((v) => file.startsWith(`${v.target}/`))
  t.ok(mount, 'the htpasswd file lies inside a mounted volume')
  t.equal(mount?.source, './auth', 'the ./auth directory from the host')
  if (mount?.readOnly) t.equal(config.auth.htpasswd.generate_admin, false, 'a read-only mount: Portier must not try to create the file')
})

t.test('the image without a mounted config: the CMD --config file exists in the image and is the documented default', async (t) => {
  const copies = all(runtime, 'COPY').map((i) => i.args.split(/\s+/))
  const target = copies.find((parts) => parts[parts.length - 1] === configPathInImage)
  t.ok(target, `a COPY puts a file at ${configPathInImage}`)
  t.equal(target?.[0], 'config/portier.yaml')
  const runs = all(runtime, 'RUN').map((i) => i.args).join('\n')
  const { config } = loadConfig({ file: join(ROOT, 'config', 'portier.yaml'), env: {} })
  // Relative paths resolve against WORKDIR /app: each generated file's directory must be writable.
  for (const dir of [config.tls.self_signed.dir, config.auth.htpasswd.path, config.embedded_registry.data_dir]) {
    const top = posix.join('/app', dir.split('/')[0] as string)
    t.match(runs, new RegExp(`chown[^\\n]*portier[^\\n]*${top.replace(/\//g, '\\/')}(\\s|$)`), `${top} (for ${dir}) belongs to portier`)
  }
})

t.test('config/compose.portier.yaml passes check-config (with the compose environment applied)', async (t) => {
  const portier = compose.services.portier as Tree
  const environment = Object.fromEntries(Object.entries((portier.environment ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)]))
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('PORTIER_') && name !== 'NODE_OPTIONS' && name !== 'NODE_EXTRA_CA_CERTS') env[name] = value
  }
  // check-config loads the files serve loads: the htpasswd file step 1 of compose.yaml puts into ./auth.
  const dir = mkdtempSync(join(tmpdir(), 'portier-compose-auth-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const htpasswd = join(dir, 'htpasswd')
  const missing = await run(process.execPath, [CLI, 'check-config', '--config', composeConfigFile], { env: { ...env, ...environment, PORTIER_AUTH_HTPASSWD_PATH: htpasswd }, cwd: ROOT })
  t.equal(missing.code, 2, 'without the htpasswd file step 1 makes, the config is not valid (serve would fail)')
  t.match(missing.stderr, 'auth.htpasswd.path')
  const step1 = /passwd add (--mode \S+ )?--file \S+ admin/.exec(readFileSync(join(ROOT, 'compose.yaml'), 'utf8'))
  t.equal(step1?.[1]?.trim(), '--mode 0644', 'step 1 writes the file readable by the container user')
  await runOk(process.execPath, [CLI, 'passwd', 'add', '--mode', '0644', '--file', htpasswd, 'admin'], { input: 'a-long-password\n', env })
  const r = await run(process.execPath, [CLI, 'check-config', '--config', composeConfigFile], { env: { ...env, ...environment, PORTIER_AUTH_HTPASSWD_PATH: htpasswd }, cwd: ROOT })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /valid/)
  t.equal(composeConfig.server.listen, '0.0.0.0:5443', 'listens on all interfaces inside the container')
})

t.test('.dockerignore keeps the build context small without dropping what the build needs', async (t) => {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  for (const ignored of ['node_modules', 'dist', '.git']) t.ok(patterns.includes(ignored), `${ignored} is ignored`)
  for (const needed of ['src', 'config', 'package.json', 'package-lock.json', 'tsconfig.json']) {
    t.notOk(patterns.some((p) => p === needed || p === `${needed}/` || p === `/${needed}`), `${needed} is not ignored`)
    t.ok(existsSync(join(ROOT, needed)), `${needed} exists`)
  }
})

t.test('the HEALTHCHECK runs `portier healthcheck` on the CMD config: /healthz on the admin listener, else /v2/ on server.listen', async (t) => {
  const command = execForm(/\bCMD\s+(\[.*\])\s*$/s.exec(last(runtime, 'HEALTHCHECK')?.args ?? '')?.[1] ?? '[]')
  t.same(command, [...entrypoint, 'healthcheck', '--config', configPathInImage], 'the entrypoint with the healthcheck command and the CMD config')
  t.notMatch(last(runtime, 'HEALTHCHECK')?.args, /5443|9113/, 'no port hard-coded: the config decides')

  const dir = mkdtempSync(join(tmpdir(), 'portier-healthcheck-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=localhost',
  ])
  let status = 200
  const seen: string[] = []
  const answer = (url: string | undefined, res: import('node:http').ServerResponse): void => {
    seen.push(url ?? '')
    res.writeHead(status, { 'content-type': 'application/json' })
    res.end('{}')
  }
  const main = createServer({ cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) }, (req, res) => answer(`main ${req.url}`, res))
  const admin = createHttpServer((req, res) => answer(`admin ${req.url}`, res))
  await new Promise<void>((resolve) => main.listen(0, '127.0.0.1', resolve))
  await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => main.close(() => resolve())))
  t.teardown(() => new Promise<void>((resolve) => admin.close(() => resolve())))
  const mainPort = (main.address() as { port: number }).port
  const adminPort = (admin.address() as { port: number }).port
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH }
  // The compose config with its ports moved to the stand-ins; the image's CMD config has admin.listen 127.0.0.1:9113.
  const probe = async (overrides: NodeJS.ProcessEnv): Promise<number | null> => {
    const r = await run(process.execPath, [CLI, 'healthcheck', '--config', composeConfigFile], { timeoutMs: 20_000, env: { ...env, ...overrides } })
    return r.code
  }
  const withAdmin = { PORTIER_SERVER_LISTEN: `0.0.0.0:${mainPort}`, PORTIER_ADMIN_LISTEN: `0.0.0.0:${adminPort}` }
  for (const [code, healthy] of [[200, true], [503, false]] as const) {
    status = code
    seen.length = 0
    t.equal(await probe(withAdmin), healthy ? 0 : 1, `admin /healthz ${code} → ${healthy ? 'healthy' : 'unhealthy'}`)
    t.same(seen, ['admin /healthz'], 'asked the admin listener, not the registry port')
  }
  const withoutAdmin = { PORTIER_SERVER_LISTEN: `0.0.0.0:${mainPort}`, PORTIER_ADMIN_LISTEN: '' }
  for (const [code, healthy] of [[200, true], [401, true], [503, false]] as const) {
    status = code
    seen.length = 0
    t.equal(await probe(withoutAdmin), healthy ? 0 : 1, `no admin listener: /v2/ ${code} → ${healthy ? 'healthy' : 'unhealthy'} (self-signed certificate accepted)`)
    t.same(seen, ['main /v2/'], 'asked /v2/ on server.listen')
  }
  await new Promise<void>((resolve) => admin.close(() => resolve()))
  t.equal(await probe(withAdmin), 1, 'nothing listening → unhealthy')
  const { config } = loadConfig({ file: join(ROOT, 'config', 'portier.yaml'), env: {} })
  t.equal(config.admin.listen, '127.0.0.1:9113', 'the image default config has an admin listener on loopback, which the check reaches inside the container')
})

t.test('the quick start, npm start, the test fixture and the benchmarks (TypeScript and shell) run Portier with the image\'s V8 flags', async (t) => {
  const flags = NODE_FLAGS.join(' ')
  t.match(readFileSync(join(ROOT, 'scripts', 'quickstart.sh'), 'utf8'), new RegExp(`\\nexec node ${flags} dist/cli\\.js serve`), 'scripts/quickstart.sh')
  const start = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.start
  t.equal(start, `bash scripts/with-node.sh node ${flags} dist/cli.js serve`, 'npm start')
  t.match(readFileSync(join(ROOT, 'test', 'helpers', 'gateway.ts'), 'utf8'), `process.execPath, ${NODE_FLAGS.map((f) => `'${f}'`).join(', ')}, CLI, 'serve'`, 'test/helpers/gateway.ts')
  t.match(readFileSync(join(ROOT, 'bench', 'lib', 'targets.ts'), 'utf8'), `const args = [${NODE_FLAGS.map((f) => `'${f}'`).join(', ')}, ...(options.nodeArgs`, 'bench/lib/targets.ts')
  t.match(readFileSync(join(ROOT, 'bench', 'lib', 'common.sh'), 'utf8'), `\nnode_flags=(${flags})\n`, 'bench/lib/common.sh (the shell benchmarks)')
  for (const script of ['download-ceiling.sh', 'observe-overhead.sh']) {
    const text = readFileSync(join(ROOT, 'bench', script), 'utf8')
    t.notMatch(text, /\bnode dist\/cli\.js serve/, `bench/${script} starts no Portier without the flags`)
    t.match(text, 'node "${node_flags[@]}" dist/cli.js serve', `bench/${script}`)
  }
})

t.test('the Node.js this project runs on accepts every one of the image\'s V8 flags', async (t) => {
  // Node refuses to start on a V8 flag it does not know ("bad option"), so a flag that a later Node drops
  // would stop the image, the quick start and npm start alike. The tests run on the Node that npm start
  // and the quick start use (scripts/node-runtime.sh); the image's is the same major version.
  t.equal(process.versions.node.split('.')[0], /^node:(\d+)/.exec(runtime.from)?.[1], 'the image runs the same major version of Node as the tests')
  const r = await run(process.execPath, [...NODE_FLAGS, '-e', '0'])
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stderr, '', 'no warning')
  const misspelt = await run(process.execPath, ['--incremental-marking-soft-triger=50', '-e', '0'])
  t.not(misspelt.code, 0, 'an unknown V8 flag is refused (the check above can fail)')
})
