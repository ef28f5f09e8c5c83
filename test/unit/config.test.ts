// Config loading: defaults, sizes and durations, YAML errors that name file/key/expected/found, PORTIER_* overrides.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, parseDuration, parseSize, formatBytes, envName, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-config-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
function yamlFile(text: string): string {
  const file = join(dir, `config-${++fileCount}.yaml`)
  writeFileSync(file, text)
  return file
}

/** Runs loadConfig expecting a ConfigError; returns its problems. */
function problemsOf(options: Parameters<typeof loadConfig>[0]): { problems: ConfigProblem[]; message: string } {
  try {
    loadConfig(options)
  } catch (error) {
    if (error instanceof ConfigError) return { problems: error.problems, message: error.message }
    throw error
  }
  throw new Error('expected a ConfigError, the configuration loaded')
}

t.test('defaults: no file, no environment', async (t) => {
  const { config, sources } = loadConfig({ env: {} })
  t.same(sources, [])
  t.equal(config.server.listen, '0.0.0.0:5443')
  t.equal(config.server.public_url, '')
  t.equal(config.server.http_redirect_listen, '')
  t.same(config.server.trusted_proxies, [])
  t.equal(config.server.drain_timeout, 30_000)
  t.equal(config.tls.enabled, true)
  t.same(config.tls.certificates, [])
  t.same(config.tls.self_signed, { dir: 'certs/self-signed', hosts: [] })
  t.equal(config.tls.min_version, 'TLSv1.2')
  t.same(config.upstreams, [], 'no upstreams: the embedded registry is used')
  t.same(config.embedded_registry, { binary: '', data_dir: 'data/registry', restart_max_backoff: 30_000, storage_uploads: true })
  t.same(config.timeouts, { upstream_connect: 10_000, upstream_headers: 60_000, body_idle: 300_000, min_rate: 4096, min_rate_grace: 30_000, min_rate_window: 20_000 })
  t.same(config.limits, { blob_max_bytes: 0, manifest_max_bytes: 4 * 1024 * 1024, repositories: [], per_client: { max_exchanges_per_user: 32, max_exchanges_per_address: 64 }, rate: [] })
  t.equal(config.log.level, 'info')
})

t.test('an empty file and a file with only comments give the defaults', async (t) => {
  const empty = loadConfig({ file: yamlFile(''), env: {} })
  t.same(empty.config, loadConfig({ env: {} }).config)
  const comments = loadConfig({ file: yamlFile('# nothing here\n'), env: {} })
  t.same(comments.config, empty.config)
})

t.test('parseSize', async (t) => {
  t.equal(parseSize('512MiB'), 512 * 1024 * 1024)
  t.equal(parseSize('10GB'), 10_000_000_000)
  t.equal(parseSize('4096'), 4096)
  t.equal(parseSize(4096), 4096)
  t.equal(parseSize('0'), 0)
  t.equal(parseSize('1.5KiB'), 1536)
  t.equal(parseSize('2 gib'), 2 * 1024 ** 3, 'unit case and a space do not matter')
  t.equal(parseSize('10TB'), 10 * 1000 ** 4)
  t.equal(parseSize('12 parsecs'), undefined)
  t.equal(parseSize('lots'), undefined)
  t.equal(parseSize(''), undefined)
  t.equal(parseSize('-1'), undefined)
  t.equal(parseSize(-1), undefined)
  t.equal(parseSize(1.5), undefined, 'a fractional byte count is not a size')
  t.equal(parseSize('1e3'), undefined)
  t.equal(parseSize(true), undefined)
  t.equal(parseSize(null), undefined)
  t.equal(formatBytes(512 * 1024 * 1024), '512MiB')
  t.equal(formatBytes(1536), '1.5KiB')
})

t.test('parseDuration', async (t) => {
  t.equal(parseDuration('30s'), 30_000)
  t.equal(parseDuration('5m'), 300_000)
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('1h30m'), 5_400_000)
  t.equal(parseDuration('1d'), 86_400_000)
  t.equal(parseDuration('0'), 0)
  t.equal(parseDuration('90'), 90_000, 'a bare number means seconds')
  t.equal(parseDuration(2), 2000, 'a YAML number means seconds')
  t.equal(parseDuration('1.5s'), 1500)
  t.equal(parseDuration(''), undefined)
  t.equal(parseDuration('soon'), undefined)
  t.equal(parseDuration('5 minutes'), undefined)
  t.equal(parseDuration('-5s'), undefined)
  t.equal(parseDuration(-5), undefined)
  t.equal(parseDuration('10s5'), undefined, 'trailing garbage')
  t.equal(parseDuration(false), undefined)
})

