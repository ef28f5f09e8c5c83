// Request rate limits (limits.rate) in the real gateway before a real registry: 429 + Retry-After + JSON past the rate, other
// callers unaffected, allowed again after the wait; a skopeo push and pull of a 3-layer image under a reasonable rule; two
// instances sharing the buckets in a real redis-server, and each counting alone once Redis is gone.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import yaml from 'js-yaml'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { redisFixture } from '../helpers/redis.js'
import { GatewayClient, sleep } from '../helpers/gwclient.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { buildLayout } from '../helpers/oci-build.js'
import { run } from '../helpers/exec.js'
import { CLI, ROOT, withoutPortierVariables } from '../helpers/gateway.js'
import { hashPassword } from '../../src/auth/hashes.js'

const PASSWORDS = { alice: 'alice-password-1', bob: 'bob-password-1', carol: 'carol-password-1' }
const basic = (user: keyof typeof PASSWORDS): string => `Basic ${Buffer.from(`${user}:${PASSWORDS[user]}`).toString('base64')}`

async function htpasswdFile(dir: string): Promise<string> {
  const path = join(dir, 'htpasswd')
  await writeFile(path, (await Promise.all(Object.entries(PASSWORDS).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))).join(''))
  return path
}

async function metric(gateway: GatewayHandle, line: string): Promise<number> {
  const text = await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
  const found = text.split('\n').find((entry) => entry.startsWith(`${line} `))
  return found === undefined ? 0 : Number(found.split(' ')[1])
}

async function rateReadiness(gateway: GatewayHandle): Promise<{ counted?: string; reason?: string } | undefined> {
  const body = (await (await fetch(`${gateway.adminUrl as string}/readyz`)).json()) as { checks?: Array<{ name: string; detail?: { counted?: string; reason?: string } }> }
  return body.checks?.find((check) => check.name === 'rate_limits')?.detail
}

t.test('one gateway: past the rate 429 with Retry-After, others unaffected, allowed again after the wait', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-rate-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: await htpasswdFile(work) },
        acl: [{ match: { account: '' }, actions: ['pull'] }, { match: {}, actions: ['*'] }],
      },
      limits: {
        rate: [
          // One request refills every 3 s: a slow machine taking seconds between requests still sees the burst end.
          { name: 'alice', match: { account: 'alice' }, requests: 3, per: '9s' },
          { name: 'anonymous', match: { account: '' }, requests: 2, per: '1m', count: 'manifests' },
          // What config/portier.yaml suggests for users, tightened: a whole skopeo push and pull fits in it.
          { name: 'users', match: {}, requests: 60, per: '1m' },
        ],
      },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const manifestPath = '/v2/team/app/manifests/latest'

  t.test('alice: three at once, the fourth refused with the registry error', async (t) => {
    for (let i = 1; i <= 3; i++) t.equal((await client.send('GET', '/v2/', { headers: { authorization: basic('alice') } })).status, 200, `request ${i}`)
    const refused = await client.send('HEAD', manifestPath, { headers: { authorization: basic('alice') } })
    t.equal(refused.status, 429)
    const retryAfter = Number(refused.headers['retry-after'])
    t.ok(retryAfter >= 1 && retryAfter <= 3, `Retry-After ${retryAfter}: one request refills in 3 s`)
    t.equal(refused.headers['docker-distribution-api-version'], 'registry/2.0')
    const get = await client.send('GET', '/v2/team/app/tags/list', { headers: { authorization: basic('alice') } })
    t.equal(get.status, 429)
    t.match(get.headers['content-type'], /application\/json/)
    t.match(get.json(), { errors: [{ code: 'TOOMANYREQUESTS', detail: { limit: 'rate', rule: 'alice', requests: 3, per_seconds: 9 } }] })
    t.equal((await client.send('GET', '/v2/', { headers: { authorization: basic('bob') } })).status, 200, 'bob is not affected')
    const wait = Number(get.headers['retry-after'])
    t.ok(wait >= 1 && wait <= 3, `Retry-After ${wait}`)
    await sleep(wait * 1000 + 100)
    t.equal((await client.send('GET', '/v2/', { headers: { authorization: basic('alice') } })).status, 200, 'after Retry-After alice goes again')
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="alice",by="user"}'), 2, 'both refusals counted')
    await gateway.logsSettled()
    t.equal(gateway.logs.filter((line) => String(line.msg).startsWith('rate limit reached') && line.rule === 'alice').length, 1, 'logged once for the two refusals')
  })

  t.test('anonymous callers: counted per address, manifests only', async (t) => {
    for (let i = 0; i < 3; i++) t.equal((await client.send('GET', '/v2/team/app/tags/list')).status, 404, `tags ${i} (not a manifest): not counted`)
    for (let i = 1; i <= 2; i++) t.equal((await client.send('HEAD', manifestPath)).status, 404, `manifest ${i}`)
    const refused = await client.send('HEAD', manifestPath)
    t.equal(refused.status, 429)
    t.ok(Number(refused.headers['retry-after']) > 20, `Retry-After ${String(refused.headers['retry-after'])} s (2 per minute)`)
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="anonymous",by="address"}'), 1)
    t.equal((await client.send('HEAD', manifestPath, { headers: { authorization: basic('bob') } })).status, 404, 'an authenticated caller from the same address is not')
  })

  t.test('skopeo: push and pull a 3-layer image under 60 requests per minute', async (t) => {
    const layout = join(work, 'layout')
    const image = await makeOciLayout(layout, { layers: [200_000, 300_000, 400_000], tag: 'v1' })
    const carol = async (): Promise<LogLine[]> => {
      await gateway.logsSettled()
      return gateway.logs.filter((line) => line.msg === 'request' && line.user === 'carol')
    }
    await skopeoCopy(`oci:${layout}:v1`, `docker://${gateway.host}/team/three:v1`, { destCreds: `carol:${PASSWORDS.carol}`, destCertDir: gateway.certDir })
    const pushed = (await carol()).length
    const pulled = join(work, 'pulled')
    await skopeoCopy(`docker://${gateway.host}/team/three:v1`, `oci:${pulled}:v1`, { srcCreds: `carol:${PASSWORDS.carol}`, srcCertDir: gateway.certDir })
    const pull = (await carol()).slice(pushed)
    const manifests = pull.filter((line) => String(line.op).startsWith('manifest.')).length
    t.ok(pushed >= 8 && pushed < 40, `the push took ${pushed} requests`)
    t.ok(pull.length >= 5 && pull.length < 20, `the pull took ${pull.length} requests (${pull.map((line) => String(line.op)).join(', ')}), ${manifests} of them on manifests`)
    t.ok(manifests >= 1 && manifests <= 2, 'count: manifests would count one or two')
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="users",by="user"}'), 0, 'none refused')
    t.equal(image.layerDigests.length, 3)
  })
})

