// TLS at the gateway: SNI certificate choice, hot reload without dropping connections, self-signed default, TLS 1.2 floor, HTTP redirect, plain HTTP mode.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { createConnection, type Socket } from 'node:net'
import { runOk } from '../helpers/exec.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { registryFixture } from '../helpers/registry.js'

const work = mkdtempSync(join(tmpdir(), 'portier-tls-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
// tap's process tracking (NODE_OPTIONS) and the system CA bundle (NODE_EXTRA_CA_CERTS) only slow the
// gateway's start-up: its upstreams here are plain HTTP.
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }

interface Pair {
  cert: string
  key: string
  fingerprint: string
}

let serial = 0
/** A fresh P-256 key and self-signed certificate for `name`, written to `dir/<file>.{crt,key}` (file defaults to name). */
async function makePair(dir: string, name: string, file = name): Promise<Pair> {
  mkdirSync(dir, { recursive: true })
  const cert = join(dir, `${file}.crt`)
  const key = join(dir, `${file}.key`)
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}/OU=test-${++serial}`,
    '-addext', `subjectAltName=DNS:${name}`,
  ])
  return { cert, key, fingerprint: new X509Certificate(readFileSync(cert)).fingerprint256 }
}

interface Seen {
  fingerprint: string
  cn: string
  san: string
  protocol: string | null
  cipher: string
}

/** One new TLS handshake; resolves with what the server presented, rejects when the handshake fails. */
function handshake(port: number, options: ConnectionOptions = {}): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options })
    socket.setTimeout(5000, () => socket.destroy(new Error('handshake timed out')))
    socket.once('secureConnect', () => {
      const peer = socket.getPeerCertificate()
      const seen = { fingerprint: peer.fingerprint256, cn: String(peer.subject?.CN ?? ''), san: peer.subjectaltname ?? '', protocol: socket.getProtocol(), cipher: socket.getCipher().standardName }
      socket.end()
      resolve(seen)
    })
    socket.once('error', reject)
  })
}

/** Polls new handshakes until the presented certificate has `fingerprint` (up to timeoutMs). */
async function waitForCertificate(port: number, servername: string, fingerprint: string, timeoutMs = 5000): Promise<number> {
  const started = Date.now()
  let last = ''
  while (Date.now() - started < timeoutMs) {
    last = (await handshake(port, { servername })).fingerprint
    if (last === fingerprint) return Date.now() - started
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`still served ${last} after ${timeoutMs} ms, wanted ${fingerprint}`)
}

interface Reply {
  status: number
  body: string
  socket: Socket
  reused: boolean
  peerFingerprint: string
}

/** GET over an https.Agent, reporting which socket carried it and whether it was reused. */
function agentGet(agent: Agent, port: number, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path, agent, servername: 'a.test' }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => {
        const socket = req.socket as TLSSocket
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          socket,
          reused: req.reusedSocket,
          peerFingerprint: socket.getPeerCertificate().fingerprint256,
        })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('static certificates are chosen by SNI', async (t) => {
  const registry = await registryFixture(t)
  const dir = join(work, 'sni')
  const a = await makePair(dir, 'a.test')
  const b = await makePair(dir, 'b.test')
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], tls: { certificates: [{ cert: a.cert, key: a.key }, { cert: b.cert, key: b.key }] } },
  })

  const seenA = await handshake(gateway.port, { servername: 'a.test' })
  t.equal(seenA.fingerprint, a.fingerprint, 'a.test gets certificate A')
  t.equal(seenA.cn, 'a.test')
  t.equal(seenA.san, 'DNS:a.test')
  const seenB = await handshake(gateway.port, { servername: 'b.test' })
  t.equal(seenB.fingerprint, b.fingerprint, 'b.test gets certificate B')
  t.equal(seenB.san, 'DNS:b.test')
  t.equal((await handshake(gateway.port, { servername: 'B.TEST' })).fingerprint, b.fingerprint, 'server names are case-insensitive')
  t.equal((await handshake(gateway.port, { servername: 'c.test' })).fingerprint, a.fingerprint, 'an unknown name gets the first certificate')
  t.equal((await handshake(gateway.port)).fingerprint, a.fingerprint, 'no SNI (an IP address) gets the first certificate')

  // Verified end to end: the client trusts only B and asks for b.test.
  const verified = await handshake(gateway.port, { servername: 'b.test', rejectUnauthorized: true, ca: readFileSync(b.cert) })
  t.equal(verified.fingerprint, b.fingerprint, 'B verifies for b.test')
  const response = await new Promise<number>((resolve, reject) => {
    httpsRequest({ host: '127.0.0.1', port: gateway.port, path: '/v2/', servername: 'b.test', ca: readFileSync(b.cert) }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    }).on('error', reject).end()
  })
  t.equal(response, 200, 'a registry request over the SNI-chosen certificate')
})

t.test('TLS 1.2 is the minimum', async (t) => {
  const registry = await registryFixture(t)
  const dir = join(work, 'version')
  const a = await makePair(dir, 'a.test')
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], tls: { certificates: [{ cert: a.cert, key: a.key }] } },
  })
  const old = { servername: 'a.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' } as const
  await t.rejects(handshake(gateway.port, old), 'a TLSv1.1 client cannot connect')
  const v12 = await handshake(gateway.port, { servername: 'a.test', maxVersion: 'TLSv1.2' })
  t.equal(v12.protocol, 'TLSv1.2', 'a TLSv1.2 client can')
  const v13 = await handshake(gateway.port, { servername: 'a.test' })
  t.equal(v13.protocol, 'TLSv1.3', 'TLSv1.3 is preferred')
  await t.rejects(handshake(gateway.port, { ...old, servername: 'unknown.test' }), 'also when SNI picks the default certificate')
  await t.rejects(handshake(gateway.port, { ...old, servername: undefined }), 'also without SNI')
})

t.test('cipher choice: AES-128-GCM first whatever the client prefers, unless it lists ChaCha20 first', async (t) => {
  const registry = await registryFixture(t)
  const a = await makePair(join(work, 'ciphers'), 'a.test')
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], tls: { certificates: [{ cert: a.cert, key: a.key }] } },
  })
  const aes256First = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256'
  for (const servername of ['a.test', undefined]) {
    const which = servername ? 'with SNI' : 'without SNI'
    t.equal((await handshake(gateway.port, { servername, ciphers: aes256First })).cipher, 'TLS_AES_128_GCM_SHA256', `TLS 1.3, client listing AES-256 first (curl's order), ${which}`)
    const chachaFirst = 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384'
    t.equal((await handshake(gateway.port, { servername, ciphers: chachaFirst })).cipher, 'TLS_CHACHA20_POLY1305_SHA256', `a client listing ChaCha20 first gets it, ${which}`)
    t.equal((await handshake(gateway.port, { servername, ciphers: 'TLS_AES_256_GCM_SHA384' })).cipher, 'TLS_AES_256_GCM_SHA384', `a client offering only AES-256 gets it, ${which}`)
    const v12 = await handshake(gateway.port, { servername, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256' })
    t.equal(v12.cipher, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', `TLS 1.2 too, ${which}`)
  }
  const curl = await runOk('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', '--resolve', `a.test:${gateway.port}:127.0.0.1`, `https://a.test:${gateway.port}/v2/`, '-v'])
  t.match(curl.stderr, /TLS_AES_128_GCM_SHA256/, 'curl with its defaults negotiates AES-128-GCM')
})

t.test('min_version TLSv1.3 refuses TLSv1.2 clients', async (t) => {
  const registry = await registryFixture(t)
  const a = await makePair(join(work, 'v13'), 'a.test')
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], tls: { min_version: 'TLSv1.3', certificates: [{ cert: a.cert, key: a.key }] } },
  })
  await t.rejects(handshake(gateway.port, { servername: 'a.test', maxVersion: 'TLSv1.2' }), 'TLSv1.2 with SNI')
  await t.rejects(handshake(gateway.port, { maxVersion: 'TLSv1.2' }), 'TLSv1.2 without SNI')
  t.equal((await handshake(gateway.port, { servername: 'a.test' })).protocol, 'TLSv1.3')
})