t.test('sizes and durations from a YAML file', async (t) => {
  const file = yamlFile([
    'limits:',
    '  blob_max_bytes: 10GB',
    '  manifest_max_bytes: 4096',
    '  repositories:',
    '    - match: "ml/**"',
    '      blob_max_bytes: 512MiB',
    'timeouts:',
    '  body_idle: 5m',
    '  upstream_connect: 250ms',
    '  upstream_headers: 2',
    'server:',
    '  drain_timeout: 1h30m',
    '',
  ].join('\n'))
  const { config, sources } = loadConfig({ file, env: {} })
  t.same(sources, [file])
  t.equal(config.limits.blob_max_bytes, 10_000_000_000)
  t.equal(config.limits.manifest_max_bytes, 4096)
  t.same(config.limits.repositories, [{ match: 'ml/**', blob_max_bytes: 512 * 1024 * 1024 }])
  t.equal(config.timeouts.body_idle, 300_000)
  t.equal(config.timeouts.upstream_connect, 250)
  t.equal(config.timeouts.upstream_headers, 2000)
  t.equal(config.server.drain_timeout, 5_400_000)
})

t.test('an unknown key names the file, the key, what was expected and what was found', async (t) => {
  const file = yamlFile('server:\n  listen: 127.0.0.1:5443\n  listne: 127.0.0.1:80\n')
  const { problems, message } = problemsOf({ file, env: {} })
  t.equal(problems.length, 1)
  const [problem] = problems as [ConfigProblem]
  t.equal(problem.source, file)
  t.equal(problem.key, 'server.listne')
  t.match(problem.expected, /listen/, 'the expectation lists the known keys')
  t.match(problem.expected, /http_redirect_listen/)
  t.match(problem.found, /unknown key/)
  t.match(message, file)
  t.match(message, 'server.listne')
  t.match(message, /expected .*listen/)
  t.match(message, /found an unknown key/)

  const top = problemsOf({ file: yamlFile('upstream:\n  - url: http://r:5000\n'), env: {} })
  t.equal(top.problems[0]?.key, 'upstream', 'a misspelt top-level key')
  t.match(top.problems[0]?.expected, /upstreams/)

  const nested = problemsOf({ file: yamlFile('upstreams:\n  - url: http://r:5000\n    wieght: 3\n'), env: {} })
  t.equal(nested.problems[0]?.key, 'upstreams[0].wieght', 'keys inside list items are checked too')
})

t.test('upstreams[].storage_uploads needs the storage it writes into', async (t) => {
  const lone = problemsOf({ file: yamlFile('upstreams:\n  - url: http://r:5000\n    storage_uploads: true\n'), env: {} })
  t.equal(lone.problems[0]?.key, 'upstreams[0].storage_uploads')
  t.match(lone.problems[0]?.expected, /only together with storage/)
  const { config } = loadConfig({ file: yamlFile('upstreams:\n  - url: http://r:5000\n    storage: /srv/registry\n    storage_uploads: true\n'), env: {} })
  t.equal(config.upstreams[0]?.storage_uploads, true)
  // Under shared any upstream may get a session's next chunk: all of them hold sessions in storage, or none.
  const mixed = problemsOf({ file: yamlFile('routing:\n  strategy: shared\nupstreams:\n  - url: http://a:5000\n    storage: /srv/registry\n    storage_uploads: true\n  - url: http://b:5000\n    storage: /srv/registry\n'), env: {} })
  t.equal(mixed.problems[0]?.key, 'upstreams[1].storage_uploads')
  t.match(mixed.problems[0]?.expected, /every upstream under routing.strategy shared/)
})

