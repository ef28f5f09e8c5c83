// The gateway under test runs on the supported Node.js: its ready line names the runtime, and it is the same
// binary tap runs on (so `npm test` exercises Node 24, not the machine's older node). And what the runtime's
// dependency upgrades change stays as designed: undici 8 would speak HTTP/2 to an HTTPS upstream that offers it.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readlinkSync, realpathSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runOk } from '../helpers/exec.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient, sha256 } from '../helpers/gwclient.js'
import { registryFixture } from '../helpers/registry.js'
import { MIN_NODE_MAJOR, nodeMajor } from '../../src/runtime.js'

t.test('the gateway process runs on Node.js 24 or newer and serves /v2/ over TLS', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const ready = gateway.logs.find((line) => line.msg === 'portier ready')
  const reported = String(ready?.node)
  t.match(reported, /^v\d+\.\d+\.\d+$/, 'the ready line names the Node.js version')
  t.ok(nodeMajor(reported.slice(1)) >= MIN_NODE_MAJOR, `gateway runs on ${reported}`)
  t.equal(reported, process.version, 'the same runtime as the tests')
  // The process itself, not only what it says: its executable is the node binary tap runs on.
  t.equal(readlinkSync(`/proc/${gateway.child.pid}/exe`), realpathSync(process.execPath))

  const status = await new Promise<{ status: number; api: string | undefined }>((resolve, reject) => {
    request({ host: '127.0.0.1', port: gateway.port, path: '/v2/', rejectUnauthorized: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, api: res.headers['docker-distribution-api-version'] as string | undefined }))
    })
      .on('error', reject)
      .end()
  })
  t.equal(status.status, 200)
  t.equal(status.api, 'registry/2.0')
})

t.test('an HTTPS upstream that offers HTTP/2 is still spoken to in HTTP/1.1 (undici 8 would negotiate h2)', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-node-runtime-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const cert = join(work, 'server.crt')
  const key = join(work, 'server.key')
  await writeFile(join(work, 'server.ext'), 'subjectAltName=IP:127.0.0.1\n')
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-days', '2', '-addext', 'subjectAltName=IP:127.0.0.1'])
  // distribution serves HTTP/2 over TLS by default (Go's net/http): the upstream offers h2 in ALPN.
  const registry = await registryFixture(t, { tls: { certificate: cert, key, ca: cert } })
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url, ca_bundle: cert }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  const data = randomBytes(300_000)
  const digest = sha256(data)
  const pushed = await client.send('POST', `/v2/h1/app/blobs/uploads/?digest=${encodeURIComponent(digest)}`, { headers: { 'content-type': 'application/octet-stream' }, body: data })
  t.equal(pushed.status, 201, 'pushed')
  const pulled = await client.send('GET', `/v2/h1/app/blobs/${digest}`)
  t.equal(pulled.status, 200, 'pulled')
  t.equal(sha256(pulled.body), digest, 'same bytes')

  // The registry's access log (combined format) names each request's protocol.
  const lines = (await registry.log()).split('\n').filter((line) => / "(GET|HEAD|POST|PUT|PATCH) \/v2\/h1\//.test(line))
  t.ok(lines.length >= 2, `the registry logged the gateway's requests (${lines.length})`)
  for (const line of lines) t.match(line, / HTTP\/1\.1" /, line.slice(0, 160))
})
