// Generates (once) and reuses a self-signed certificate so Portier serves HTTPS out of the box.
import { generateKeyPairSync, X509Certificate, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'

export interface SelfSignedCertificate {
  certPath: string
  keyPath: string
  /** SHA-256 fingerprint, colon-separated hex, as browsers and openssl print it. */
  fingerprint: string
  created: boolean
  names: string[]
}

const VALIDITY_DAYS = 825
const RENEW_WITHIN_MS = 30 * 24 * 3600 * 1000

function wanted(extraHosts: string[]): { dns: string[]; ips: string[] } {
  const dns = new Set(['localhost'])
  const ips = new Set(['127.0.0.1', '::1'])
  const host = hostname()
  if (host) dns.add(host)
  for (const name of extraHosts) {
    if (/^[\d.]+$/.test(name) || name.includes(':')) ips.add(name)
    else dns.add(name)
  }
  return { dns: [...dns], ips: [...ips] }
}

function stillGood(certPath: string, keyPath: string, names: { dns: string[]; ips: string[] }): X509Certificate | undefined {
  if (!existsSync(certPath) || !existsSync(keyPath)) return undefined
  try {
    const cert = new X509Certificate(readFileSync(certPath))
    if (Date.parse(cert.validTo) - Date.now() < RENEW_WITHIN_MS) return undefined
    const san = cert.subjectAltName ?? ''
    const covered = names.dns.every((name) => san.includes(`DNS:${name}`))
    return covered ? cert : undefined
  } catch {
    return undefined
  }
}

export function ensureSelfSigned(dir: string, extraHosts: string[] = []): SelfSignedCertificate {
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  const names = wanted(extraHosts)
  const existing = stillGood(certPath, keyPath, names)
  if (existing) {
    return { certPath, keyPath, fingerprint: existing.fingerprint256, created: false, names: [...names.dns, ...names.ips] }
  }

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`
  const now = new Date()
  cert.validity.notBefore = new Date(now.getTime() - 60_000)
  cert.validity.notAfter = new Date(now.getTime() + VALIDITY_DAYS * 24 * 3600 * 1000)
  const subject = [
    { name: 'commonName', value: names.dns[names.dns.length > 1 ? 1 : 0] as string },
    { name: 'organizationName', value: 'Portier self-signed' },
  ]
  cert.setSubject(subject)
  cert.setIssuer(subject)
  cert.setExtensions([
    // A self-signed certificate that clients may also install as their CA (docker's certs.d/ca.crt).
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: [...names.dns.map((value) => ({ type: 2, value })), ...names.ips.map((ip) => ({ type: 7, ip }))],
    },
    { name: 'subjectKeyIdentifier' },
  ])
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create())
  const certPem = forge.pki.certificateToPem(cert)

  mkdirSync(dir, { recursive: true })
  writeFileSync(keyPath, keyPem, { mode: 0o600 })
  chmodSync(keyPath, 0o600)
  writeFileSync(certPath, certPem, { mode: 0o644 })
  const parsed = new X509Certificate(certPem)
  return { certPath, keyPath, fingerprint: parsed.fingerprint256, created: true, names: [...names.dns, ...names.ips] }
}
