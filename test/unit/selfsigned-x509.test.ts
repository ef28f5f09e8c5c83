// The self-signed certificate is ECDSA P-256 built by src/tls/x509.ts: parsed back by Node and OpenSSL (strict),
// its names, validity and key usage checked, a TLS client verifies it against itself as CA, and an RSA one made
// by an earlier version is still reused; the DER pieces (lengths, times, IP addresses, bits) checked byte by byte.
import t from 'tap'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { once } from 'node:events'
import { connect, createServer, type TLSSocket } from 'node:tls'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runOk } from '../helpers/exec.js'
import { ensureSelfSigned } from '../../src/tls/selfsigned.js'
import * as der from '../../src/tls/x509-der.js'

const work = mkdtempSync(join(tmpdir(), 'portier-x509-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

t.test('the generated certificate is ECDSA P-256, signed by itself, with the names, validity and usages of a server CA', async (t) => {
  const dir = join(work, 'ec')
  const made = ensureSelfSigned(dir, ['registry.lan', '10.1.2.3', 'fd00::7', '*.apps.example'])
  const pem = readFileSync(made.certPath, 'utf8')
  const cert = new X509Certificate(pem)
  t.equal(cert.publicKey.asymmetricKeyType, 'ec', 'an EC key (was RSA-2048: ~14 times the handshake signing cost)')
  t.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'on P-256')
  const key = createPrivateKey(readFileSync(made.keyPath))
  t.equal(key.asymmetricKeyType, 'ec')
  t.ok(cert.checkPrivateKey(key), 'the key on disk is its key')
  t.ok(cert.verify(cert.publicKey), 'signed by its own key')
  t.ok(cert.checkIssued(cert), 'issuer equals subject')
  t.ok(cert.ca, 'CA:TRUE (clients install it as certs.d/ca.crt)')
  t.equal(cert.subject, `CN=${cert.subject.split('\n')[0]?.slice(3)}\nO=Portier self-signed`, 'subject: CN and O')
  for (const host of ['localhost', 'registry.lan', 'x.apps.example']) t.ok(cert.checkHost(host), `covers ${host}`)
  for (const ip of ['127.0.0.1', '::1', '10.1.2.3', 'fd00::7']) t.equal(cert.checkIP(ip), ip, `covers ${ip}`)
  t.equal(cert.checkIP('10.1.2.4'), undefined, 'and no other address')
  t.equal(cert.checkHost('other.example'), undefined, 'nor another name')
  const days = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / 86_400_000
  t.ok(Math.abs(days - 825) < 0.01, `valid 825 days (${days})`)
  t.ok(Date.parse(cert.validFrom) <= Date.now() && Date.parse(cert.validFrom) > Date.now() - 120_000, 'valid from (about) now')
  t.same(cert.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: server authentication')
  t.match(cert.serialNumber, /^[0-7][0-9A-F]{31}$/, 'a positive 128-bit serial')

  const text = (await runOk('openssl', ['x509', '-in', made.certPath, '-noout', '-text'])).stdout
  t.match(text, /Version: 3 \(0x2\)/)
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/)
  t.match(text, /Basic Constraints: critical\s+CA:TRUE/)
  t.match(text, /Key Usage: critical\s+Digital Signature, Certificate Sign\n/, 'key usage: digitalSignature and keyCertSign only')
  t.match(text, /DNS:localhost, DNS:[^,]+, DNS:registry\.lan, DNS:\*\.apps\.example, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1, IP Address:10\.1\.2\.3, IP Address:FD00:0:0:0:0:0:0:7/)
  const ski = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(text)?.[1]
  t.ok(ski, 'a subject key identifier')
  t.match(text, new RegExp(`Authority Key Identifier:\\s+(keyid:)?${ski}`), 'and the same authority key identifier')
  // OpenSSL's strict mode checks the encoding rules a lenient parser lets pass (DER, AKI, key usage with CA).
  const verified = await runOk('openssl', ['verify', '-x509_strict', '-purpose', 'sslserver', '-CAfile', made.certPath, made.certPath])
  t.match(verified.stdout, /: OK/, 'openssl verify -x509_strict -purpose sslserver')
})

t.test('a TLS client that trusts the certificate as its CA connects by name and by address, and the handshake signs with ECDSA', async (t) => {
  const made = ensureSelfSigned(join(work, 'handshake'))
  const server = createServer({ cert: readFileSync(made.certPath), key: readFileSync(made.keyPath) }, (socket) => {
    // A client closing first resets the server's side: not what this test is about.
    socket.on('error', () => undefined)
    socket.end('hello')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.close()
  })
  const { port } = server.address() as AddressInfo
  const hello = async (servername: string | undefined): Promise<{ text: string; authorized: boolean; peer: ReturnType<TLSSocket['getPeerCertificate']> }> => {
    const socket = connect({ host: '127.0.0.1', port, ca: readFileSync(made.certPath), ...(servername ? { servername } : {}) })
    await once(socket, 'secureConnect')
    const authorized = socket.authorized
    const peer = socket.getPeerCertificate()
    let text = ''
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
    await once(socket, 'end')
    socket.destroy()
    return { text, authorized, peer }
  }
  const byName = await hello('localhost')
  t.equal(byName.text, 'hello')
  t.equal(byName.authorized, true, 'verified against the certificate as CA, by name')
  t.equal(byName.peer.fingerprint256, made.fingerprint)
  const byAddress = await hello(undefined)
  t.equal(byAddress.authorized, true, 'and by address (127.0.0.1 in the SAN)')
  t.equal(byAddress.peer.asn1Curve, 'prime256v1', 'the peer key is P-256')
  // curl (OpenSSL) the way the README tells users to trust it.
  const curl = await runOk('curl', ['-sS', '--http0.9', '--cacert', made.certPath, `https://localhost:${port}/`])
  t.equal(curl.stdout, 'hello', 'curl --cacert accepts it')
})

t.test('an RSA self-signed certificate made by an earlier version is reused until it expires', async (t) => {
  const dir = join(work, 'rsa')
  mkdirSync(dir, { recursive: true })
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '400',
    '-subj', '/CN=localhost/O=Portier self-signed', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
  ])
  const before = new X509Certificate(readFileSync(join(dir, 'cert.pem')))
  const result = ensureSelfSigned(dir)
  t.equal(result.created, false, 'clients already trust its fingerprint: kept')
  t.equal(result.fingerprint, before.fingerprint256)
  t.equal(new X509Certificate(readFileSync(join(dir, 'cert.pem'))).publicKey.asymmetricKeyType, 'rsa', 'still the RSA one')

  const expiring = join(work, 'rsa-expiring')
  mkdirSync(expiring, { recursive: true })
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(expiring, 'key.pem'), '-out', join(expiring, 'cert.pem'), '-days', '10',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
  ])
  const renewed = ensureSelfSigned(expiring)
  t.equal(renewed.created, true, 'within 30 days of expiry it is renewed')
  t.match(renewed.replaced?.reason, /expires/, 'and the log is told why the fingerprint changed')
  t.equal(new X509Certificate(readFileSync(renewed.certPath)).publicKey.asymmetricKeyType, 'ec', 'the renewal is ECDSA P-256')
})