t.test('certificates reload on file change; open connections keep working; a broken pair is refused', async (t) => {
  const registry = await registryFixture(t)
  const dir = join(work, 'reload')
  const first = await makePair(dir, 'a.test')
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], tls: { certificates: [{ cert: first.cert, key: first.key }] } },
  })
  t.equal((await handshake(gateway.port, { servername: 'a.test' })).fingerprint, first.fingerprint)

  const agent = new Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false })
  t.teardown(() => agent.destroy())
  const before = await agentGet(agent, gateway.port, '/v2/')
  t.equal(before.status, 200)
  t.equal(before.peerFingerprint, first.fingerprint)

  // 1. Overwrite the files in place (cert, then key), as `cp` or an editor does.
  const staged = await makePair(join(work, 'reload-staging'), 'a.test', 'second')
  writeFileSync(first.cert, readFileSync(staged.cert))
  writeFileSync(first.key, readFileSync(staged.key))
  const tookInPlace = await waitForCertificate(gateway.port, 'a.test', staged.fingerprint)
  t.pass(`a new handshake sees the rewritten certificate after ${tookInPlace} ms`)
  t.equal((await handshake(gateway.port)).fingerprint, staged.fingerprint, 'so does one without SNI (the default context)')
  await gateway.waitForLog((line) => line.msg === 'certificates reloaded')

  const after = await agentGet(agent, gateway.port, '/v2/_catalog')
  t.equal(after.status, 200, 'the connection opened before the swap still serves requests')
  t.ok(after.reused, 'on the same keep-alive socket')
  t.equal(after.socket, before.socket, 'the very same socket object')
  t.equal(after.peerFingerprint, first.fingerprint, 'still under its original handshake')

  // 2. The atomic way: write beside, rename over (what certbot-style tools and Kubernetes do).
  const third = await makePair(dir, 'a.test', 'third')
  renameSync(third.cert, first.cert)
  renameSync(third.key, first.key)
  const tookRename = await waitForCertificate(gateway.port, 'a.test', third.fingerprint)
  t.pass(`a new handshake sees the renamed-in certificate after ${tookRename} ms`)
  const stillOpen = await agentGet(agent, gateway.port, '/v2/')
  t.equal(stillOpen.status, 200)
  t.equal(stillOpen.socket, before.socket, 'the first connection survived two reloads')

  // 3. A broken replacement: a new certificate whose key does not match it.
  await gateway.logsSettled()
  const logMark = gateway.logs.length
  const fourth = await makePair(join(work, 'reload-staging'), 'a.test', 'fourth')
  const stranger = await makePair(join(work, 'reload-staging'), 'a.test', 'stranger')
  writeFileSync(first.cert, readFileSync(fourth.cert))
  writeFileSync(first.key, readFileSync(stranger.key))
  const error = await gateway.waitForLog((line) => gateway.logs.indexOf(line) >= logMark && line.msg.includes('certificate reload failed'), 5000)
  t.equal(error.level, 50, 'logged as an error')
  t.match(String(error.err), /mismatch|key/i, 'saying what is wrong')
  t.match(String(error.err), `${first.key} (the key of ${first.cert})`, 'and naming the files')
  await new Promise((r) => setTimeout(r, 500))
  t.equal((await handshake(gateway.port, { servername: 'a.test' })).fingerprint, third.fingerprint, 'the previous certificate is still served')
  t.equal((await agentGet(agent, gateway.port, '/v2/')).status, 200, 'and requests still work')

  // Fixing the key recovers without a restart.
  writeFileSync(first.key, readFileSync(fourth.key))
  await waitForCertificate(gateway.port, 'a.test', fourth.fingerprint)
  t.pass('the repaired pair is picked up')
})

