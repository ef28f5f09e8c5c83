// ACLs and login throttling through the gateway: pull-only users, ${account} namespaces, anonymous pull,
// catalog filtering, htpasswd reload without restart, and 429 after repeated bad passwords.
import t from 'tap'
import { mkdtemp, rm, writeFile, rename } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MiB = 1024 * 1024
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

async function users(entries: Record<string, string>): Promise<string> {
  const lines = await Promise.all(Object.entries(entries).map(async ([user, password]) => `${user}:${await hashPassword(password, 10)}\n`))
  return lines.join('')
}

t.test('ACL rules, namespaces, anonymous pull, catalog filter and htpasswd reload', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-acl-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, await users({ alice: 'alice-password', reader: 'reader-password', admin: 'admin-password' }))
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        groups: [{ name: 'admins', members: ['admin'] }],
        acl: [
          { match: { group: 'admins' }, actions: ['*'] },
          { match: { account: '*', name: '${account}/**' }, actions: ['pull', 'push', 'delete'] },
          { match: { account: 'reader', name: 'shared/*' }, actions: ['pull'] },
          { match: { account: '', name: 'public/*' }, actions: ['pull'] },
        ],
      },
    },
  })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const call = async (method: 'GET' | 'POST' | 'HEAD', path: string, who?: [string, string]) => {
    // registry 2.8 answers MANIFEST_UNKNOWN for an OCI manifest the client does not say it accepts.
    const accept = 'application/vnd.oci.image.manifest.v1+json'
    const response = await request(`${gateway.url}${path}`, {
      dispatcher,
      method,
      headers: who ? { authorization: basic(...who), accept } : { accept },
    })
    const text = method === 'HEAD' ? '' : await response.body.text()
    return { status: response.statusCode, headers: response.headers, json: text ? (JSON.parse(text) as { errors?: Array<{ code: string }>; repositories?: string[] }) : undefined }
  }

  // The admin pushes images that the others will try to read.
  for (const repository of ['shared/app', 'public/tool', 'private/thing']) {
    const image = await makeOciLayout(join(work, repository.replace('/', '-')), { layers: [1 * MiB] })
    await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/${repository}:v1`, { destCertDir: gateway.certDir, destCreds: 'admin:admin-password' })
  }

  const readerPull = await call('GET', '/v2/shared/app/manifests/v1', ['reader', 'reader-password'])
  t.equal(readerPull.status, 200, 'pull-only user can pull shared/app')
  const readerPush = await call('POST', '/v2/shared/app/blobs/uploads/', ['reader', 'reader-password'])
  t.equal(readerPush.status, 403, 'but cannot push there')
  t.equal(readerPush.json?.errors?.[0]?.code, 'DENIED')
  const image = await makeOciLayout(join(work, 'reader-push'), { layers: [1 * MiB] })
  const skopeoPush = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/shared/app:v2`, {
    destCertDir: gateway.certDir, destCreds: 'reader:reader-password', allowFailure: true,
  })
  t.not(skopeoPush.code, 0, 'skopeo push as the pull-only user fails')
  t.equal((await call('GET', '/v2/private/thing/manifests/v1', ['reader', 'reader-password'])).status, 403, 'reader cannot read private/thing')

  const own = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/alice/project:v1`, { destCertDir: gateway.certDir, destCreds: 'alice:alice-password' })
  t.equal(own.code, 0, 'alice pushes into her own namespace alice/*')
  t.equal((await call('POST', '/v2/reader/project/blobs/uploads/', ['alice', 'alice-password'])).status, 403, "alice cannot push into reader's namespace")

  t.equal((await call('GET', '/v2/public/tool/manifests/v1')).status, 200, 'anonymous pull of public/* works')
  t.equal((await call('GET', '/v2/public/tool/manifests/v1', ['', ''])).status, 200, 'empty Basic credentials (Basic Og==) are anonymous: public/* pulls')
  const emptyShared = await call('GET', '/v2/shared/app/manifests/v1', ['', ''])
  t.equal(emptyShared.status, 401, 'and elsewhere they are challenged like no credentials')
  t.match(emptyShared.headers['www-authenticate'], /^Basic realm=/)
  const anonymousSkopeo = await skopeoCopy(`docker://${gateway.host}/public/tool:v1`, `oci:${join(work, 'anonymous-pull')}:v1`, { srcCertDir: gateway.certDir })
  t.equal(anonymousSkopeo.code, 0, 'skopeo without credentials pulls public/tool')
  const anonymousShared = await call('GET', '/v2/shared/app/manifests/v1')
  t.equal(anonymousShared.status, 401, 'anonymous elsewhere is asked for credentials')
  t.match(anonymousShared.headers['www-authenticate'], /^Basic realm=/)
  t.equal((await call('GET', '/v2/')).status, 401, 'anonymous /v2/ is challenged (docker login relies on it)')

  const adminCatalog = await call('GET', '/v2/_catalog', ['admin', 'admin-password'])
  t.same(adminCatalog.json?.repositories, ['alice/project', 'private/thing', 'public/tool', 'shared/app'], 'admin sees every repository')
  const readerCatalog = await call('GET', '/v2/_catalog', ['reader', 'reader-password'])
  t.equal(readerCatalog.status, 403, 'reader lacks registry:catalog:*')
  const aliceTags = await call('GET', '/v2/alice/project/tags/list', ['alice', 'alice-password'])
  t.same(aliceTags.json, { name: 'alice/project', tags: ['v1'] })

  // htpasswd changes on disk: a new user gets in, a removed one is out, without a restart.
  const next = `${htpasswd}.next`
  await writeFile(next, await users({ alice: 'alice-password', admin: 'admin-password', newbie: 'newbie-password' }))
  await rename(next, htpasswd)
  let newbie = 0
  for (let i = 0; i < 50 && newbie !== 200; i++) {
    newbie = (await call('GET', '/v2/newbie/x/tags/list', ['newbie', 'newbie-password'])).status
    if (newbie !== 404 && newbie !== 200) await new Promise((r) => setTimeout(r, 100))
    else break
  }
  t.equal(newbie, 404, 'the new user is authenticated and authorized for its namespace (registry: repository unknown)')
  t.equal((await call('GET', '/v2/shared/app/manifests/v1', ['reader', 'reader-password'])).status, 401, 'the removed user is refused')
})