t.test('DER pieces', async (t) => {
  t.same(der.tlv(0x04, Buffer.alloc(3)), Buffer.from([0x04, 3, 0, 0, 0]), 'short length')
  t.same(der.tlv(0x04, Buffer.alloc(127)).subarray(0, 2), Buffer.from([0x04, 127]), '127 is still short')
  t.same(der.tlv(0x04, Buffer.alloc(128)).subarray(0, 3), Buffer.from([0x04, 0x81, 128]), '128: long form, one byte')
  t.same(der.tlv(0x04, Buffer.alloc(300)).subarray(0, 4), Buffer.from([0x04, 0x82, 0x01, 0x2c]), '300: long form, two bytes')
  t.same(der.oid('2.5.29.17'), Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x11]))
  t.same(der.oid('1.2.840.10045.4.3.2'), Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]))
  t.same(der.unsignedInteger(Buffer.from([0x80, 0x01])), Buffer.from([0x02, 0x03, 0x00, 0x80, 0x01]), 'a set top bit gets a leading zero')
  t.same(der.unsignedInteger(Buffer.from([0x00, 0x00, 0x05])), Buffer.from([0x02, 0x01, 0x05]), 'leading zeros dropped')
  t.same(der.smallInteger(2), Buffer.from([0x02, 0x01, 0x02]))
  t.same(der.namedBits([0, 5]), Buffer.from([0x03, 0x02, 0x02, 0x84]), 'digitalSignature + keyCertSign: 2 unused bits')
  t.same(der.namedBits([0, 2]), Buffer.from([0x03, 0x02, 0x05, 0xa0]), 'digitalSignature + keyEncipherment: 5 unused bits')
  t.same(der.namedBits([8]), Buffer.from([0x03, 0x03, 0x07, 0x00, 0x80]), 'decipherOnly: a second byte')
  t.same(der.time(new Date('2026-12-03T22:55:29.987Z')), Buffer.concat([Buffer.from([0x17, 13]), Buffer.from('261203225529Z')]), 'UTCTime before 2050')
  t.same(der.time(new Date('2050-01-01T00:00:00Z')), Buffer.concat([Buffer.from([0x18, 15]), Buffer.from('20500101000000Z')]), 'GeneralizedTime from 2050')
  t.same(der.ipBytes('10.1.2.3'), Buffer.from([10, 1, 2, 3]))
  t.same(der.ipBytes('::1'), Buffer.from([...Array<number>(15).fill(0), 1]))
  t.same(der.ipBytes('fd00::7'), Buffer.from([0xfd, 0, ...Array<number>(13).fill(0), 7]))
  t.same(der.ipBytes('2001:db8:1:2:3:4:5:6'), Buffer.from([0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6]), 'no ::')
  t.same(der.ipBytes('::ffff:10.0.0.1'), Buffer.from([...Array<number>(10).fill(0), 0xff, 0xff, 10, 0, 0, 1]), 'an IPv4 tail')
  t.same(der.ipBytes('fe80::'), Buffer.from([0xfe, 0x80, ...Array<number>(14).fill(0)]), ':: at the end')
  t.throws(() => der.ipBytes('registry.lan'), /not an IP address/)
})