t.test('without certificates a self-signed one is generated once and reused', async (t) => {
  const registry = await registryFixture(t)
  const cwd = mkdtempSync(join(work, 'selfsigned-'))
  const config = { upstreams: [{ url: registry.url }] }

  const first = await gatewayFixture(t, { env, config, cwd })
  const certFile = join(cwd, 'certs', 'self-signed', 'cert.pem')
  const keyFile = join(cwd, 'certs', 'self-signed', 'key.pem')
  const cert = new X509Certificate(readFileSync(certFile))
  t.match(cert.subjectAltName, /DNS:localhost/, 'SAN has localhost')
  t.match(cert.subjectAltName, /IP Address:127\.0\.0\.1/, 'SAN has 127.0.0.1')
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'the key file is private (0600)')
  t.ok(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(readFileSync(keyFile))), 'the key matches the certificate')

  const generated = await first.waitForLog((line) => line.msg === 'generated a self-signed certificate')
  t.equal(generated.sha256, cert.fingerprint256, 'the log line carries the SHA-256 fingerprint')
  t.ok(first.stderr().includes(cert.fingerprint256), 'the stderr banner prints the fingerprint')
  t.match(first.stderr(), /SHA-256 fingerprint/)
  t.equal((await handshake(first.port)).fingerprint, cert.fingerprint256, 'the gateway serves it')
  const verified = await handshake(first.port, { servername: 'localhost', ca: readFileSync(certFile), rejectUnauthorized: true })
  t.equal(verified.fingerprint, cert.fingerprint256, 'it verifies as its own CA for localhost')
  t.equal((await first.stop()).code, 0, 'clean exit on SIGTERM')

  const second = await gatewayFixture(t, { env, config, cwd })
  const reused = await second.waitForLog((line) => line.msg === 'using the self-signed certificate generated earlier')
  t.equal(reused.sha256, cert.fingerprint256, 'the second start reuses the same certificate')
  t.ok(second.stderr().includes(cert.fingerprint256), 'and prints the same fingerprint')
  t.equal(new X509Certificate(readFileSync(certFile)).fingerprint256, cert.fingerprint256, 'the file is unchanged')
  t.equal((await handshake(second.port)).fingerprint, cert.fingerprint256)
})

