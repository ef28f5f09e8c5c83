// The challenge responder on real listeners: TLS-ALPN-01 answered on a TLS port that keeps serving ordinary
// clients (even with a ClientHello cut into single bytes), and challenges answered from shared storage.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https'
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import acme from 'acme-client'
import { createLogger } from '../../src/observe/log.js'
import { ChallengeResponder } from '../../src/tls/acme/challenges.js'
import { runOk } from '../helpers/exec.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-acme-challenges-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const log = createLogger('silent')
const ACME_IDENTIFIER_OID = '1.3.6.1.5.5.7.1.31'

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()))
}

/** A TCP relay that forwards client bytes to `port` one byte per write, so the server reads a hello in pieces. */
async function tricklingRelay(port: number): Promise<{ port: number; server: Server }> {
  const server = createNetServer((client: Socket) => {
    const upstream = netConnect(port, '127.0.0.1')
    upstream.pipe(client)
    client.on('data', (chunk: Buffer) => {
      client.pause()
      let i = 0
      const next = (): void => {
        if (i >= chunk.length) return void client.resume()
        upstream.write(chunk.subarray(i, ++i))
        setTimeout(next, 1)
      }
      next()
    })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
    client.on('end', () => upstream.end())
  })
  return { port: await listen(server), server }
}

async function alpnPair(domain: string, keyAuthorization: string): Promise<{ key: string; cert: string }> {
  const authz = { identifier: { type: 'dns', value: domain }, status: 'pending', expires: '', challenges: [], url: '' } as unknown as acme.Authorization
  const [key, cert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey())
  return { key: key.toString(), cert: cert.toString() }
}

t.test('TLS-ALPN-01 on a TLS port that keeps serving ordinary clients', async (t) => {
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.crt'), '-days', '1', '-subj', '/CN=registry.test', '-addext', 'subjectAltName=DNS:registry.test'])
  const responder = new ChallengeResponder(dir, log)
  const server = createHttpsServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.crt')) }, (_req, res) => res.end('registry'))
  responder.interceptTlsAlpn(server)
  const port = await listen(server)
  t.teardown(() => {
    server.closeAllConnections()
    return close(server)
  })

  const pair = await alpnPair('registry.test', 'token.thumbprint')
  responder.addAlpn('registry.test', pair.key, pair.cert)
  const validation = await new Promise<{ protocol: string | false | null; cert: X509Certificate }>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'registry.test', ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false })
    socket.once('secureConnect', () => {
      resolve({ protocol: socket.alpnProtocol, cert: new X509Certificate(socket.getPeerCertificate().raw) })
      socket.destroy()
    })
    socket.once('error', reject)
  })
  t.equal(validation.protocol, 'acme-tls/1', 'acme-tls/1 negotiated')
  t.equal(validation.cert.fingerprint256, new X509Certificate(pair.cert).fingerprint256, 'the challenge certificate is presented')
  t.ok(validation.cert.raw.includes(Buffer.from([0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f])), `it carries the acmeIdentifier extension (${ACME_IDENTIFIER_OID})`)
  t.equal(responder.counters.tlsAlpn01Answered, 1)

  const relay = await tricklingRelay(port)
  t.teardown(() => close(relay.server))
  const ordinary = await new Promise<{ status: number; body: string; cn: string }>((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: relay.port, path: '/v2/', servername: 'registry.test', ca: readFileSync(join(dir, 'server.crt')), agent: false }, (res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => (body += chunk.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cn: String((req.socket as TLSSocket).getPeerCertificate().subject?.CN) }))
    })
    req.on('error', reject)
    req.end()
  })
  t.same(ordinary, { status: 200, body: 'registry', cn: 'registry.test' }, 'a hello read one byte at a time still reaches the server, verified')

  responder.removeAlpn('registry.test')
  const after = await new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'registry.test', ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false })
    socket.once('secureConnect', () => {
      socket.destroy()
      resolve('handshake')
    })
    socket.once('error', () => resolve('refused'))
    socket.once('close', () => resolve('refused'))
  })
  t.equal(after, 'refused', 'once removed, acme-tls/1 gets nothing')
})

t.test('challenges written by one instance are answered by another sharing the storage', async (t) => {
  const shared = join(dir, 'shared')
  mkdirSync(shared)
  const ordering = new ChallengeResponder(shared, log)
  const answering = new ChallengeResponder(shared, log)

  const http = createHttpServer((req, res) => {
    if (!answering.answerHttp(req, res)) {
      res.writeHead(301, { Location: 'https://elsewhere/' })
      res.end()
    }
  })
  const httpPort = await listen(http)
  t.teardown(() => close(http))
  const get = (path: string): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port: httpPort, path, agent: false }, (res) => {
        let body = ''
        res.on('data', (chunk: Buffer) => (body += chunk.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      }).on('error', reject).end()
    })
  ordering.addHttp('tok_EN-1', 'tok_EN-1.thumb')
  t.same(await get('/.well-known/acme-challenge/tok_EN-1'), { status: 200, body: 'tok_EN-1.thumb' }, 'http-01 answered from storage')
  t.equal((await get('/.well-known/acme-challenge/other')).status, 404, 'unknown token: 404')
  t.equal((await get('/.well-known/acme-challenge/../../etc/passwd')).status, 301, 'no path tricks: not a challenge path at all')
  ordering.removeHttp('tok_EN-1')
  t.equal((await get('/.well-known/acme-challenge/tok_EN-1')).status, 404, 'removed from storage too')

  const tls = createHttpsServer({}, (_req, res) => res.end())
  answering.interceptTlsAlpn(tls)
  const tlsPort = await listen(tls)
  t.teardown(() => close(tls))
  const pair = await alpnPair('shared.test', 'x.y')
  ordering.addAlpn('shared.test', pair.key, pair.cert)
  const fingerprint = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: tlsPort, servername: 'shared.test', ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false })
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate().fingerprint256)
      socket.destroy()
    })
    socket.once('error', reject)
  })
  t.equal(fingerprint, new X509Certificate(pair.cert).fingerprint256, 'tls-alpn-01 answered from storage')
  ordering.removeAlpn('shared.test')
})
