// Automatic HTTPS against a real ACME CA (pebble) on loopback: HTTP-01 and TLS-ALPN-01 issuance, a
// skopeo push verified against pebble's root, renewal without dropping connections, a CA that is
// down at start, a name the CA refuses, and two instances sharing one storage directory.
import t, { type Test } from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { run } from '../helpers/exec.js'
import { gatewayFixture, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { pebbleFixture, type PebbleHandle } from '../helpers/pebble.js'
import { freePortBelowEphemeral } from '../helpers/ports.js'
import { registryFixture } from '../helpers/registry.js'
import { connectProxyFixture } from '../helpers/connect-proxy.js'
import { SKOPEO_BIN, skopeoCopyArgs } from '../helpers/skopeo.js'
import { acmePaths } from '../../src/tls/acme/storage.js'
import type { LockHolder } from '../../src/tls/acme/lock.js'

const DOMAIN = 'registry.test'
const work = mkdtempSync(join(tmpdir(), 'portier-acme-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
// tap's process tracking only slows the gateway's start-up.
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }
const ISSUE_TIMEOUT_MS = 60_000

interface Ports {
  tls: number
  http: number
}

async function ports(): Promise<Ports> {
  // Below the ephemeral range: both stay unbound while pebble starts, and a port from that range was once taken
  // meanwhile as the source port of another test's connection (EADDRINUSE at the gateway's start).
  return { tls: await freePortBelowEphemeral(), http: await freePortBelowEphemeral() }
}

function acmeConfig(pebble: PebbleHandle, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    enabled: true,
    directory_url: pebble.directoryUrl,
    ca_bundle: pebble.caBundle,
    email: 'ops@portier.test',
    domains: [DOMAIN],
    // The pre-check resolves registry.test through the system resolver, which does not know it.
    self_check: false,
    retry_min: '1s',
    retry_max: '4s',
    ...extra,
  }
}

interface Presented {
  fingerprint: string
  issuer: string
  authorized: boolean
  authorizationError: string | undefined
  pem: string
}

/** One new handshake with SNI `servername`; `ca` given = verify against it (hostname included). */
function handshake(port: number, servername: string, ca?: string): Promise<Presented> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ...(ca ? { ca } : {}) })
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')))
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate()
      const pem = `-----BEGIN CERTIFICATE-----\n${peer.raw.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE-----\n`
      const error = socket.authorizationError
      resolve({
        fingerprint: peer.fingerprint256,
        issuer: String(peer.issuer?.CN ?? ''),
        authorized: socket.authorized,
        authorizationError: error === null || error === undefined ? undefined : String(error),
        pem,
      })
      socket.end()
    })
    socket.once('error', reject)
  })
}

function waitForIssued(gateway: GatewayHandle, timeoutMs = ISSUE_TIMEOUT_MS): Promise<LogLine> {
  return gateway.waitForLog((line) => line.msg === 'ACME certificate issued' || line.msg === 'ACME certificate renewed', timeoutMs)
}

