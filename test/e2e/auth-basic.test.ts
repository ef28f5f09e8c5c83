// htpasswd Basic auth through the gateway: challenges as Docker expects, skopeo with credentials, generated admin.
import t from 'tap'
import { mkdtemp, rm, writeFile, stat } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, startGateway } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { run } from '../helpers/exec.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MiB = 1024 * 1024
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('htpasswd mode challenges, accepts the right password and lets skopeo push and pull', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-auth-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\n`)
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd, realm: 'Test Registry' } } },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())

  for (const [label, headers] of [
    ['no credentials', {}],
    ['a wrong password', { authorization: basic('alice', 'nope') }],
    ['an unknown user', { authorization: basic('mallory', 'alice-password') }],
  ] as const) {
    const response = await request(`${gateway.url}/v2/`, { dispatcher, headers })
    const body = (await response.body.json()) as { errors: Array<{ code: string }> }
    t.equal(response.statusCode, 401, `${label}: 401`)
    t.equal(response.headers['www-authenticate'], 'Basic realm="Test Registry"', `${label}: Basic challenge`)
    t.equal(response.headers['docker-distribution-api-version'], 'registry/2.0', `${label}: API version header on the 401`)
    t.equal(body.errors[0]?.code, 'UNAUTHORIZED', `${label}: JSON error code`)
  }
  const blobWithout = await request(`${gateway.url}/v2/any/repo/blobs/uploads/`, { dispatcher, method: 'POST' })
  await blobWithout.body.dump()
  t.equal(blobWithout.statusCode, 401, 'writes are protected too')
  t.same(await registry.uploadsOpen('any/repo'), [], 'and never reach the registry')

  const ok = await request(`${gateway.url}/v2/`, { dispatcher, headers: { authorization: basic('alice', 'alice-password') } })
  await ok.body.dump()
  t.equal(ok.statusCode, 200, 'right password: 200')

  const image = await makeOciLayout(join(work, 'src'), { layers: [2 * MiB, 1 * MiB] })
  const ref = `docker://${gateway.host}/auth/basic:v1`
  const denied = await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir, destCreds: 'alice:wrong', allowFailure: true })
  t.not(denied.code, 0, 'skopeo with a wrong password fails')
  await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir, destCreds: 'alice:alice-password' })
  await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: 'alice:alice-password' })
  const back = await readOciLayout(join(work, 'back'), 'latest')
  t.equal(back.manifestDigest, image.manifestDigest, 'pushed and pulled with credentials: same manifest digest')
  t.same(back.layerDigests, image.layerDigests, 'same layers')
})

t.test('first start generates an admin, prints the password once, and it works', async (t) => {
  const registry = await registryFixture(t)
  const cwd = await mkdtemp(join(tmpdir(), 'portier-admin-'))
  t.teardown(() => rm(cwd, { recursive: true, force: true }))
  const config = { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd' } }

  const first = await startGateway({ cwd, config })
  const printed = /user:\s*admin\s+password:\s*(\S+)/.exec(first.stderr())
  t.ok(printed, 'the generated credentials are printed')
  const password = printed?.[1] ?? ''
  const file = join(cwd, 'auth', 'htpasswd')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'the htpasswd file is private')
  await first.logsSettled()
  t.notMatch(JSON.stringify(first.logs), password, 'the password never appears in the JSON log')
  const dispatcher = new Agent({ connect: { ca: readFileSync(first.caFile) } })
  t.teardown(() => dispatcher.close())
  const ok = await request(`${first.url}/v2/`, { dispatcher, headers: { authorization: basic('admin', password) } })
  await ok.body.dump()
  t.equal(ok.statusCode, 200, 'the printed password works')
  await first.stop()

  const second = await startGateway({ cwd, config })
  t.teardown(() => second.stop())
  t.notMatch(second.stderr(), /password:/, 'a second start prints no password')
})

t.test('skopeo login works in htpasswd mode', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-login-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 10)}\n`)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } } } })
  const authfile = join(work, 'auth.json')
  const login = (password: string) => run('skopeo', ['login', '--authfile', authfile, '--cert-dir', gateway.certDir, '-u', 'alice', '--password-stdin', gateway.host], { input: `${password}\n` })
  t.equal((await login('alice-password')).code, 0, 'right password: skopeo login succeeds')
  t.not((await login('wrong-password')).code, 0, 'wrong password: skopeo login fails')
})
