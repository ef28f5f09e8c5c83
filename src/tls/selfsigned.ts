// Generates (once) and reuses a self-signed certificate so Portier serves HTTPS out of the box.
import { createPrivateKey, generateKeyPairSync, X509Certificate, randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'
import { writeKeyAndCertificate } from './pem-files.js'

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

interface Names {
  dns: string[]
  ips: string[]
}

/** Names the certificate must cover to be reused: the loopback names and the configured hosts. */
function required(extraHosts: string[]): Names {
  const dns = new Set(['localhost'])
  const ips = new Set(['127.0.0.1', '::1'])
  for (const name of extraHosts) {
    if (isIP(name)) ips.add(name)
    else dns.add(name.toLowerCase())
  }
  return { dns: [...dns], ips: [...ips] }
}

/**
 * Names put into a new certificate: the required ones plus this machine's host name. The host name
 * is not required for reuse: a container gets a new one on every re-creation, and regenerating then
 * would invalidate the fingerprint every client was told to trust.
 */
function wanted(extraHosts: string[]): Names {
  const names = required(extraHosts)
  const host = hostname().toLowerCase()
  if (host && !names.dns.includes(host) && /^[a-z0-9.-]+$/.test(host)) names.dns.splice(1, 0, host)
  return names
}

function sanNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(',').map((entry) => entry.trim().replace(/^DNS:|^IP Address:/, '')).filter(Boolean)
}

/** The existing certificate when it is readable, matches its key, covers every required name and is not about to expire. */
function stillGood(certPath: string, keyPath: string, names: Names): X509Certificate | undefined {
  if (!existsSync(certPath) || !existsSync(keyPath)) return undefined
  try {
    const cert = new X509Certificate(readFileSync(certPath))
    if (Date.parse(cert.validTo) - Date.now() < RENEW_WITHIN_MS) return undefined
    if (!cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))) return undefined
    const covered =
      names.dns.every((name) =>
        name.includes('*') ? sanNames(cert).includes(name) : cert.checkHost(name, { wildcards: false, subject: 'never' }) !== undefined,
      ) &&
      names.ips.every((ip) => cert.checkIP(ip) !== undefined)
    return covered ? cert : undefined
  } catch {
    return undefined
  }
}

export function ensureSelfSigned(dir: string, extraHosts: string[] = []): SelfSignedCertificate {
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  const existing = stillGood(certPath, keyPath, required(extraHosts))
  if (existing) {
    return { certPath, keyPath, fingerprint: existing.fingerprint256, created: false, names: sanNames(existing) }
  }
  const names = wanted(extraHosts)

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const cert = forge.pki.createCertificate()
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString())
  cert.serialNumber = `01${randomBytes(15).toString('hex')}`
  const now = new Date()
  cert.validity.notBefore = new Date(now.getTime() - 60_000)
  cert.validity.notAfter = new Date(now.getTime() + VALIDITY_DAYS * 24 * 3600 * 1000)
  const subject = [
    // X.509 limits a common name to 64 characters; the SAN carries every name anyway.
    { name: 'commonName', value: names.dns.find((name, index) => index > 0 && name.length <= 64) ?? 'localhost' },
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

  writeKeyAndCertificate(keyPath, keyPem, certPath, certPem)
  const parsed = new X509Certificate(certPem)
  return { certPath, keyPath, fingerprint: parsed.fingerprint256, created: true, names: [...names.dns, ...names.ips] }
}
