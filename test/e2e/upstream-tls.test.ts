// An upstream registry on HTTPS that requires a client certificate: Portier trusts it by ca_bundle and presents client_cert/client_key.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, sha256 } from '../helpers/gwclient.js'

const work = await mkdtemp(join(tmpdir(), 'portier-upstream-tls-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

async function openssl(...args: string[]): Promise<void> {
  const result = await run('openssl', args, { cwd: work })
  if (result.code !== 0) throw new Error(`openssl ${args.join(' ')}: ${result.stderr}`)
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA (P-256 keys). */
async function makePki(): Promise<void> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=portier test upstream CA', '-days', '2')
  await writeFile(join(work, 'server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await writeFile(join(work, 'client.ext'), 'extendedKeyUsage=clientAuth\n')
  for (const name of ['server', 'client']) {
    await openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=portier test ${name}`)
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`)
  }
}

await makePki()
const file = (name: string): string => join(work, name)
const registry = await registryFixture(t, {
  tls: { certificate: file('server.crt'), key: file('server.key'), clientCas: [file('ca.crt')], ca: file('ca.crt'), clientCert: file('client.crt'), clientKey: file('client.key') },
})

t.test('with ca_bundle and a client certificate Portier pushes and pulls over mutual TLS', async (t) => {
  t.match(registry.url, /^https:\/\//, 'the registry serves HTTPS')
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: registry.url, ca_bundle: file('ca.crt'), client_cert: file('client.crt'), client_key: file('client.key') }] },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const data = randomBytes(100_000)
  const digest = sha256(data)
  const pushed = await client.send('POST', `/v2/tls/app/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { headers: { 'content-type': 'application/octet-stream' }, body: data })
  t.equal(pushed.status, 201, 'pushed')
  const pulled = await client.send('GET', `/v2/tls/app/blobs/${digest}`)
  t.equal(pulled.status, 200, 'pulled')
  t.equal(sha256(pulled.body), digest, 'same bytes')
})

t.test('without the CA or without the client certificate the upstream cannot be used', async (t) => {
  const cases = [
    ['no ca_bundle: the registry certificate is not trusted', { client_cert: file('client.crt'), client_key: file('client.key') }],
    ['no client certificate: the registry refuses the connection', { ca_bundle: file('ca.crt') }],
  ] as const
  for (const [what, options] of cases) {
    const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url, ...options }] } })
    const client = new GatewayClient(gateway)
    const reply = await client.send('GET', `/v2/tls/app/blobs/sha256:${'0'.repeat(64)}`)
    client.close()
    t.ok(reply.status === 502 || reply.status === 503, `${what}: ${reply.status}`)
    t.equal(reply.errorCode(), 'UNAVAILABLE', `${what}: a registry-format error`)
    await gateway.stop()
  }
})
