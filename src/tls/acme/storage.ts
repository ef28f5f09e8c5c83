// Where ACME state lives in tls.acme.storage, and reading a stored certificate back safely.
//   <storage>/<ca>/account.key, account.json     one account per CA directory
//   <storage>/<ca>/<first domain>/cert.pem, key.pem, order.lock
//   <storage>/<ca>/challenges/<token>, alpn-<domain>.pem   pending challenges, for every instance to answer
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'

export interface AcmePaths {
  /** This CA's directory inside the storage. */
  ca: string
  accountKey: string
  accountInfo: string
  certificateDir: string
  cert: string
  key: string
  lock: string
  challenges: string
}

/** A file-name-safe name for a directory URL: "acme-v02.api.letsencrypt.org-directory". */
export function caDirectoryName(directoryUrl: string): string {
  const url = new URL(directoryUrl)
  const name = `${url.hostname}${url.port ? `-${url.port}` : ''}${url.pathname}`
  return name.replace(/[^A-Za-z0-9.-]+/g, '-').replace(/^-+|-+$/g, '')
}

export function acmePaths(storage: string, directoryUrl: string, domains: string[]): AcmePaths {
  const ca = join(resolve(storage), caDirectoryName(directoryUrl))
  const certificateDir = join(ca, (domains[0] as string).toLowerCase())
  return {
    ca,
    accountKey: join(ca, 'account.key'),
    accountInfo: join(ca, 'account.json'),
    certificateDir,
    cert: join(certificateDir, 'cert.pem'),
    key: join(certificateDir, 'key.pem'),
    lock: join(certificateDir, 'order.lock'),
    challenges: join(ca, 'challenges'),
  }
}

/** Creates the directories (mode 0700: they hold private keys). */
export function ensureDirectories(paths: AcmePaths): void {
  for (const dir of [paths.ca, paths.certificateDir, paths.challenges]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  }
  for (const dir of [paths.ca, paths.certificateDir, paths.challenges]) {
    try {
      chmodSync(dir, 0o700)
    } catch {
      // A shared directory owned by someone else: its mode is theirs to choose.
    }
  }
}

export interface StoredCertificate {
  cert: string
  key: string
  names: string[]
  notBefore: Date
  notAfter: Date
  fingerprint: string
  issuer: string
}

function dnsNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase())
}

/**
 * The stored certificate when both files are there and the key matches; 'mismatch' while another
 * writer is between renaming the key and the certificate; undefined when there is none.
 */
export function readStored(paths: AcmePaths): StoredCertificate | 'mismatch' | undefined {
  if (!existsSync(paths.cert) || !existsSync(paths.key)) return undefined
  try {
    const certPem = readFileSync(paths.cert)
    const x509 = new X509Certificate(certPem)
    if (!x509.checkPrivateKey(createPrivateKey(readFileSync(paths.key)))) return 'mismatch'
    return {
      cert: paths.cert,
      key: paths.key,
      names: dnsNames(x509),
      notBefore: new Date(x509.validFrom),
      notAfter: new Date(x509.validTo),
      fingerprint: x509.fingerprint256,
      issuer: x509.issuer.replace(/\n/g, ', '),
    }
  } catch {
    return 'mismatch'
  }
}

/** True when the certificate names every domain (exact names; ACME here issues no wildcards). */
export function covers(stored: StoredCertificate, domains: string[]): boolean {
  return domains.every((domain) => stored.names.includes(domain.toLowerCase()))
}