/** The commented example under limits.rate in config/portier.yaml, as written there. */
function documentedExample(): unknown[] {
  const text = readFileSync(join(ROOT, 'config/portier.yaml'), 'utf8')
  const start = text.indexOf('  rate: []\n')
  const lines = text.slice(start).split('\n').slice(1)
  const example = lines.slice(0, lines.findIndex((line) => !line.startsWith('  #'))).map((line) => line.replace(/^ {2}# ?/, ''))
  return yaml.load(example.join('\n')) as unknown[]
}

t.test('the example in config/portier.yaml: podman (as a user) and skopeo (anonymously, auth none) pull a 3-layer image without a refusal', async (t) => {
  const version = await run('podman', ['--version']).catch(() => undefined)
  if (version === undefined || version.code !== 0) return t.pass('podman is not installed: nothing to check')
  const rules = documentedExample()
  t.equal(rules.length, 3, 'the documented example is read')
  const registry = await registryFixture(t)
  // Short: podman's runroot must stay under 50 characters.
  const work = join(tmpdir(), `rl-${randomBytes(4).toString('hex')}`)
  await mkdir(work)
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'htpasswd', htpasswd: { path: await htpasswdFile(work) }, acl: [{ match: { account: '' }, actions: ['pull'] }, { match: {}, actions: ['*'] }] },
      limits: { rate: rules },
    },
  })
  const image = await buildLayout(join(work, 'src'), 'v1', [{ layers: [4096, 8192, 16384], tar: true }])
  await skopeoCopy(`oci:${image.dir}:v1`, `docker://${gateway.host}/team/pm:v1`, { destCreds: `carol:${PASSWORDS.carol}`, destCertDir: gateway.certDir })
  const file = (name: string): string => join(work, name)
  await mkdir(file('xdg-run'), { recursive: true })
  await writeFile(file('auth.json'), '{}')
  const env = { ...process.env, REGISTRY_AUTH_FILE: file('auth.json'), HOME: work, XDG_CONFIG_HOME: file('xdg-config'), XDG_DATA_HOME: file('xdg-data'), XDG_RUNTIME_DIR: file('xdg-run') }
  const base = ['--root', file('root'), '--runroot', file('run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const podman = await run('podman', [...base, 'pull', '--cert-dir', gateway.certDir, '--creds', `bob:${PASSWORDS.bob}`, `docker://${gateway.host}/team/pm:v1`], { env, timeoutMs: 120_000 })
  t.equal(podman.code, 0, `podman pull as bob (${podman.stderr.trim().slice(-300)})`)
  t.equal(await metric(gateway, 'portier_rate_limited_total{rule="users",by="user"}'), 0, 'nothing refused under users')
  // Anonymous callers: behind auth.mode none (with htpasswd, skopeo and podman without credentials send an empty Basic login, a 401).
  const open = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], limits: { rate: rules } } })
  await skopeoCopy(`docker://${open.host}/team/pm:v1`, `oci:${file('anonymous')}:v1`, { srcCertDir: open.certDir, extraArgs: ['--src-no-creds'] })
  t.equal(await metric(open, 'portier_rate_limited_total{rule="anonymous",by="address"}'), 0, 'nothing refused under anonymous')
  await open.logsSettled()
  const pulled = open.logs.filter((line) => line.msg === 'request' && String(line.op).startsWith('blob.get')).length
  t.equal(pulled, 4, 'the anonymous pull fetched the config and 3 layers (each a counted request)')
})