t.test('repeated bad passwords get 429 with Retry-After; the right password from another address still works', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-throttle-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, await users({ victim: 'victim-password' }))
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, throttle: { max_failures: 3, window: '1m', lockout: '1m' } } },
  })
  const ca = readFileSync(gateway.caFile)
  // undici takes the source address as a top-level Agent option (connect.localAddress is ignored).
  const from = (localAddress: string) => new Agent({ localAddress, connect: { ca } })
  const attacker = from('127.0.0.1')
  const user = from('127.0.0.2')
  t.teardown(() => Promise.all([attacker.close(), user.close()]))
  const ping = async (dispatcher: Agent, password: string) => {
    const response = await request(`${gateway.url}/v2/`, { dispatcher, headers: { authorization: basic('victim', password) } })
    await response.body.dump()
    return response
  }

  const statuses: number[] = []
  // max_failures: 3 means a fourth failure within the window locks (config/portier.yaml: "more failures than this").
  for (let i = 0; i < 4; i++) statuses.push((await ping(attacker, `guess-${randomBytes(4).toString('hex')}`)).statusCode)
  t.same(statuses, [401, 401, 401, 401], 'the first failures are plain 401s')
  const locked = await ping(attacker, 'another-guess')
  t.equal(locked.statusCode, 429, 'then 429')
  t.ok(Number(locked.headers['retry-after']) > 0, `with Retry-After (${String(locked.headers['retry-after'])})`)
  t.equal((await ping(attacker, 'victim-password')).statusCode, 429, 'even the right password waits from the locked address')
  const other = await ping(user, 'victim-password')
  t.equal(other.statusCode, 200, `the right password from another address works (${other.statusCode} ${String(other.headers['retry-after'] ?? '')})`)
  await gateway.logsSettled()
  const logged = JSON.stringify(gateway.logs)
  t.notMatch(logged, 'victim-password', 'no password in the log')
  t.notMatch(logged, 'Basic ', 'no Authorization header in the log')
})
