// The self-signed certificate: generated once with the loopback names, reused while it still fits, regenerated when it does not.
import t from 'tap'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runOk } from '../helpers/exec.js'
import { ensureSelfSigned } from '../../src/tls/selfsigned.js'

const work = mkdtempSync(join(tmpdir(), 'portier-selfsigned-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

function certOf(dir: string): X509Certificate {
  return new X509Certificate(readFileSync(join(dir, 'cert.pem')))
}

t.test('generates once into the directory, then reuses', async (t) => {
  const dir = join(work, 'once', 'certs', 'self-signed')
  const first = ensureSelfSigned(dir)
  t.equal(first.created, true)
  t.equal(first.certPath, join(dir, 'cert.pem'))
  t.equal(first.keyPath, join(dir, 'key.pem'))
  t.same(readdirSync(dir).sort(), ['cert.pem', 'key.pem'], 'no temporary files left behind')
  t.equal(statSync(first.keyPath).mode & 0o777, 0o600, 'key is 0600')
  const cert = certOf(dir)
  t.equal(first.fingerprint, cert.fingerprint256)
  t.match(first.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/, 'colon-separated SHA-256')
  t.ok(cert.checkHost('localhost'), 'covers localhost')
  t.ok(cert.checkIP('127.0.0.1'), 'covers 127.0.0.1')
  t.ok(cert.checkIP('::1'), 'covers ::1')
  t.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(first.keyPath))), 'key matches')
  t.ok(cert.ca, 'usable as its own CA (docker certs.d/ca.crt)')

  const second = ensureSelfSigned(dir)
  t.equal(second.created, false)
  t.equal(second.fingerprint, first.fingerprint)
  t.ok(second.names.includes('localhost') && second.names.includes('127.0.0.1'), `names reported from the certificate: ${second.names.join(', ')}`)
})

t.test('extra hosts (names and IPs) are added; a certificate lacking one is replaced', async (t) => {
  const dir = join(work, 'hosts')
  const plain = ensureSelfSigned(dir)
  const withHosts = ensureSelfSigned(dir, ['registry.lan', '10.1.2.3', 'fd00::7'])
  t.equal(withHosts.created, true, 'a new host name or IP means a new certificate')
  t.not(withHosts.fingerprint, plain.fingerprint)
  const cert = certOf(dir)
  t.ok(cert.checkHost('registry.lan'))
  t.ok(cert.checkIP('10.1.2.3'), 'the IP is in the SAN as an IP address')
  t.ok(cert.checkIP('fd00::7'))
  t.ok(cert.checkHost('localhost'), 'loopback names stay')
  t.equal(ensureSelfSigned(dir, ['registry.lan', '10.1.2.3', 'fd00::7']).created, false, 'same hosts → reused')
  t.equal(ensureSelfSigned(dir, ['10.1.2.3']).created, false, 'a subset of the names → reused')
  const more = ensureSelfSigned(dir, ['10.1.2.4'])
  t.equal(more.created, true, 'an IP the certificate lacks → regenerated')
  t.equal(certOf(dir).checkIP('10.1.2.4'), '10.1.2.4')
  // Clients trusted the old fingerprint: the caller is told which one it replaced, and why.
  t.equal(withHosts.replaced?.fingerprint, plain.fingerprint, 'the replacement names the fingerprint it replaced')
  t.match(withHosts.replaced?.reason, /registry\.lan/, 'and the missing name')
  t.equal(more.replaced?.fingerprint, withHosts.fingerprint)
  t.match(more.replaced?.reason, /10\.1\.2\.4/)
  t.equal(plain.replaced, undefined, 'a first generation replaces nothing')
})

t.test('a certificate made on another host (another host name) is still reused', async (t) => {
  // As after re-creating a container: the host name changed, the certs volume did not.
  const dir = join(work, 'other-host')
  mkdirSync(dir, { recursive: true })
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '400', '-subj', '/CN=old-container-3f2a',
    '-addext', 'subjectAltName=DNS:localhost,DNS:old-container-3f2a,IP:127.0.0.1,IP:::1',
  ])
  const before = certOf(dir).fingerprint256
  const result = ensureSelfSigned(dir)
  t.equal(result.created, false, 'not regenerated: clients already trust this fingerprint')
  t.equal(result.fingerprint, before)
})

t.test('a key that does not match, or an expiring certificate, is replaced instead of failing start-up', async (t) => {
  const dir = join(work, 'mismatch')
  const first = ensureSelfSigned(dir)
  const other = ensureSelfSigned(join(work, 'mismatch-other'))
  writeFileSync(first.keyPath, readFileSync(other.keyPath))
  const repaired = ensureSelfSigned(dir)
  t.equal(repaired.created, true)
  t.ok(certOf(dir).checkPrivateKey(createPrivateKey(readFileSync(repaired.keyPath))), 'the new pair matches')

  const expiring = join(work, 'expiring')
  mkdirSync(expiring, { recursive: true })
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(expiring, 'key.pem'), '-out', join(expiring, 'cert.pem'), '-days', '3', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
  ])
  t.equal(ensureSelfSigned(expiring).created, true, 'a certificate expiring within 30 days is renewed')

  const garbage = join(work, 'garbage')
  mkdirSync(garbage, { recursive: true })
  writeFileSync(join(garbage, 'cert.pem'), 'not a certificate')
  writeFileSync(join(garbage, 'key.pem'), 'not a key')
  t.equal(ensureSelfSigned(garbage).created, true, 'unreadable files are replaced')
})