function httpGet(port: number, path: string, host: string): Promise<{ status: number; body: string; location: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { host } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('HTTP-01: self-signed until pebble issues, then skopeo pushes and pulls with full verification against pebble\'s root', async (t) => {
  const listen = await ports()
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls })
  const registry = await registryFixture(t)
  const proxy = await connectProxyFixture(t)
  const started = Date.now()
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}`, public_url: `https://${DOMAIN}:${listen.tls}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { challenge: 'http-01' }) },
    },
  })
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'serving a self-signed certificate until ACME issues one'), 'start-up says it serves self-signed for now')
  t.match(gateway.stderr(), /certificates: ACME \(http-01\) from https:\/\/127\.0\.0\.1:\d+\/dir for registry\.test; serving a self-signed certificate until the first one is issued/, 'and so does the banner')

  const issued = await waitForIssued(gateway)
  t.comment(`HTTP-01 issuance against pebble: ${String(issued.ms)} ms from order start to certificate served (${Date.now() - started} ms from gateway spawn)`)
  t.ok(gateway.logs.some((line) => line.msg === 'answered ACME http-01 challenge'), 'pebble fetched the http-01 token from the plain-HTTP listener')

  const root = await pebble.root()
  const served = await handshake(listen.tls, DOMAIN, root)
  t.ok(served.authorized, `the served chain verifies against pebble's root for ${DOMAIN} (${served.authorizationError ?? 'ok'})`)
  t.match(served.issuer, /Pebble Intermediate CA/, 'issued by pebble')
  t.equal(served.fingerprint, issued.sha256, 'the handshake presents the certificate the log announced')
  t.ok(new X509Certificate(served.pem).checkHost(DOMAIN), `the certificate names ${DOMAIN}`)

  // Everything else on the plain-HTTP listener still redirects to HTTPS.
  const redirect = await httpGet(listen.http, '/v2/', `${DOMAIN}:${listen.http}`)
  t.equal(redirect.status, 301)
  t.equal(redirect.location, `https://${DOMAIN}:${listen.tls}/v2/`)
  const unknownToken = await httpGet(listen.http, '/.well-known/acme-challenge/not-a-pending-token', DOMAIN)
  t.equal(unknownToken.status, 404, 'an unknown challenge token is a 404, not a redirect')

  // Keys on disk are private.
  const storage = join(gateway.cwd, 'certs', 'acme')
  const caDir = join(storage, pebble.directoryUrl.replace(/^https:\/\//, '').replace(/[:/]+/g, '-'))
  t.equal(statSync(join(caDir, 'account.key')).mode & 0o777, 0o600, 'account key mode 0600')
  t.equal(statSync(join(caDir, DOMAIN, 'key.pem')).mode & 0o777, 0o600, 'certificate key mode 0600')

  // skopeo through a CONNECT proxy that maps registry.test to 127.0.0.1: TLS verification stays on.
  const certDir = join(work, 'http01-ca')
  mkdirSync(certDir, { recursive: true })
  writeFileSync(join(certDir, 'pebble-root.crt'), root)
  const image = await makeOciLayout(join(work, 'http01-image'), { layers: [2 * 1024 * 1024, 4096] })
  const ref = `docker://${DOMAIN}:${listen.tls}/acme/http01:v1`
  const skopeoEnv = { ...process.env, HTTPS_PROXY: proxy.url, https_proxy: proxy.url, NO_PROXY: '', no_proxy: '' }
  const push = await run(SKOPEO_BIN, skopeoCopyArgs(`oci:${image.dir}:latest`, ref, { destCertDir: certDir }), { env: skopeoEnv })
  t.equal(push.code, 0, `skopeo push with verification succeeds${push.code === 0 ? '' : `: ${push.stderr}`}`)
  t.notMatch(push.stderr, /tls-verify/, 'no TLS verification override')
  t.ok(proxy.tunnels.includes(`${DOMAIN}:${listen.tls}`), 'skopeo reached Portier by its ACME name')
  const pull = await run(SKOPEO_BIN, skopeoCopyArgs(ref, `oci:${join(work, 'http01-back')}:latest`, { srcCertDir: certDir }), { env: skopeoEnv })
  t.equal(pull.code, 0, `skopeo pull with verification succeeds${pull.code === 0 ? '' : `: ${pull.stderr}`}`)
  const back = await readOciLayout(join(work, 'http01-back'), 'latest')
  t.equal(back.manifestDigest, image.manifestDigest, 'manifest digest survives')
  t.same(back.layerDigests, image.layerDigests, 'layer digests survive')
})

interface Reply {
  status: number
  socket: TLSSocket
  reused: boolean
  peerFingerprint: string
}

