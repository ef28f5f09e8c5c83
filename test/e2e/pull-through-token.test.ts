// A pull-through cache of a remote with a token service (as Docker Hub and ghcr.io have): a real docker-registry with auth.token, whose realm is an HTTPS token server with its own CA; the cache's registry fetches tokens there with the cache's credentials, trusting ca_file.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { makeTestPki } from '../helpers/pki.js'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, sha256 } from '../helpers/gwclient.js'
import { makeOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { MT_OCI_MANIFEST } from '../helpers/oci.js'
import { parseBasic } from '../../src/auth/basic.js'
import { createIssuer, createTokenEndpoint, generateTokenKey, loadTokenKey, type Scope } from '../../src/auth/token/index.js'

const work = join(tmpdir(), `portier-ptt-${randomBytes(4).toString('hex')}`)
await mkdir(work)
t.teardown(() => rm(work, { recursive: true, force: true }))
const file = (name: string): string => join(work, name)

// The token service's own CA and its certificate for 127.0.0.1 (nothing in the system pool trusts it).
await makeTestPki(work, { ca: 'portier test token CA', server: 'portier test token service' })
await writeFile(file('remote.password'), 'pw-ann\n')

// The token service: ann (the cache's credentials) may pull anything; nobody else gets a token.
const service = 'remote.test'
const issuerName = 'remote-token-issuer'
const keyFiles = generateTokenKey(file('token-key'), { bits: 2048, commonName: 'remote token issuer' })
const issuer = createIssuer({ key: loadTokenKey(keyFiles.keyPath, keyFiles.certPath), issuer: issuerName, service, ttlSeconds: 300 })
const endpoint = createTokenEndpoint({
  issuer,
  allowAnonymous: false,
  authenticate: async (user, password) => user === 'ann' && password === 'pw-ann',
  grant: (who, scopes): Scope[] => (who.anonymous ? [] : scopes.map((scope) => ({ ...scope, actions: ['pull'] }))),
})
/** Who asked the token service for a token (the basic credentials' user, or "anonymous"). */
const tokenRequests: string[] = []
const tokenServer = createServer({ key: await readFile(file('server.key')), cert: await readFile(file('server.crt')) }, (req, res) => {
  tokenRequests.push(parseBasic(req.headers.authorization)?.user ?? 'anonymous')
  void endpoint(req, res, req.socket.remoteAddress ?? '')
})
await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>((resolve) => tokenServer.close(() => resolve())))
const address = tokenServer.address()
if (address === null || typeof address === 'string') throw new Error('the token service has no address')
const realm = `https://127.0.0.1:${address.port}/auth/token`

// The remote's content, pushed while it has no auth; then it runs with auth.token on the same storage.
const remoteStorage = file('remote-storage')
await mkdir(remoteStorage)
const secret = randomBytes(8).toString('hex')
const image = await makeOciLayout(file('image'), { layers: [200_000, 50_000] })
const open = await registryFixture(t, { storageDir: remoteStorage, secret })
const pushed = await skopeoCopy(`oci:${image.dir}:latest`, `docker://127.0.0.1:${open.port}/team/app:v1`, { destTlsVerify: false })
if (pushed.code !== 0) throw new Error(`push to the remote: ${pushed.stderr}`)
await open.stop()
const remote = await registryFixture(t, { storageDir: remoteStorage, secret, tokenAuth: { realm, service, issuer: issuerName, rootcertbundle: keyFiles.certPath } })

const cache = { prefix: 'tok', remote: remote.url, username: 'ann', password_file: file('remote.password') }

t.test('the cache fetches tokens from the remote\'s realm, trusting its CA through ca_file, and pulls', async (t) => {
  const unauthenticated = await fetch(`${remote.url}/v2/team/app/manifests/v1`)
  t.equal(unauthenticated.status, 401, 'the remote wants a token')
  t.match(unauthenticated.headers.get('www-authenticate'), new RegExp(`^Bearer realm="${realm}"`), 'from the HTTPS realm')
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: (await registryFixture(t)).url }], auth: { mode: 'none' }, caches: [{ ...cache, ca_file: file('ca.crt') }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const before = tokenRequests.length
  const pulled = await skopeoCopy(`docker://${gateway.host}/tok/team/app:v1`, `oci:${file('pulled')}:v1`, { srcCertDir: gateway.certDir })
  t.equal(pulled.code, 0, `pull through the cache (${pulled.stderr.trim()})`)
  const index = JSON.parse(await readFile(join(file('pulled'), 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  t.equal(index.manifests[0]?.digest, image.manifestDigest, 'the remote\'s image')
  const layer = image.layerDigests[0] as string
  const blob = await client.send('GET', `/v2/tok/team/app/blobs/${layer}`)
  t.equal(blob.status, 200)
  t.equal(sha256(blob.body), layer, 'a layer, bytes intact')
  const asked = tokenRequests.slice(before)
  t.ok(asked.length >= 1, `the cache's registry asked the token service (${asked.length} times)`)
  t.ok(asked.every((user) => user === 'ann'), 'with the cache\'s credentials')
})

t.test('without ca_file the token service is not trusted: nothing is pulled, and it is never asked', async (t) => {
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: (await registryFixture(t)).url }], auth: { mode: 'none' }, caches: [cache] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const before = tokenRequests.length
  const answer = await client.send('GET', '/v2/tok/team/app/manifests/v1', { headers: { accept: MT_OCI_MANIFEST } })
  t.not(answer.status, 200, `no manifest without a token (${answer.status})`)
  t.equal(tokenRequests.length, before, 'the TLS handshake with the realm failed before any token request')
})
