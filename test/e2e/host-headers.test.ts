// Host can't steer clients, and the gateway's own headers: Location, token realm and redirects never built from a Host the
// certificates (or server.hosts) do not cover; nosniff and HSTS; the UI cookie stays at the gateway; the whole Origin is
// compared at UI sign-in; plain HTTP to the HTTPS port gets a readable 400; first anonymous challenges are not warnings.
import t from 'tap'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runOk } from '../helpers/exec.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { registryFixture } from '../helpers/registry.js'
import { GatewayClient, sha256, type Reply } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const work = mkdtempSync(join(tmpdir(), 'portier-host-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
// tap's process tracking only slows the gateway's start-up.
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }
const PASSWORD = 'alice-secret-pw'
const htpasswd = join(work, 'htpasswd')
writeFileSync(htpasswd, `alice:${await hashPassword(PASSWORD, 5)}\n`)
const basic = { authorization: `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}` }

const registry = await registryFixture(t)

/** A plain HTTP/1.1 request with any Host value (fetch and undici refuse to send a malformed one). */
function plainRequest(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')))
    req.on('error', reject)
    req.end()
  })
}

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/**
 * A request over TLS with the Host header `host`. Node's client checks the certificate against the Host it sends;
 * here the certificate is checked for `localhost` (which it covers), like a client that connected by that name.
 */
function sendWithHost(client: GatewayClient, method: string, path: string, host: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ ...client.options(method, path, { ...headers, host }, false), servername: 'localhost' }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')))
    req.on('error', reject)
    req.end()
  })
}

function readyField(gateway: GatewayHandle, field: string): number {
  const ready = gateway.logs.find((line) => line.msg === 'portier ready')
  return Number(String(ready?.[field]).split(':').pop())
}

function originOf(location: string | string[] | undefined): string {
  return new URL(String(location)).origin
}

t.test('without public_url, a Host no certificate covers never reaches Location, realm or redirect', async (t) => {
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      upstreams: [{ url: registry.url }],
      server: { http_redirect_listen: '127.0.0.1:0' },
      auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())

  const start = (host: string): Promise<Answer> => sendWithHost(client, 'POST', '/v2/host/app/blobs/uploads/', host, basic)
  const evil = await start('evil.example')
  t.equal(evil.status, 202, 'the upload starts')
  t.notMatch(String(evil.headers.location), /evil\.example/, 'Location does not point at the Host the client sent')
  t.equal(originOf(evil.headers.location), gateway.url, 'it points at the default name (the listen address with the self-signed certificate)')
  const evilPort = await start(`evil.example:${gateway.port}`)
  t.equal(originOf(evilPort.headers.location), gateway.url, 'a port does not make it acceptable')
  const phish = await start('evil.example/phish?')
  t.equal(originOf(phish.headers.location), gateway.url, 'a Host with a path is not echoed')

  // The upload continues at the Location it got: a real registry stores the blob.
  const blob = Buffer.from('host-headers blob\n')
  const location = new URL(String(evil.headers.location))
  const put = await client.send('PUT', `${location.pathname}${location.search}&digest=${sha256(blob)}`, { headers: basic, body: blob })
  t.equal(put.status, 201, 'the upload finishes at that Location')
  t.equal(put.headers['docker-content-digest'], sha256(blob))
  const direct = await fetch(`${registry.url}/v2/host/app/blobs/${sha256(blob)}`)
  t.same(Buffer.from(await direct.arrayBuffer()), blob, 'the registry holds the bytes')

  // Names the self-signed certificate covers keep working as before.
  const localhost = await start(`localhost:${gateway.port}`)
  t.equal(originOf(localhost.headers.location), `https://localhost:${gateway.port}`, 'localhost (in the certificate) is kept')
  const loopback = await start(`127.0.0.1:${gateway.port}`)
  t.equal(originOf(loopback.headers.location), `https://127.0.0.1:${gateway.port}`, '127.0.0.1 (in the certificate) is kept')
  const v6 = await start(`[::1]:${gateway.port}`)
  t.equal(originOf(v6.headers.location), `https://[::1]:${gateway.port}`, '::1 (in the certificate) is kept')

  // The redirect listener builds its target the same way.
  const redirectPort = readyField(gateway, 'redirect_listen')
  t.ok(redirectPort > 0)
  const redirected = await plainRequest(redirectPort, '/ui/', { host: 'evil.example/phish?' })
  t.equal(redirected.status, 301)
  t.equal(redirected.headers.location, `https://127.0.0.1:${gateway.port}/ui/`, 'no phishing Location: the default name and the HTTPS port')
  const redirectedEvil = await plainRequest(redirectPort, '/v2/', { host: `evil.example:${redirectPort}` })
  t.equal(redirectedEvil.headers.location, `https://127.0.0.1:${gateway.port}/v2/`)
  const redirectedLocal = await plainRequest(redirectPort, '/v2/?n=1', { host: `localhost:${redirectPort}` })
  t.equal(redirectedLocal.headers.location, `https://localhost:${gateway.port}/v2/?n=1`, 'a covered name is kept, with the HTTPS port')

  await gateway.logsSettled()
  const refused = gateway.logs.filter((line) => line.level === 40 && line.host === 'evil.example')
  t.equal(refused.length, 1, 'the refused name is logged once, as a warning')
  t.equal(refused[0]?.using, `127.0.0.1:${gateway.port}`, 'with the name used instead')
})

