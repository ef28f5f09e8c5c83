// server.workers in the config: its bounds, and what check-config refuses with more than one worker (file, key, expected).
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, type ConfigProblem } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-workers-config-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

let count = 0
function yamlFile(text: string): string {
  const file = join(dir, `config-${++count}.yaml`)
  writeFileSync(file, text)
  return file
}

function problemsOf(file: string): ConfigProblem[] {
  try {
    loadConfig({ file, env: {} })
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  return []
}

t.test('default 1; 2..64 with fixed ports load', async (t) => {
  t.equal(loadConfig({ env: {} }).config.server.workers, 1)
  const file = yamlFile('server:\n  listen: 127.0.0.1:5443\n  workers: 4\nadmin:\n  listen: 127.0.0.1:9113\n')
  t.equal(loadConfig({ file, env: {} }).config.server.workers, 4)
  t.equal(loadConfig({ env: { PORTIER_SERVER_WORKERS: '2' } }).config.server.workers, 2, 'PORTIER_SERVER_WORKERS')
  t.same(problemsOf(yamlFile('server:\n  listen: 127.0.0.1:0\n  workers: 1\nadmin:\n  listen: 127.0.0.1:0\n')), [], 'port 0 is fine for one process')
})

t.test('out of bounds', async (t) => {
  for (const value of ['0', '65', '1.5', '"two"']) {
    const problems = problemsOf(yamlFile(`server:\n  workers: ${value}\n`))
    t.equal(problems[0]?.key, 'server.workers', `workers: ${value}`)
  }
})

t.test('with more than one worker: port 0, caches and webhooks on SQLite are refused by key', async (t) => {
  const file = yamlFile([
    'server:', '  listen: 127.0.0.1:0', '  workers: 2',
    'admin:', '  listen: 127.0.0.1:0',
    'caches:', '  - prefix: hub', '    remote: https://registry-1.docker.io',
    'events:', '  endpoints:', '    - name: hook', '      url: http://127.0.0.1:9/hook',
  ].join('\n'))
  const problems = problemsOf(file)
  const byKey = new Map(problems.map((problem) => [problem.key, problem]))
  t.match(byKey.get('server.listen')?.expected, /fixed port with server\.workers > 1/)
  t.equal(byKey.get('server.listen')?.found, '"127.0.0.1:0"')
  t.match(byKey.get('admin.listen')?.expected, /fixed port/)
  t.match(byKey.get('caches')?.expected, /no pull-through caches with server\.workers > 1/)
  t.match(byKey.get('events.endpoints')?.expected, /store\.url \(PostgreSQL\) with server\.workers > 1/)
  t.ok(problems.every((problem) => problem.source === file), 'each names the file')
})

t.test('webhooks with PostgreSQL are fine', async (t) => {
  const file = yamlFile([
    'server:', '  listen: 127.0.0.1:5443', '  workers: 2',
    'admin:', '  listen: ""',
    'store:', '  url: postgres://portier@127.0.0.1:5432/portier',
    'events:', '  endpoints:', '    - name: hook', '      url: http://127.0.0.1:9/hook',
  ].join('\n'))
  t.same(problemsOf(file).map((problem) => problem.key), [])
})
