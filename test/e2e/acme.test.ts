// Automatic HTTPS against a real ACME CA (pebble) on loopback: HTTP-01 and TLS-ALPN-01 issuance, a
// skopeo push verified against pebble's root, renewal without dropping connections, a CA that is
// down at start, a name the CA refuses, and two instances sharing one storage directory.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { run } from '../helpers/exec.js'
import { gatewayFixture, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { pebbleFixture, type PebbleHandle } from '../helpers/pebble.js'
import { freePort } from '../helpers/ports.js'
import { registryFixture } from '../helpers/registry.js'
import { connectProxyFixture } from '../helpers/connect-proxy.js'
import { SKOPEO_BIN, skopeoCopyArgs } from '../helpers/skopeo.js'

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
  return { tls: await freePort(), http: await freePort() }
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
  t.ok(gateway.logs.some((line) => line.msg === 'serving a self-signed certificate until ACME issues one'), 'start-up says it serves self-signed for now')

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