t.test('server.hosts adds accepted names; public_url wins over any Host', async (t) => {
  const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], server: { hosts: ['registry.test', '*.apps.test'] } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const start = (host: string): Promise<Answer> => sendWithHost(client, 'POST', '/v2/host/hosts/blobs/uploads/', host)
  t.equal(originOf((await start(`registry.test:${gateway.port}`)).headers.location), `https://registry.test:${gateway.port}`, 'a configured name')
  t.equal(originOf((await start('cr.apps.test')).headers.location), 'https://cr.apps.test', 'a name under a configured wildcard')
  t.equal(originOf((await start('evil.example')).headers.location), `https://registry.test:${gateway.port}`, 'anything else: the first configured name')

  const pinned = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], server: { public_url: 'https://cr.example.org' } } })
  const pinnedClient = new GatewayClient(pinned)
  t.teardown(() => pinnedClient.close())
  const answer = await sendWithHost(pinnedClient, 'POST', '/v2/host/pinned/blobs/uploads/', 'evil.example')
  t.equal(originOf(answer.headers.location), 'https://cr.example.org')
})

t.test('token mode: the challenge realm never names an unaccepted Host', async (t) => {
  const keyDir = join(work, 'keys')
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      upstreams: [{ url: registry.url }],
      auth: { mode: 'token', htpasswd: { path: htpasswd }, token: { key: join(keyDir, 'token.key'), cert: join(keyDir, 'token.crt') }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] },
    },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const realmOf = (reply: Answer): string => /realm="([^"]*)"/.exec(String(reply.headers['www-authenticate']))?.[1] ?? ''
  const evil = await sendWithHost(client, 'GET', '/v2/', 'evil.example')
  t.equal(evil.status, 401)
  t.equal(realmOf(evil), `https://127.0.0.1:${gateway.port}/auth/token`, 'the realm is at the default name, not evil.example')
  const pushScope = await sendWithHost(client, 'POST', '/v2/host/app/blobs/uploads/', 'evil.example:443')
  t.equal(realmOf(pushScope), `https://127.0.0.1:${gateway.port}/auth/token`)
  const local = await sendWithHost(client, 'GET', '/v2/', `localhost:${gateway.port}`)
  t.equal(realmOf(local), `https://localhost:${gateway.port}/auth/token`, 'a covered name still gets its own realm')
})