t.test('check-config names the file, the key and what was expected', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-rate-cli-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const bad = join(work, 'bad.yaml')
  await writeFile(bad, 'limits:\n  rate:\n    - { match: { ip: 10.0.0.0/33, group: ops }, requests: 0, per: 0s }\n')
  const env = withoutPortierVariables(process.env)
  const result = await run(process.execPath, [CLI, 'check-config', '--config', bad], { cwd: work, env, timeoutMs: 20_000 })
  t.equal(result.code, 2)
  for (const [key, expected] of [
    ['limits.rate[0].requests', 'expected a whole number ≥ 1'],
    ['limits.rate[0].match.ip', 'expected an IP address or CIDR'],
    ['limits.rate[0].match.group', 'expected a group defined in auth.groups (none are)'],
    ['limits.rate[0].per', 'expected a duration longer than zero'],
  ] as const) {
    t.ok(result.stderr.includes(`${bad}: ${key}: ${expected}`), `${key}: ${expected}`)
  }
})

t.test('two instances on one Redis: hits at A count at B; without Redis each counts alone', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-rate-shared-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const config = {
    upstreams: [{ url: registry.url }],
    auth: { mode: 'htpasswd', htpasswd: { path: await htpasswdFile(work) } },
    limits: { rate: [{ match: {}, requests: 4, per: '1m' }] },
    shared: { redis: { url: redis.url, key_prefix: 'rate-e2e:' } },
  }
  const a = await gatewayFixture(t, { config })
  const b = await gatewayFixture(t, { config })
  const clients = [new GatewayClient(a), new GatewayClient(b)] as const
  t.teardown(() => clients.forEach((client) => client.close()))
  t.same(await rateReadiness(a), { rules: 1, counted: 'shared' })

  const statuses: number[] = []
  for (const client of [clients[0], clients[1], clients[0], clients[1], clients[1], clients[0]]) {
    statuses.push((await client.send('GET', '/v2/', { headers: { authorization: basic('alice') } })).status)
  }
  t.same(statuses, [200, 200, 200, 200, 429, 429], 'four in all, whichever instance served them')
  t.equal(await metric(b, 'portier_rate_limited_total{rule="rate[0]",by="user"}'), 1)
  t.equal(await metric(a, 'portier_rate_limited_total{rule="rate[0]",by="user"}'), 1)
  t.equal((await clients[1].send('GET', '/v2/', { headers: { authorization: basic('bob') } })).status, 200, 'bob has his own bucket')

  await redis.kill()
  // Fail open to each instance's own buckets: bob (one request counted in Redis) gets four more at A and four at B.
  const alone: number[] = []
  for (const client of [clients[0], clients[0], clients[0], clients[0], clients[0], clients[1]]) {
    alone.push((await client.send('GET', '/v2/', { headers: { authorization: basic('bob') } })).status)
  }
  t.same(alone, [200, 200, 200, 200, 429, 200], 'A limits alone, B has its own count')
  t.match(await rateReadiness(a), { counted: 'here', reason: /unreachable/ }, '/readyz says where limits are counted now')
  const ready = await fetch(`${a.adminUrl as string}/readyz`)
  t.equal(ready.status, 200, 'still ready')
  await a.logsSettled()
  t.equal(a.logs.filter((line) => String(line.msg).startsWith('rate limits: the shared counters are unreachable')).length, 1, 'told once')
})
