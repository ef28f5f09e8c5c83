// Generates (once) and reuses a self-signed certificate so Portier serves HTTPS out of the box.
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { domainToASCII } from 'node:url'
import { writeKeyAndCertificate } from './pem-files.js'
import { selfSignedCertificate } from './x509.js'

export interface SelfSignedCertificate {
  certPath: string
  keyPath: string
  /** SHA-256 fingerprint, colon-separated hex, as browsers and openssl print it. */
  fingerprint: string
  created: boolean
  names: string[]
  /**
   * Set when a certificate made earlier was replaced: clients that trusted its fingerprint must be
   * told (log and banner), since they will now refuse the new one.
   */
  replaced?: { fingerprint: string; reason: string }
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
    // An internationalised name as the certificate holds it (punycode), so the reuse check finds it there.
    else dns.add(domainToASCII(name) || name.toLowerCase())
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

type Existing = { reusable: X509Certificate } | { replace: { fingerprint: string; reason: string } } | { none: true }

/** The existing certificate when it is readable, matches its key, covers every required name and is not about to expire; else why not. */
function existing(certPath: string, keyPath: string, names: Names): Existing {
  if (!existsSync(certPath)) return { none: true }
  let cert: X509Certificate
  try {
    cert = new X509Certificate(readFileSync(certPath))
  } catch (error) {
    return { replace: { fingerprint: 'unreadable', reason: `${certPath} could not be read (${(error as Error).message})` } }
  }
  const replace = (reason: string): Existing => ({ replace: { fingerprint: cert.fingerprint256, reason } })
  if (Date.parse(cert.validTo) - Date.now() < RENEW_WITHIN_MS) return replace(`it expires on ${new Date(cert.validTo).toISOString()}`)
  try {
    if (!existsSync(keyPath) || !cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath)))) return replace(`${keyPath} is missing or not its key`)
  } catch (error) {
    return replace(`${keyPath} could not be read (${(error as Error).message})`)
  }
  const missing = [
    ...names.dns.filter((name) =>
      name.includes('*') ? !sanNames(cert).includes(name) : cert.checkHost(name, { wildcards: false, subject: 'never' }) === undefined,
    ),
    ...names.ips.filter((ip) => cert.checkIP(ip) === undefined),
  ]
  if (missing.length > 0) return replace(`it does not name ${missing.join(', ')} (tls.self_signed.hosts)`)
  return { reusable: cert }
}

export function ensureSelfSigned(dir: string, extraHosts: string[] = []): SelfSignedCertificate {
  const certPath = join(dir, 'cert.pem')
  const keyPath = join(dir, 'key.pem')
  const found = existing(certPath, keyPath, required(extraHosts))
  if ('reusable' in found) {
    return { certPath, keyPath, fingerprint: found.reusable.fingerprint256, created: false, names: sanNames(found.reusable) }
  }
  const names = wanted(extraHosts)

  // ECDSA P-256, not RSA-2048: the server signs every full TLS handshake with this key, and a P-256
  // signature costs about a fourteenth of an RSA-2048 one (openssl speed: ~55,000 against ~4,000 a second
  // on one core), all on the event loop's thread: a burst of new connections then holds up other requests far less.
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const now = Date.now()
  const certPem = selfSignedCertificate({
    privateKey,
    // X.509 limits a common name to 64 characters; the SAN carries every name anyway.
    commonName: names.dns.find((name, index) => index > 0 && name.length <= 64) ?? 'localhost',
    organization: 'Portier self-signed',
    dnsNames: names.dns,
    ipAddresses: names.ips,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + VALIDITY_DAYS * 24 * 3600 * 1000),
  })

  writeKeyAndCertificate(keyPath, keyPem, certPath, certPem)
  const parsed = new X509Certificate(certPem)
  const made: SelfSignedCertificate = { certPath, keyPath, fingerprint: parsed.fingerprint256, created: true, names: [...names.dns, ...names.ips] }
  if ('replace' in found) made.replaced = found.replace
  return made
}