t.test('nosniff on every registry answer; no HSTS with the self-signed certificate unless configured', async (t) => {
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const answers = {
    'proxied 200': await client.send('GET', '/v2/', { headers: basic }),
    'proxied 404 from the registry': await client.send('GET', '/v2/host/none/manifests/latest', { headers: basic }),
    "Portier's own 401": await client.send('GET', '/v2/'),
    "Portier's own 400": await client.send('GET', '/v2/UPPER/manifests/latest', { headers: basic }),
  }
  t.equal(answers['proxied 200'].status, 200)
  t.equal(answers['proxied 404 from the registry'].errorCode(), 'MANIFEST_UNKNOWN')
  t.equal(answers["Portier's own 401"].status, 401)
  t.equal(answers["Portier's own 400"].status, 400)
  for (const [name, reply] of Object.entries(answers)) {
    t.equal(reply.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`)
    t.equal(reply.headers['strict-transport-security'], undefined, `${name}: no HSTS (auto, self-signed)`)
  }

  const always = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], server: { hsts: { send: 'always', max_age: '1d', include_subdomains: true } } } })
  const alwaysClient = new GatewayClient(always)
  t.teardown(() => alwaysClient.close())
  const forced = await alwaysClient.send('GET', '/v2/')
  t.equal(forced.headers['strict-transport-security'], 'max-age=86400; includeSubDomains', 'send: always, as configured')
})

t.test('HSTS by default with a certificate clients can verify', async (t) => {
  const dir = join(work, 'ca')
  mkdirSync(dir, { recursive: true })
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=portier test CA', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt')])
  await runOk('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-keyout', join(dir, 'leaf.key'), '-out', join(dir, 'leaf.csr')])
  writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await runOk('openssl', ['x509', '-req', '-in', join(dir, 'leaf.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', join(dir, 'leaf.ext'), '-out', join(dir, 'leaf.crt')])
  const ca = readFileSync(join(dir, 'ca.crt'))
  const tls = { certificates: [{ cert: join(dir, 'leaf.crt'), key: join(dir, 'leaf.key') }] }

  const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], tls } })
  const get = (port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: IncomingHttpHeaders }> =>
    new Promise((resolve, reject) => {
      // The client verifies the certificate against the CA: this is what a real client sees.
      const req = httpsRequest({ host: '127.0.0.1', port, path, headers, ca, agent: false }, (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }))
      })
      req.on('error', reject)
      req.end()
    })
  const ok = await get(gateway.port, '/v2/')
  t.equal(ok.status, 200, 'the CA-issued certificate verifies')
  t.equal(ok.headers['strict-transport-security'], 'max-age=31536000', 'HSTS on by default (auto)')
  const notFound = await get(gateway.port, '/v2/UPPER/tags/list')
  t.equal(notFound.status, 400)
  t.equal(notFound.headers['strict-transport-security'], 'max-age=31536000', "on Portier's own errors too")
  t.equal(notFound.headers['x-content-type-options'], 'nosniff')
  const started = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: gateway.port, path: '/v2/host/ca/blobs/uploads/', method: 'POST', headers: { host: 'evil.example' }, ca, servername: 'localhost', agent: false }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.headers))
    })
    req.on('error', reject)
    req.end()
  })
  t.equal(originOf(started.location), `https://localhost:${gateway.port}`, "an unaccepted Host gets the certificate's first name")

  const never = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], tls, server: { hsts: { send: 'never' } } } })
  const off = await get(never.port, '/v2/')
  t.equal(off.status, 200)
  t.equal(off.headers['strict-transport-security'], undefined, 'send: never')
  t.equal(off.headers['x-content-type-options'], 'nosniff')
})

