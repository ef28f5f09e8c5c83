// The caches section: required keys, prefix grammar, one cache per prefix, one un-prefixed cache, credentials with a password file; the Docker Hub defaults.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { isDockerHub, mirrorsOf } from '../../src/cache/section.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-caches-config-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let count = 0

function load(text: string): { problems: ConfigProblem[]; config?: ReturnType<typeof loadConfig>['config'] } {
  const file = join(dir, `config-${++count}.yaml`)
  writeFileSync(file, text)
  try {
    return { problems: [], config: loadConfig({ file, env: {} }).config }
  } catch (error) {
    if (error instanceof ConfigError) return { problems: error.problems }
    throw error
  }
}

t.test('a cache needs a prefix of one path component and a remote origin', async (t) => {
  const { problems } = load(['caches:', '  - prefix: Docker/Hub', '    remote: registry-1.docker.io', '  - remote: https://ghcr.io', ''].join('\n'))
  t.same(problems.map((problem) => problem.key).sort(), ['caches[0].prefix', 'caches[0].remote', 'caches[1].prefix'])
  t.match(problems.find((problem) => problem.key === 'caches[0].prefix')?.expected ?? '', /one repository path component/)
})

t.test('a prefix used twice, two un-prefixed caches and a username without a password file are problems naming the key', async (t) => {
  const { problems } = load([
    'caches:',
    '  - { prefix: hub, remote: "https://registry-1.docker.io", unprefixed: true }',
    '  - { prefix: hub, remote: "https://ghcr.io", unprefixed: true, username: me }',
    '',
  ].join('\n'))
  t.same(problems.map((problem) => problem.key).sort(), ['caches[1].password_file', 'caches[1].prefix', 'caches[1].unprefixed'])
  t.match(problems.find((problem) => problem.key === 'caches[1].prefix')?.expected ?? '', /caches\[0\]\.prefix is the same/)
})

t.test('a password file or CA file that cannot be read is a problem naming the key', async (t) => {
  const notPem = join(dir, 'not-a-ca.txt')
  writeFileSync(notPem, 'hello\n')
  const { problems } = load(['caches:', `  - { prefix: corp, remote: "https://corp:5000", username: me, password_file: "${join(dir, 'missing')}", ca_file: "${notPem}" }`, ''].join('\n'))
  t.same(problems.map((problem) => problem.key).sort(), ['caches[0].ca_file', 'caches[0].password_file'])
  t.match(problems.find((problem) => problem.key === 'caches[0].password_file')?.found ?? '', /ENOENT/)
  t.match(problems.find((problem) => problem.key === 'caches[0].ca_file')?.found ?? '', /without PEM blocks/)
})

t.test('defaults: revalidate 5m, Docker Hub gets library/ and docker.io, another remote its own host', async (t) => {
  const { problems, config } = load(['caches:', '  - { prefix: dockerhub, remote: "https://registry-1.docker.io" }', '  - { prefix: corp, remote: "https://registry.corp:5000/" }', ''].join('\n'))
  t.same(problems, [])
  const [hub, corp] = config?.caches ?? []
  if (!hub || !corp) throw new Error('two caches expected')
  t.equal(hub.revalidate, 5 * 60_000)
  t.equal(isDockerHub(hub), true)
  t.ok(mirrorsOf(hub).includes('docker.io'))
  t.equal(isDockerHub(corp), false)
  t.same(mirrorsOf(corp), ['registry.corp:5000'])
  t.equal(isDockerHub({ ...corp, docker_hub_library: 'on' }), true, 'docker_hub_library: on forces library/')
})

t.test('max_age: a duration (0 by default: no bound); anything else is a problem naming the key', async (t) => {
  const { problems, config } = load(['caches:', '  - { prefix: hub, remote: "https://registry-1.docker.io", max_age: 30d }', '  - { prefix: corp, remote: "https://corp:5000" }', ''].join('\n'))
  t.same(problems, [])
  t.equal(config?.caches[0]?.max_age, 30 * 86_400_000)
  t.equal(config?.caches[1]?.max_age, 0)
  const bad = load(['caches:', '  - { prefix: hub, remote: "https://registry-1.docker.io", max_age: "a month" }', ''].join('\n'))
  t.same(bad.problems.map((problem) => problem.key), ['caches[0].max_age'])
  t.match(bad.problems[0]?.expected ?? '', /duration/)
})