t.test('a bad size string names the key, the expected form and the value', async (t) => {
  const file = yamlFile('limits:\n  blob_max_bytes: 12 parsecs\n')
  const { problems, message } = problemsOf({ file, env: {} })
  t.equal(problems.length, 1)
  t.equal(problems[0]?.source, file)
  t.equal(problems[0]?.key, 'limits.blob_max_bytes')
  t.match(problems[0]?.expected, /512MiB/)
  t.equal(problems[0]?.found, '"12 parsecs"')
  t.match(message, /limits\.blob_max_bytes: expected a size .* found "12 parsecs"/)
})

t.test('every problem is reported at once, not just the first', async (t) => {
  const file = yamlFile([
    'server:',
    '  listen: everywhere',
    '  trusted_proxies: [10.0.0.0/33]',
    'tls:',
    '  min_version: TLSv1.0',
    '  enabled: maybe',
    'timeouts:',
    '  body_idle: forever',
    'log:',
    '  level: loud',
    'colour: blue',
    '',
  ].join('\n'))
  const { problems } = problemsOf({ file, env: {} })
  t.same(problems.map((p) => p.key).sort(), [
    'colour', 'log.level', 'server.listen', 'server.trusted_proxies[0]', 'timeouts.body_idle', 'tls.enabled', 'tls.min_version',
  ])
  for (const problem of problems) t.equal(problem.source, file, `${problem.key} names the file`)
})

t.test('structural mistakes are problems, never crashes', async (t) => {
  const cases: Array<[string, string]> = [
    ['server: 5\n', 'server'],
    ['tls: [a, b]\n', 'tls'],
    ['upstreams: http://r:5000\n', 'upstreams'],
    ['upstreams:\n  - url: registry\n', 'upstreams[0].url'],
    ['upstreams:\n  - name: main\n', 'upstreams[0].url'],
    ['upstreams:\n  - 42\n', 'upstreams[0]'],
    ['tls:\n  certificates:\n    - cert: a.pem\n', 'tls.certificates[0].key'],
    ['limits:\n  repositories:\n    - blob_max_bytes: 1GB\n', 'limits.repositories[0].match'],
  ]
  for (const [text, key] of cases) {
    const { problems } = problemsOf({ file: yamlFile(text), env: {} })
    t.ok(problems.some((p) => p.key === key), `${JSON.stringify(text)} → a problem at ${key} (got ${problems.map((p) => p.key).join(', ')})`)
  }
})

t.test('keys inherited from Object.prototype are unknown keys too', async (t) => {
  const { problems } = problemsOf({ file: yamlFile('server:\n  toString: 1\nconstructor: 2\n'), env: {} })
  t.same(problems.map((p) => p.key).sort(), ['constructor', 'server.toString'])
})

t.test('durations longer than a Node timer can wait are refused', async (t) => {
  const { config } = loadConfig({ file: yamlFile('server:\n  drain_timeout: 24d\ntimeouts:\n  body_idle: 0\n'), env: {} })
  t.equal(config.server.drain_timeout, 24 * 86_400_000)
  t.equal(config.timeouts.body_idle, 0)
  // 30 days would overflow setTimeout, which then fires after 1 ms: every drain or wait would end at once.
  const { problems } = problemsOf({ file: yamlFile('server:\n  drain_timeout: 30d\n'), env: { PORTIER_TIMEOUTS_UPSTREAM_HEADERS: '999999999' } })
  t.same(problems.map((p) => p.key).sort(), ['server.drain_timeout', 'timeouts.upstream_headers'])
  t.match(problems[0]?.expected, /at most 24d/)
})

t.test('not YAML, not a mapping, not a file', async (t) => {
  const syntax = problemsOf({ file: yamlFile('server:\n  listen: [unclosed\n'), env: {} })
  t.match(syntax.problems[0], { key: '(file)', expected: 'valid YAML' })
  t.match(syntax.problems[0]?.found, /syntax error/)
  const list = problemsOf({ file: yamlFile('- a\n- b\n'), env: {} })
  t.match(list.problems[0], { key: '(top level)', expected: 'a mapping of keys' })
  const missing = problemsOf({ file: join(dir, 'missing.yaml'), env: {} })
  t.match(missing.problems[0], { source: join(dir, 'missing.yaml'), key: '(file)', found: 'ENOENT' })
})