/** GET over a keep-alive agent (verifying against `ca` for DOMAIN), reporting which socket carried it. */
function agentGet(agent: Agent, port: number, path: string, ca: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, agent, servername: DOMAIN, ca, headers: { host: `${DOMAIN}:${port}` } }, (res) => {
      res.resume()
      res.on('end', () => {
        const socket = req.socket as TLSSocket
        resolve({ status: res.statusCode ?? 0, socket, reused: req.reusedSocket, peerFingerprint: socket.getPeerCertificate().fingerprint256 })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

async function pushWithVerification(t: Test, options: { port: number; root: string; proxyUrl: string; name: string }): Promise<void> {
  const certDir = join(work, `${options.name}-ca`)
  mkdirSync(certDir, { recursive: true })
  writeFileSync(join(certDir, 'pebble-root.crt'), options.root)
  const image = await makeOciLayout(join(work, `${options.name}-image`), { layers: [1024 * 1024] })
  const ref = `docker://${DOMAIN}:${options.port}/acme/${options.name}:v1`
  const skopeoEnv = { ...process.env, HTTPS_PROXY: options.proxyUrl, https_proxy: options.proxyUrl, NO_PROXY: '', no_proxy: '' }
  const push = await run(SKOPEO_BIN, skopeoCopyArgs(`oci:${image.dir}:latest`, ref, { destCertDir: certDir }), { env: skopeoEnv })
  t.equal(push.code, 0, `skopeo push verified against pebble's root succeeds${push.code === 0 ? '' : `: ${push.stderr}`}`)
}

t.test('TLS-ALPN-01: pebble validates on the TLS port itself; no plain-HTTP listener needed', async (t) => {
  const listen = await ports()
  // httpPort points at a port nobody listens on: an http-01 validation could not succeed.
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls })
  const registry = await registryFixture(t)
  const proxy = await connectProxyFixture(t)
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { challenge: 'tls-alpn-01' }) },
    },
  })
  t.notOk(gateway.logs.find((line) => line.msg === 'portier ready')?.redirect_listen, 'no plain-HTTP listener')
  const issued = await waitForIssued(gateway)
  t.comment(`TLS-ALPN-01 issuance against pebble: ${String(issued.ms)} ms from order start to certificate served`)
  await gateway.logsSettled()
  const answered = gateway.logs.filter((line) => line.msg === 'answered ACME tls-alpn-01 challenge')
  t.ok(answered.length >= 1, 'pebble completed an acme-tls/1 handshake on the TLS port')
  t.equal(answered[0]?.servername, DOMAIN, 'for the ordered name')
  t.notOk(gateway.logs.some((line) => line.msg === 'answered ACME http-01 challenge'), 'no http-01 validation happened')

  const root = await pebble.root()
  const served = await handshake(listen.tls, DOMAIN, root)
  t.ok(served.authorized, `ordinary clients on the same port get the ACME certificate, verified (${served.authorizationError ?? 'ok'})`)
  t.equal(served.fingerprint, issued.sha256)
  // A client offering acme-tls/1 for a name with no pending challenge is refused, not served.
  const refused = await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: listen.tls, servername: DOMAIN, ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false })
    socket.once('secureConnect', () => {
      socket.destroy()
      resolve('handshake completed')
    })
    socket.once('error', (error: Error) => resolve(`error: ${error.message}`))
    socket.once('close', () => resolve('closed'))
  })
  t.not(refused, 'handshake completed', `acme-tls/1 without a pending challenge gets no certificate (${refused})`)
  await pushWithVerification(t, { port: listen.tls, root, proxyUrl: proxy.url, name: 'alpn' })
})

t.test('renewal: a new certificate is served on the next handshake while a keep-alive connection opened before keeps working', async (t) => {
  const listen = await ports()
  // 40 s certificates renewed when 35 s are left: renewal comes about 5 s after each issuance.
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls, validitySeconds: 40 })
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { renew_before: '35s' }) },
    },
  })
  const first = await gateway.waitForLog((line) => line.msg === 'ACME certificate issued', ISSUE_TIMEOUT_MS)
  const root = await pebble.root()
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const before = await agentGet(agent, listen.tls, '/v2/', root)
  t.equal(before.status, 200)
  t.equal(before.peerFingerprint, first.sha256, 'the keep-alive connection was opened on the first certificate')

  const renewed = await gateway.waitForLog((line) => line.msg === 'ACME certificate renewed', ISSUE_TIMEOUT_MS)
  t.not(renewed.sha256, first.sha256, 'renewal brought a different certificate')
  const fresh = await handshake(listen.tls, DOMAIN, root)
  t.ok(fresh.authorized, 'the renewed chain verifies')
  t.not(fresh.fingerprint, first.sha256, 'the next handshake presents the renewed certificate')

  const after = await agentGet(agent, listen.tls, '/v2/', root)
  t.equal(after.status, 200, 'the connection opened before renewal still serves requests')
  t.ok(after.reused, 'on the same keep-alive socket')
  t.equal(after.socket, before.socket)
  t.equal(after.peerFingerprint, first.sha256, 'still on the certificate it was opened with')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'renewing the ACME certificate'), 'the renewal is logged')
})

