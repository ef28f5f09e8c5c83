// tls.acme configuration: defaults, aliases, and the start-up errors for what no CA could validate.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { directoryUrl } from '../../src/tls/acme/config.js'
import { caDirectoryName } from '../../src/tls/acme/storage.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-acme-config-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

let count = 0
function yamlFile(text: string): string {
  const file = join(dir, `config-${++count}.yaml`)
  writeFileSync(file, text)
  return file
}

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigProblem[] {
  try {
    loadConfig({ file: yamlFile(text), env })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

const valid = `
server: { http_redirect_listen: "0.0.0.0:80" }
tls:
  acme: { enabled: true, email: ops@example.com, domains: [registry.example.com] }
`

t.test('defaults: off, Let\'s Encrypt production, http-01, 30 days before expiry', async (t) => {
  const { config } = loadConfig({ env: {} })
  t.same(config.tls.acme, {
    enabled: false,
    directory_url: 'https://acme-v02.api.letsencrypt.org/directory',
    email: '',
    domains: [],
    challenge: 'http-01',
    storage: 'certs/acme',
    renew_before: 30 * 86_400_000,
    ca_bundle: '',
    eab: { kid: '', hmac_key: '' },
    self_check: true,
    retry_min: 60_000,
    retry_max: 6 * 3_600_000,
  })
  t.same(problemsOf(valid), [], 'a minimal valid setup loads')
})

t.test('staging is one word; directory names in storage differ per CA', async (t) => {
  t.equal(directoryUrl('letsencrypt-staging'), 'https://acme-staging-v02.api.letsencrypt.org/directory')
  t.equal(directoryUrl('letsencrypt'), 'https://acme-v02.api.letsencrypt.org/directory')
  t.equal(directoryUrl('https://ca.internal:9000/acme/dir'), 'https://ca.internal:9000/acme/dir')
  t.equal(caDirectoryName(directoryUrl('letsencrypt-staging')), 'acme-staging-v02.api.letsencrypt.org-directory')
  t.equal(caDirectoryName('https://ca.internal:9000/acme/dir'), 'ca.internal-9000-acme-dir')
  t.same(problemsOf(valid.replace('enabled: true', 'enabled: true, directory_url: letsencrypt-staging')), [])
  const [problem] = problemsOf(valid.replace('enabled: true', 'enabled: true, directory_url: "http://ca.example/dir"'))
  t.equal(problem?.key, 'tls.acme.directory_url')
  t.match(problem?.expected, /https:\/\//)
})

t.test('environment variables turn it on', async (t) => {
  const { config } = loadConfig({
    env: { PORTIER_TLS_ACME_ENABLED: 'true', PORTIER_TLS_ACME_DOMAINS: 'registry.example.com,cache.example.com', PORTIER_TLS_ACME_CHALLENGE: 'tls-alpn-01' },
  })
  t.equal(config.tls.acme.enabled, true)
  t.same(config.tls.acme.domains, ['registry.example.com', 'cache.example.com'])
})

t.test('each mistake names its key and what was expected', async (t) => {
  const cases: Array<[string, string, string, RegExp]> = [
    ['no domains', valid.replace('[registry.example.com]', '[]'), 'tls.acme.domains', /at least one DNS name/],
    ['wildcard', valid.replace('[registry.example.com]', '["*.example.com"]'), 'tls.acme.domains[0]', /DNS-01/],
    ['IP address', valid.replace('[registry.example.com]', '["203.0.113.7"]'), 'tls.acme.domains[0]', /not IP addresses/],
    ['single label', valid.replace('[registry.example.com]', '[registry]'), 'tls.acme.domains[0]', /fully qualified/],
    ['duplicate', valid.replace('[registry.example.com]', '[a.example.com, A.example.com]'), 'tls.acme.domains[1]', /only once/],
    ['bad email', valid.replace('ops@example.com', 'ops-at-example'), 'tls.acme.email', /email address/],
    ['unknown challenge', valid.replace('enabled: true', 'enabled: true, challenge: dns-01'), 'tls.acme.challenge', /http-01/],
    ['http-01 without a plain-HTTP listener', valid.replace('http_redirect_listen: "0.0.0.0:80"', 'http_redirect_listen: ""'), 'server.http_redirect_listen', /tls-alpn-01/],
    ['half an EAB pair', valid.replace('enabled: true', 'enabled: true, eab: { kid: kid-1 }'), 'tls.acme.eab.hmac_key', /both/],
    ['retry_max below retry_min', valid.replace('enabled: true', 'enabled: true, retry_min: 10m, retry_max: 1m'), 'tls.acme.retry_max', /at least/],
    ['renew_before over a year', valid.replace('enabled: true', 'enabled: true, renew_before: 400d'), 'tls.acme.renew_before', /at most 365d/],
    ['ACME with TLS off', valid.replace('tls:\n', 'tls:\n  enabled: false\n'), 'tls.acme.enabled', /tls\.enabled: true/],
  ]
  for (const [name, text, key, expected] of cases) {
    const problems = problemsOf(text)
    const problem = problems.find((p) => p.key === key)
    t.ok(problem, `${name}: a problem at ${key} (got ${problems.map((p) => p.key).join(', ') || 'none'})`)
    t.match(problem?.expected, expected, `${name}: ${problem?.expected}`)
  }
  t.same(problemsOf(valid.replace('http_redirect_listen: "0.0.0.0:80"', 'http_redirect_listen: ""').replace('enabled: true', 'enabled: true, challenge: tls-alpn-01')), [], 'tls-alpn-01 needs no plain-HTTP listener')
  t.same(problemsOf(valid.replace('enabled: true', 'enabled: true, renew_before: 60d')), [], 'renew_before may exceed what one timer can wait')
  t.same(problemsOf(valid.replace('enabled: true', 'enabled: false').replace('[registry.example.com]', '[]')), [], 'nothing is checked while it is off')
})