t.test('environment overrides: scalars, sizes, booleans', async (t) => {
  t.equal(envName(['limits', 'blob_max_bytes']), 'PORTIER_LIMITS_BLOB_MAX_BYTES')
  const file = yamlFile('server:\n  listen: 127.0.0.1:1000\nlimits:\n  blob_max_bytes: 1GB\n')
  const { config, sources } = loadConfig({
    file,
    env: {
      PORTIER_SERVER_LISTEN: '127.0.0.1:2000',
      PORTIER_LIMITS_BLOB_MAX_BYTES: '10GiB',
      PORTIER_TLS_ENABLED: 'false',
      PORTIER_SERVER_TRUSTED_PROXIES: '10.0.0.0/8, 192.168.1.1',
      PORTIER_EMBEDDED_REGISTRY_RESTART_MAX_BACKOFF: '5s',
      PORTIER_CONFIG: '/ignored/by/the/loader.yaml',
      HOME: '/root',
    },
  })
  t.equal(config.server.listen, '127.0.0.1:2000', 'environment beats the file')
  t.equal(config.limits.blob_max_bytes, 10 * 1024 ** 3)
  t.equal(config.tls.enabled, false)
  t.same(config.server.trusted_proxies, ['10.0.0.0/8', '192.168.1.1'], 'a comma-separated list')
  t.equal(config.embedded_registry.restart_max_backoff, 5000)
  t.ok(sources.includes('environment PORTIER_SERVER_LISTEN'))
  t.ok(sources.includes(file))
})

t.test('a bad environment override names the variable', async (t) => {
  const file = yamlFile('limits:\n  blob_max_bytes: 1GB\n')
  const { problems, message } = problemsOf({ file, env: { PORTIER_LIMITS_BLOB_MAX_BYTES: 'lots' } })
  t.equal(problems.length, 1)
  t.equal(problems[0]?.source, 'environment PORTIER_LIMITS_BLOB_MAX_BYTES')
  t.equal(problems[0]?.key, 'limits.blob_max_bytes')
  t.equal(problems[0]?.found, '"lots"')
  t.match(message, /PORTIER_LIMITS_BLOB_MAX_BYTES/)

  const bool = problemsOf({ env: { PORTIER_TLS_ENABLED: 'perhaps' } })
  t.match(bool.problems[0], { source: 'environment PORTIER_TLS_ENABLED', key: 'tls.enabled', expected: 'true or false' })
})

t.test('an unknown PORTIER_* variable is an error', async (t) => {
  const { problems, message } = problemsOf({ env: { PORTIER_LIMITS_BLOB_MAX: '1GB', PORTIER_SERVER_LISTEN: '127.0.0.1:1' } })
  t.equal(problems.length, 1)
  t.equal(problems[0]?.key, 'PORTIER_LIMITS_BLOB_MAX')
  t.match(problems[0]?.source, /PORTIER_LIMITS_BLOB_MAX/)
  t.match(problems[0]?.found, /unknown variable/)
  t.match(message, /PORTIER_LIMITS_BLOB_MAX/)
  t.doesNotThrow(() => loadConfig({ env: { PORTIERX: '1', NOT_PORTIER_THING: '1' } }), 'other variables are not ours')
})

t.test('list override via the environment', async (t) => {
  const file = yamlFile('upstreams:\n  - url: http://from-file:5000\n')
  const { config } = loadConfig({ file, env: { PORTIER_UPSTREAMS: '[{url: "http://r:5000"}]' } })
  t.same(config.upstreams, [{ url: 'http://r:5000', name: 'r:5000', username: '', password: '', forward_authorization: false }], 'replaces the file list; name defaults to host:port')

  const json = loadConfig({ env: { PORTIER_UPSTREAMS: '[{"url": "http://a:5000", "name": "a"}, {"url": "https://b"}]', PORTIER_ROUTING_STRATEGY: 'shared' } })
  t.same(json.config.upstreams, [{ url: 'http://a:5000', name: 'a', username: '', password: '', forward_authorization: false }, { url: 'https://b', name: 'b', username: '', password: '', forward_authorization: false }])

  const bad = problemsOf({ env: { PORTIER_UPSTREAMS: '[{url: "registry"}]' } })
  t.match(bad.problems[0], { source: 'environment PORTIER_UPSTREAMS', key: 'upstreams[0].url' })

  const notList = problemsOf({ env: { PORTIER_UPSTREAMS: 'http://r:5000' } })
  t.match(notList.problems[0], { source: 'environment PORTIER_UPSTREAMS', key: 'upstreams', expected: 'a list' })

  const dup = problemsOf({ env: { PORTIER_UPSTREAMS: '[{url: "http://r:5000"}, {url: "http://r:5000/"}]' } })
  t.match(dup.problems[0], { key: 'upstreams[1].name', expected: 'a name no other upstream has' })
})