t.test('pebble down at start: Portier serves self-signed, logs the failure with a retry time, then gets the certificate once pebble is up', async (t) => {
  const listen = await ports()
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls, start: false })
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble) },
    },
  })
  const placeholder = await handshake(listen.tls, DOMAIN)
  const placeholderCert = new X509Certificate(placeholder.pem)
  t.equal(placeholderCert.issuer, placeholderCert.subject, 'a self-signed certificate is served meanwhile')
  t.ok(placeholderCert.checkHost(DOMAIN), 'naming the ACME domain')
  const status = await new Promise<number>((resolve, reject) => {
    httpsRequest({ host: '127.0.0.1', port: listen.tls, path: '/v2/', rejectUnauthorized: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    }).on('error', reject).end()
  })
  t.equal(status, 200, 'the registry API is served while the CA is unreachable')

  const failed = await gateway.waitForLog((line) => line.msg.startsWith('ACME order failed; next attempt at'), ISSUE_TIMEOUT_MS)
  t.match(String(failed.err), /ECONNREFUSED|connect/i, 'the log line says why')
  t.ok(Date.parse(String(failed.nextAttemptAt)) > Date.parse(String(failed.time)), 'and when it tries again')
  t.equal(gateway.child.exitCode, null, 'still running')

  await pebble.start()
  const issued = await waitForIssued(gateway)
  const served = await handshake(listen.tls, DOMAIN, await pebble.root())
  t.ok(served.authorized, 'the certificate from pebble is served once it came up')
  t.equal(served.fingerprint, issued.sha256)
  const metrics = await (await fetch(`${gateway.adminUrl}/metrics`)).text()
  t.match(metrics, /^portier_acme_certificates_total\{kind="issued"\} 1$/m, 'the issuance is counted')
  t.match(metrics, /^portier_acme_failures_total [1-9]\d*$/m, 'and so are the failures while pebble was down')
  t.match(metrics, /^portier_tls_certificate_expiry_timestamp_seconds\{name="registry\.test"\} \d+$/m, 'the served certificate\'s expiry is exported')
})

t.test('a name the CA refuses: a clear log line and a growing retry schedule, never a crash', async (t) => {
  const listen = await ports()
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls, blocklist: ['refused.test'] })
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { domains: ['refused.test'] }) },
    },
  })
  const isFailure = (attempt: number) => (line: LogLine) => line.msg.startsWith('ACME order failed') && line.attempt === attempt
  const first = await gateway.waitForLog(isFailure(1), ISSUE_TIMEOUT_MS)
  t.match(String(first.err), /refused\.test|policy|forbid/i, `the CA's reason is logged: ${String(first.err)}`)
  const second = await gateway.waitForLog(isFailure(2), ISSUE_TIMEOUT_MS)
  const gap = (line: LogLine): number => Date.parse(String(line.nextAttemptAt)) - Date.parse(String(line.time))
  t.ok(gap(second) > gap(first), `the retry delay grows (${gap(first)} ms, then ${gap(second)} ms)`)
  t.equal(gateway.child.exitCode, null, 'still running')
  const placeholder = new X509Certificate((await handshake(listen.tls, 'refused.test')).pem)
  t.equal(placeholder.issuer, placeholder.subject, 'still serving the self-signed certificate')
  const ready = await fetch(`${gateway.adminUrl}/readyz`)
  const body = (await ready.json()) as { checks: Array<{ name: string; ready: boolean; detail?: { acme?: { state?: string; serving?: string; lastError?: string } } }> }
  const certificate = body.checks.find((check) => check.name === 'certificate')
  t.match(certificate, { ready: true, detail: { acme: { state: 'failed', serving: 'placeholder' } } }, '/readyz detail says a placeholder is served and why')
  t.ok(certificate?.detail?.acme?.lastError, 'with the last error')
})

