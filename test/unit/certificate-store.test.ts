// The certificate store's answers the Host check and HSTS rely on: which names the served certificates cover, and which are self-signed.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CertificateStore } from '../../src/tls/store.js'
import { ensureSelfSigned } from '../../src/tls/selfsigned.js'
import { hstsValue } from '../../src/pipeline/security-headers.js'

const work = mkdtempSync(join(tmpdir(), 'portier-store-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const events = { onReload: () => undefined, onReloadError: () => undefined }

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' })
}

t.test('the generated certificate: self-signed, covering the loopback names and the configured hosts', async (t) => {
  const generated = ensureSelfSigned(join(work, 'self'), ['registry.lan', '10.0.0.5'])
  const store = new CertificateStore([{ cert: generated.certPath, key: generated.keyPath }], 'TLSv1.2', events)
  t.equal(store.certificates[0]?.selfSigned, true)
  t.equal(store.certificateFor('localhost').selfSigned, true)
  for (const name of ['localhost', 'LOCALHOST', '127.0.0.1', '::1', 'registry.lan', '10.0.0.5']) t.ok(store.covers(name), `covers ${name}`)
  for (const name of ['evil.example', 'registry.lan.evil.example', '10.0.0.6', '']) t.notOk(store.covers(name), `does not cover ${JSON.stringify(name)}`)
})

t.test('a CA-issued certificate is not self-signed; wildcards cover one label', async (t) => {
  const dir = join(work, 'ca')
  mkdirSync(dir)
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=store test CA', '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.crt'))
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=apps.test', '-keyout', join(dir, 'leaf.key'), '-out', join(dir, 'leaf.csr'))
  writeFileSync(join(dir, 'leaf.ext'), 'subjectAltName=DNS:apps.test,DNS:*.apps.test\n')
  openssl('x509', '-req', '-in', join(dir, 'leaf.csr'), '-CA', join(dir, 'ca.crt'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile', join(dir, 'leaf.ext'), '-out', join(dir, 'leaf.crt'))
  const generated = ensureSelfSigned(join(work, 'self2'))
  const store = new CertificateStore(
    [
      { cert: join(dir, 'leaf.crt'), key: join(dir, 'leaf.key') },
      { cert: generated.certPath, key: generated.keyPath },
    ],
    'TLSv1.2',
    events,
  )
  t.equal(store.certificates[0]?.selfSigned, false, 'issued by a CA')
  t.equal(store.certificateFor('cr.apps.test').selfSigned, false, 'SNI under the wildcard gets the CA-issued one')
  t.equal(store.certificateFor('localhost').selfSigned, true, 'SNI localhost gets the self-signed one')
  t.equal(store.certificateFor(undefined).selfSigned, false, 'no SNI: the first certificate')
  t.ok(store.covers('apps.test'))
  t.ok(store.covers('cr.apps.test'), 'one label under the wildcard')
  t.notOk(store.covers('a.cr.apps.test'), 'not two')
  t.ok(store.covers('localhost'), 'any served certificate counts')
})

t.test("covers() asks the certificates once per name until they are reloaded (the Host check runs on every request)", async (t) => {
  const dir = join(work, 'reload')
  const first = ensureSelfSigned(join(dir, 'a'), ['first.lan'])
  const second = ensureSelfSigned(join(dir, 'b'), ['second.lan'])
  const store = new CertificateStore([{ cert: first.certPath, key: first.keyPath }], 'TLSv1.2', events)
  const x509 = store.certificates[0]?.x509
  if (!x509) throw new Error('no certificate loaded')
  let asked = 0
  const checkHost = x509.checkHost.bind(x509)
  x509.checkHost = (name, options) => {
    asked++
    return checkHost(name, options)
  }
  for (let i = 0; i < 5; i++) t.ok(store.covers('first.lan'))
  for (let i = 0; i < 5; i++) t.notOk(store.covers('second.lan'))
  t.equal(asked, 2, 'one question per name')
  store.setFiles([{ cert: second.certPath, key: second.keyPath }])
  t.ok(store.covers('second.lan'), 'a reloaded set is asked afresh')
  t.notOk(store.covers('first.lan'))
})

t.test('the Strict-Transport-Security value', async (t) => {
  t.equal(hstsValue({ send: 'auto', max_age: 365 * 86_400_000, include_subdomains: false }), 'max-age=31536000')
  t.equal(hstsValue({ send: 'always', max_age: 86_400_500, include_subdomains: true }), 'max-age=86400; includeSubDomains', 'whole seconds')
})