t.test('trusted_proxies: IPs and CIDRs, bad ones named', async (t) => {
  const good = loadConfig({ file: yamlFile('server:\n  trusted_proxies: [10.0.0.0/8, 127.0.0.1, "::1", "fd00::/8", 172.16.0.0/12]\n'), env: {} })
  t.same(good.config.server.trusted_proxies, ['10.0.0.0/8', '127.0.0.1', '::1', 'fd00::/8', '172.16.0.0/12'])
  for (const bad of ['10.0.0.0/33', '300.1.1.1', '10.0.0/8', 'proxy.local', '10.0.0.0/8/1', 'fd00::/129', '10.0.0.0/', ':::', '1:2', '::ffff:1.2.3', '010.0.0.1']) {
    const { problems } = problemsOf({ file: yamlFile(`server:\n  trusted_proxies: [${JSON.stringify(bad)}]\n`), env: {} })
    t.match(problems[0], { key: 'server.trusted_proxies[0]', expected: /CIDR/, found: JSON.stringify(bad) }, `${bad} is rejected`)
  }
  const env = problemsOf({ env: { PORTIER_SERVER_TRUSTED_PROXIES: '10.0.0.0/8,nonsense' } })
  t.match(env.problems[0], { source: 'environment PORTIER_SERVER_TRUSTED_PROXIES', key: 'server.trusted_proxies[1]' })
})

t.test('listen addresses: ports in range, the redirect listener distinct and only useful with HTTPS', async (t) => {
  const ports = problemsOf({ env: { PORTIER_SERVER_LISTEN: '0.0.0.0:70000', PORTIER_SERVER_HTTP_REDIRECT_LISTEN: '0.0.0.0:99999' } })
  t.same(ports.problems.map((p) => p.key).sort(), ['server.http_redirect_listen', 'server.listen'])
  t.match(ports.problems[0]?.expected, /65535/)
  t.match(ports.problems[0]?.source, /^environment PORTIER_SERVER_/)

  const same = problemsOf({ env: { PORTIER_SERVER_LISTEN: '0.0.0.0:443', PORTIER_SERVER_HTTP_REDIRECT_LISTEN: '0.0.0.0:443' } })
  t.match(same.problems[0], { key: 'server.http_redirect_listen', expected: /other than server\.listen/ })

  const plain = problemsOf({ env: { PORTIER_TLS_ENABLED: 'false', PORTIER_SERVER_HTTP_REDIRECT_LISTEN: '0.0.0.0:80' } })
  t.match(plain.problems[0], { key: 'server.http_redirect_listen', expected: /tls\.enabled/ })
  const behindTls = loadConfig({
    env: { PORTIER_TLS_ENABLED: 'false', PORTIER_SERVER_HTTP_REDIRECT_LISTEN: '0.0.0.0:80', PORTIER_SERVER_PUBLIC_URL: 'https://registry.example.com' },
  })
  t.equal(behindTls.config.server.http_redirect_listen, '0.0.0.0:80', 'fine when the public URL is HTTPS (TLS terminated in front)')
  t.equal(loadConfig({ env: { PORTIER_SERVER_LISTEN: '127.0.0.1:0' } }).config.server.listen, '127.0.0.1:0', 'port 0 picks a free port')
})

t.test('public_url is normalised and checked', async (t) => {
  const { config } = loadConfig({ env: { PORTIER_SERVER_PUBLIC_URL: 'https://registry.example.com/' } })
  t.equal(config.server.public_url, 'https://registry.example.com')
  const { problems } = problemsOf({ env: { PORTIER_SERVER_PUBLIC_URL: 'https://registry.example.com/v2/' } })
  t.equal(problems[0]?.key, 'server.public_url')
})