t.test('two instances sharing one storage: one orders, the other picks the certificate up', async (t) => {
  const a = await ports()
  const b = await ports()
  // pebble validates only against instance A's listeners, whichever instance ordered.
  const pebble = await pebbleFixture(t, { httpPort: a.http, tlsPort: a.tls })
  const registry = await registryFixture(t)
  const storage = join(work, 'shared-storage')
  const config = (listen: Ports): Record<string, unknown> => ({
    server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
    upstreams: [{ url: registry.url }],
    tls: { acme: acmeConfig(pebble, { storage }) },
  })
  // A third instance holds the order lock at start, so neither orders before both listen (pebble
  // checks only A's ports: an order by B while A is still starting would fail and be retried by A).
  // Once both are waiting for it, it goes away and both race for the lock on their next poll.
  const lock = acmePaths(storage, pebble.directoryUrl, [DOMAIN]).lock
  mkdirSync(dirname(lock), { recursive: true })
  writeFileSync(lock, JSON.stringify({ host: 'instance-c', pid: 1, since: new Date().toISOString() } satisfies LockHolder))
  const [first, second] = await Promise.all([gatewayFixture(t, { env, config: config(a) }), gatewayFixture(t, { env, config: config(b) })])
  const both = [first, second]
  const waiting = (line: LogLine): boolean => line.msg.startsWith('another instance (instance-c pid 1) is ordering')
  await Promise.all(both.map((gateway) => gateway.waitForLog(waiting, ISSUE_TIMEOUT_MS)))
  rmSync(lock)
  const servedLine = (line: LogLine): boolean =>
    ['ACME certificate issued', 'serving the ACME certificate found in storage', 'serving the stored ACME certificate'].includes(line.msg)
  const lines = await Promise.all(both.map((gateway) => gateway.waitForLog(servedLine, ISSUE_TIMEOUT_MS)))
  for (const gateway of both) await gateway.logsSettled()
  const orders = both.map((gateway) => gateway.logs.filter((line) => line.msg === 'ordering an ACME certificate').length)
  // On failure, the ACME lines of both instances say why (tap prints `extra` only for failed assertions).
  const acmeLines = both.map((gateway) => gateway.logs.filter((line) => /ACME|acme|lock|another instance/.test(line.msg)).map((line) => `${JSON.stringify(line.time)} ${line.msg} ${line.err === undefined ? '' : JSON.stringify(line.err)}`))
  t.same(orders.slice().sort(), [0, 1], `exactly one instance ordered (A: ${orders[0]}, B: ${orders[1]})`, { A: acmeLines[0], B: acmeLines[1] })
  t.equal(lines[0]?.sha256, lines[1]?.sha256, 'both serve the same certificate')
  const root = await pebble.root()
  for (const [index, listen] of [a, b].entries()) {
    const served = await handshake(listen.tls, DOMAIN, root)
    t.ok(served.authorized, `instance ${'AB'[index]} presents the verified ACME certificate`)
    t.equal(served.fingerprint, lines[0]?.sha256)
  }
  const answeredBy = first.logs.some((line) => line.msg === 'answered ACME http-01 challenge') ? 'A' : 'nobody'
  t.equal(answeredBy, 'A', 'instance A answered the validation')
  t.comment(orders[1] === 1 ? 'B ordered; A answered its http-01 token from the shared storage' : 'A ordered; B picked the certificate up from storage')
})

t.test('external account binding: a CA that requires it issues with the configured kid and key, and refuses without them', async (t) => {
  const listen = await ports()
  const hmacKey = 'zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W'
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls, eab: { 'kid-portier': hmacKey } })
  const registry = await registryFixture(t)
  const without = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: '127.0.0.1:0' },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { challenge: 'tls-alpn-01' }) },
    },
  })
  const refused = await without.waitForLog((line) => line.msg.startsWith('ACME order failed'), ISSUE_TIMEOUT_MS)
  t.match(String(refused.err), /externalAccountBinding/, `without EAB the CA's reason is logged: ${String(refused.err)}`)
  await without.stop()

  const gateway = await gatewayFixture(t, {
    env,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble, { eab: { kid: 'kid-portier', hmac_key: hmacKey } }) },
    },
  })
  const issued = await waitForIssued(gateway)
  const served = await handshake(listen.tls, DOMAIN, await pebble.root())
  t.ok(served.authorized, 'issued with external account binding')
  t.equal(served.fingerprint, issued.sha256)
})

t.test('restart: the stored certificate is served from the first handshake and nothing is ordered', async (t) => {
  const listen = await ports()
  const pebble = await pebbleFixture(t, { httpPort: listen.http, tlsPort: listen.tls })
  const registry = await registryFixture(t)
  const cwd = mkdtempSync(join(work, 'restart-'))
  const options = {
    env,
    cwd,
    config: {
      server: { listen: `127.0.0.1:${listen.tls}`, http_redirect_listen: `127.0.0.1:${listen.http}` },
      upstreams: [{ url: registry.url }],
      tls: { acme: acmeConfig(pebble) },
    },
  }
  const first = await gatewayFixture(t, options)
  const issued = await waitForIssued(first)
  await first.stop()

  const second = await gatewayFixture(t, options)
  await second.logsSettled()
  const stored = second.logs.find((line) => line.msg === 'serving the stored ACME certificate')
  t.ok(stored, 'start-up serves the stored certificate')
  t.equal(stored?.sha256, issued.sha256, 'the one issued before')
  t.notOk(second.logs.some((line) => line.msg === 'serving a self-signed certificate until ACME issues one'), 'no self-signed placeholder')
  t.match(second.stderr(), /serving the stored certificate, valid until/, 'the banner says so')
  const served = await handshake(listen.tls, DOMAIN, await pebble.root())
  t.ok(served.authorized, 'the first handshake after restart verifies')
  t.equal(served.fingerprint, issued.sha256)
  t.notOk(second.logs.some((line) => line.msg === 'ordering an ACME certificate'), 'no new order')
})