t.test("Portier's UI cookie never reaches the registry", async (t) => {
  const seen: IncomingHttpHeaders[] = []
  const recorder = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.headers)
    req.resume()
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '2', 'Docker-Distribution-Api-Version': 'registry/2.0' })
    res.end('{}')
  })
  await new Promise<void>((resolve) => recorder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    recorder.closeAllConnections()
    recorder.close()
  })
  const port = (recorder.address() as { port: number }).port
  const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: `http://127.0.0.1:${port}` }] } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const through = async (cookie: string): Promise<IncomingHttpHeaders | undefined> => {
    const marker = `m${Math.random().toString(36).slice(2)}`
    // Not GET /v2/: the gateway may answer that itself while the upstream is healthy.
    const reply = await client.send('GET', '/v2/echo/app/tags/list', { headers: { cookie, 'x-request-id': marker } })
    t.equal(reply.status, 200)
    return seen.find((headers) => headers['x-request-id'] === marker)
  }
  const ours = await through('__Host-portier-ui=v1.eyJ1IjoiYWxpY2UifQ.c2lnbmF0dXJl')
  t.ok(ours, 'the request reached the upstream')
  t.equal(ours?.cookie, undefined, 'only the UI cookie: no Cookie header upstream')
  const mixed = await through('theme=dark; __Host-portier-ui=v1.eyJ1IjoiYWxpY2UifQ.c2lnbmF0dXJl; lang=en')
  t.equal(mixed?.cookie, 'theme=dark; lang=en', 'other cookies pass')
})

t.test('UI sign-in: an http:// Origin for the https UI is another origin', async (t) => {
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const login = (origin: string): Promise<Reply> =>
    client.send('POST', '/ui/api/login', { headers: { origin, 'content-type': 'application/json' }, body: JSON.stringify({ username: 'alice', password: PASSWORD }) })
  const plain = await login(`http://127.0.0.1:${gateway.port}`)
  t.equal(plain.status, 403, 'http:// origin refused')
  t.equal(plain.errorCode(), 'DENIED')
  t.equal(plain.headers['set-cookie'], undefined, 'and no session')
  const secure = await login(gateway.url)
  t.equal(secure.status, 200, 'the https:// origin signs in')
  t.match(String(secure.headers['set-cookie']), /^__Host-portier-ui=/)
})

t.test('plain HTTP to the HTTPS port gets a readable 400; TLS keeps working', async (t) => {
  const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }] } })
  const answer = await plainRequest(gateway.port, '/v2/', { host: gateway.host })
  t.equal(answer.status, 400)
  t.match(String(answer.headers['content-type']), /^application\/json/)
  t.equal(answer.headers['docker-distribution-api-version'], 'registry/2.0')
  const body = JSON.parse(answer.body) as { errors: Array<{ code: string; message: string; detail: { use: string } }> }
  t.equal(body.errors[0]?.code, 'UNSUPPORTED')
  t.match(body.errors[0]?.message, /HTTPS/)
  t.equal(body.errors[0]?.detail.use, `https://127.0.0.1:${gateway.port}`, 'it names the https:// address (not one from the Host header)')
  const evil = await plainRequest(gateway.port, '/v2/', { host: 'evil.example' })
  t.equal(evil.status, 400)
  t.notMatch(evil.body, /evil/, 'the Host is not echoed')

  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const tlsAnswer = await client.send('GET', '/v2/')
  t.equal(tlsAnswer.status, 200, 'HTTPS on the same port still answers')
  await gateway.logsSettled()
  const logged = gateway.logs.filter((line) => line.msg === 'plain HTTP request on the HTTPS listener; answered 400')
  t.equal(logged.length, 2, 'logged once per request')
})

t.test("an anonymous client's first challenge is logged as info; wrong credentials stay warnings", async (t) => {
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd }, acl: [{ match: { account: 'alice' }, actions: ['*'] }] } },
  })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const anonymous = await client.send('GET', '/v2/', { headers: { 'x-request-id': 'first-challenge' } })
  t.equal(anonymous.status, 401)
  const wrong = await client.send('GET', '/v2/', { headers: { 'x-request-id': 'wrong-password', authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` } })
  t.equal(wrong.status, 401)
  const first = await gateway.waitForLog((line) => line.request_id === 'first-challenge')
  t.equal(first.level, 30, 'info')
  t.equal(first.status, 401)
  const failed = await gateway.waitForLog((line) => line.request_id === 'wrong-password')
  t.equal(failed.level, 40, 'a wrong password is still a warning')
})