t.test('http_redirect_listen answers 301 to https with path and query kept', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    env,
    config: { upstreams: [{ url: registry.url }], server: { http_redirect_listen: '127.0.0.1:0' } },
  })
  const ready = gateway.logs.find((line) => line.msg === 'portier ready')
  const redirectPort = Number(String(ready?.redirect_listen).split(':').pop())
  t.ok(redirectPort > 0, `the redirect listener's port is in the ready log line (${redirectPort})`)
  const get = (path: string, method = 'GET') => new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port: redirectPort, path, method }, (res) => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, location: res.headers.location })
    }).on('error', reject).end()
  })
  const r = await get('/v2/team/app/tags/list?n=10&last=v1')
  t.equal(r.status, 301)
  t.equal(r.location, `https://127.0.0.1:${gateway.port}/v2/team/app/tags/list?n=10&last=v1`)
  const root = await get('/')
  t.equal(root.status, 301)
  t.equal(root.location, `https://127.0.0.1:${gateway.port}/`)
  const head = await get('/v2/?x=%2F', 'HEAD')
  t.equal(head.status, 301)
  t.equal(head.location, `https://127.0.0.1:${gateway.port}/v2/?x=%2F`)

  t.equal((await handshake(gateway.port)).protocol, 'TLSv1.3', 'the redirect target speaks TLS')
})

t.test('tls.enabled false serves plain HTTP and warns about it', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { env, config: { upstreams: [{ url: registry.url }], tls: { enabled: false } } })
  t.match(gateway.url, /^http:\/\//)
  const response = await fetch(`${gateway.url}/v2/`)
  await response.arrayBuffer()
  t.equal(response.status, 200, 'plain HTTP works')
  const warning = await gateway.waitForLog((line) => /TLS is disabled/.test(line.msg))
  t.equal(warning.level, 40, 'logged as a warning')
  t.match(warning.msg, /plain HTTP/)
  await t.rejects(handshake(gateway.port), 'no TLS on that port')

  // Node hands a CONNECT's socket over without any error listener (over TLS the TLS layer keeps one): a client that
  // resets it once answered must not take the process down.
  for (let i = 0; i < 10; i++) {
    const answered = await new Promise<string>((resolve) => {
      const socket = createConnection({ host: '127.0.0.1', port: gateway.port }, () => socket.write('CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n'))
      const guard = setTimeout(() => socket.destroy(), 5000)
      socket.on('error', () => undefined)
      socket.once('data', (chunk: Buffer) => {
        clearTimeout(guard)
        socket.resetAndDestroy()
        resolve(chunk.toString('latin1'))
      })
      socket.once('close', () => resolve(''))
    })
    if (i === 0) t.match(answered, /^HTTP\/1\.1 405 Method Not Allowed\r\n/, 'a CONNECT is answered 405')
  }
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(gateway.child.exitCode, null, 'the gateway lives after 10 CONNECTs reset once answered')
  const after = await fetch(`${gateway.url}/v2/`)
  await after.arrayBuffer()
  t.equal(after.status, 200, 'and still serves')
})
