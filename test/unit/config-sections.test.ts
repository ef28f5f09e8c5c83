// Config sections registered by their modules: src/config imports no feature, every section is composed, rules between sections survive bad sections.
import t from 'tap'
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import yaml from 'js-yaml'
import { ConfigError, envName, leafPaths, type ConfigProblem } from '../../src/config/index.js'
import { configSchema, loadConfig, type Config } from '../../src/app/config.js'

const root = resolve(import.meta.dirname, '../..')
const dir = mkdtempSync(join(tmpdir(), 'portier-config-sections-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`)
  writeFileSync(file, text)
  return file
}

function problemsOf(text: string): ConfigProblem[] {
  try {
    loadConfig({ file: yamlFile(text), env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError, the configuration loaded')
}

t.test('src/config imports nothing but Node, zod, js-yaml and itself', async (t) => {
  const folder = join(root, 'src/config')
  const files = readdirSync(folder).filter((name) => name.endsWith('.ts'))
  t.ok(files.length >= 4, 'the config module files are found')
  for (const name of files) {
    const source = readFileSync(join(folder, name), 'utf8')
    const specifiers = [...source.matchAll(/(?:from\s+|import\s*\(\s*)'([^']+)'/g)].map((match) => match[1] as string)
    for (const specifier of specifiers) {
      const allowed = specifier.startsWith('node:') || specifier === 'zod' || specifier === 'js-yaml' || specifier.startsWith('./')
      t.ok(allowed, `src/config/${name} imports ${specifier}`)
    }
  }
})

t.test('the composed schema has exactly the sections config/portier.yaml documents', async (t) => {
  const documented = yaml.load(readFileSync(join(root, 'config/portier.yaml'), 'utf8'))
  t.ok(documented !== null && typeof documented === 'object')
  t.same(Object.keys(configSchema.shape).sort(), Object.keys(documented as object).sort())
})

t.test('every key has its own PORTIER_* variable', async (t) => {
  const leaves = leafPaths(configSchema)
  const names = leaves.map((leaf) => envName(leaf.path))
  t.equal(new Set(names).size, names.length, 'no two keys share a variable')
  t.ok(names.includes('PORTIER_SERVER_HSTS_SEND'), 'a key in a section registered inside another module (pipeline\'s hsts in app\'s server)')
  t.ok(names.includes('PORTIER_TLS_ACME_RENEW_BEFORE'), 'a key two sections deep')
  t.equal(leaves.find((leaf) => leaf.path.join('.') === 'upstreams')?.kind, 'list', 'upstreams (a list with a transform) reads as YAML')
  t.equal(leaves.find((leaf) => leaf.path.join('.') === 'server.trusted_proxies')?.kind, 'strings')
  t.equal(leaves.find((leaf) => leaf.path.join('.') === 'server.public_url')?.kind, 'text')
  const { config } = loadConfig({ env: { PORTIER_SERVER_HSTS_SEND: 'never', PORTIER_TLS_ACME_RENEW_BEFORE: '10d', PORTIER_METRICS_MAX_REPOSITORIES: '7' } })
  t.equal(config.server.hsts.send, 'never')
  t.equal(config.tls.acme.renew_before, 10 * 86_400_000)
  t.equal(config.metrics.max_repositories, 7)
})

t.test('the Config type is inferred from the sections: choices are literal unions, durations numbers', async (t) => {
  const { config } = loadConfig({ env: {} })
  // Compile-time checks: these assignments only type-check when the inferred types are this precise.
  const send: 'auto' | 'always' | 'never' = config.server.hsts.send
  const strategy: Config['routing']['strategy'] = config.routing.strategy
  const actions: Array<'pull' | 'push' | 'delete' | '*'> = config.auth.acl.flatMap((rule) => rule.actions)
  const ttl: number = config.auth.token.ttl
  t.equal(send, 'auto')
  t.equal(strategy, '')
  t.same(actions, [])
  t.equal(ttl, 300_000)
})

t.test('an empty key (YAML null) means its default, for sections and lists alike', async (t) => {
  const { config } = loadConfig({ file: yamlFile('server:\nupstreams:\nauth:\n  throttle:\n  acl:\n'), env: {} })
  t.same(config, loadConfig({ env: {} }).config)
})

t.test('sections of the wrong kind are problems, and the rules between sections do not trip over them', async (t) => {
  const problems = problemsOf(['server: 5', 'tls: [a]', 'admin: yes', 'upstreams: 5', 'routing: 5', 'auth: 5', 'limits: x', ''].join('\n'))
  t.same(problems.map((p) => p.key).sort(), ['admin', 'auth', 'limits', 'routing', 'server', 'tls', 'upstreams'])
  for (const problem of problems) t.match(problem.expected, /^a (mapping of keys|list)$/, `${problem.key}: ${problem.expected}`)
})

t.test('a rule between sections still runs when another section has a problem', async (t) => {
  const problems = problemsOf(['log:', '  level: loud', 'upstreams:', '  - url: http://a:5000', '  - url: http://b:5000', ''].join('\n'))
  t.same(problems.map((p) => p.key).sort(), ['log.level', 'routing.strategy'])
  const strategy = problems.find((p) => p.key === 'routing.strategy')
  t.match(strategy, { expected: /routing strategy for several upstreams/, found: 'nothing' })
})

t.test('an admin listener on the main address is refused, named by its variable', async (t) => {
  try {
    loadConfig({ env: { PORTIER_SERVER_LISTEN: '127.0.0.1:5443', PORTIER_ADMIN_LISTEN: '127.0.0.1:5443' } })
    t.fail('expected a ConfigError')
  } catch (error) {
    t.ok(error instanceof ConfigError)
    t.match((error as ConfigError).problems, [{ source: 'environment PORTIER_ADMIN_LISTEN', key: 'admin.listen', expected: /other than server\.listen/, found: '"127.0.0.1:5443"' }])
  }
})
