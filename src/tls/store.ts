// Holds the served certificates: picks one by SNI, and reloads them when their files change.
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls'
import { X509Certificate, createHash } from 'node:crypto'
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, resolve } from 'node:path'
import type { CertificateFiles } from './section.js'
import { serverCipherOptions } from './ciphers.js'
import { BoundedCache } from '../lib/bounded-cache.js'

export interface LoadedCertificate {
  files: CertificateFiles
  names: string[]
  notAfter: Date
  fingerprint: string
  /** Issued by itself (the generated one, an ACME placeholder): no client can verify it without being told to trust it. */
  selfSigned: boolean
  options: SecureContextOptions
  context: SecureContext
  x509: X509Certificate
}

export interface CertificateStoreEvents {
  onReload(loaded: LoadedCertificate[]): void
  onReloadError(error: Error): void
}

function namesOf(cert: X509Certificate): string[] {
  const names = (cert.subjectAltName ?? '')
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase())
  const cn = /CN=([^\n,]+)/.exec(cert.subject)?.[1]
  if (names.length === 0 && cn) names.push(cn.toLowerCase())
  return names
}

/** Names whose coverage is remembered at most (the names clients really use are a handful). */
const COVERAGE_NAMES = 1000

export class CertificateStore {
  private loaded: LoadedCertificate[] = []
  private exact = new Map<string, LoadedCertificate>()
  private wildcard = new Map<string, LoadedCertificate>()
  private watchers: FSWatcher[] = []
  private reloadTimer: NodeJS.Timeout | undefined
  private lastDigest = ''
  /** covers() answers for the loaded set, per name: the Host check asks on every request. Cleared on reload. */
  private readonly coverage = new BoundedCache<string, boolean>({ max: COVERAGE_NAMES })

  constructor(
    private files: CertificateFiles[],
    private readonly minVersion: 'TLSv1.2' | 'TLSv1.3',
    private readonly events: CertificateStoreEvents,
  ) {
    if (files.length === 0) throw new Error('no certificate files given')
    this.load()
  }

  get certificates(): readonly LoadedCertificate[] {
    return this.loaded
  }

  /** Options for the server's default context, used when a client sends no SNI (e.g. an IP address). */
  defaultOptions(): SecureContextOptions {
    return (this.loaded[0] as LoadedCertificate).options
  }

  /** The context for a server name: exact match, then wildcard, then the first certificate. */
  contextFor(servername: string | undefined): SecureContext {
    return this.certificateFor(servername).context
  }

  /** The certificate a client naming `servername` (or none) is served. */
  certificateFor(servername: string | undefined): LoadedCertificate {
    const name = servername?.toLowerCase()
    if (name) {
      const exact = this.exact.get(name)
      if (exact) return exact
      const dot = name.indexOf('.')
      const wild = dot > 0 ? this.wildcard.get(name.slice(dot + 1)) : undefined
      if (wild) return wild
    }
    return this.loaded[0] as LoadedCertificate
  }

  /** Whether a served certificate is valid for this host name or IP address, as a verifying client would check it. */
  covers(host: string): boolean {
    const known = this.coverage.get(host)
    if (known !== undefined) return known
    const ip = isIP(host) !== 0
    const covered = this.loaded.some((entry) =>
      ip ? entry.x509.checkIP(host) !== undefined : entry.x509.checkHost(host, { subject: 'default' }) !== undefined,
    )
    // Names come from clients: a scanner sending new ones pushes out the least used rather than growing the memo.
    this.coverage.set(host, covered)
    return covered
  }

  /** Reads all files; throws (keeping the previous set) when any pair is unreadable or mismatched. */
  load(): boolean {
    const pairs = this.files.map((files) => ({ files, cert: readFileSync(files.cert), key: readFileSync(files.key) }))
    const digest = createHash('sha256')
    for (const pair of pairs) digest.update(pair.cert).update(pair.key)
    const hex = digest.digest('hex')
    if (hex === this.lastDigest) return false
    const loaded = pairs.map(({ files, cert, key }) => {
      const options: SecureContextOptions = { cert, key, minVersion: this.minVersion, ...serverCipherOptions }
      let context: SecureContext
      try {
        context = createSecureContext(options) // throws on a key that does not match its cert
      } catch (error) {
        // OpenSSL's message ("key values mismatch") names neither file: a reload error must.
        throw new Error(`${files.key} (the key of ${files.cert}): ${(error as Error).message}`)
      }
      const x509 = new X509Certificate(cert)
      const selfSigned = x509.checkIssued(x509) && x509.verify(x509.publicKey)
      return { files, names: namesOf(x509), notAfter: new Date(x509.validTo), fingerprint: x509.fingerprint256, selfSigned, options, context, x509 }
    })
    const exact = new Map<string, LoadedCertificate>()
    const wildcard = new Map<string, LoadedCertificate>()
    for (const entry of loaded) {
      for (const name of entry.names) {
        if (name.startsWith('*.')) {
          if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), entry)
        } else if (!exact.has(name)) exact.set(name, entry)
      }
    }
    this.loaded = loaded
    this.coverage.clear()
    this.exact = exact
    this.wildcard = wildcard
    this.lastDigest = hex
    return true
  }

  /**
   * Serves another set of files from now on (ACME swapping its certificate in for the placeholder).
   * Throws, keeping the current set, when the new files do not load.
   */
  setFiles(files: CertificateFiles[]): void {
    if (files.length === 0) throw new Error('no certificate files given')
    const previous = this.files
    this.files = files
    try {
      if (this.load()) this.events.onReload(this.loaded)
    } catch (error) {
      this.files = previous
      throw error
    }
    if (this.watchers.length > 0) {
      for (const watcher of this.watchers) watcher.close()
      this.watchers = []
      this.watch()
    }
  }

  /** Watches the certificates' directories (which also catches atomic renames and symlink swaps). */
  watch(): void {
    const dirs = new Set(this.files.flatMap((files) => [dirname(resolve(files.cert)), dirname(resolve(files.key))]))
    for (const dir of dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.scheduleReload())
        watcher.on('error', (error) => this.events.onReloadError(error))
        this.watchers.push(watcher)
      } catch (error) {
        this.events.onReloadError(error as Error)
      }
    }
  }

  private scheduleReload(): void {
    clearTimeout(this.reloadTimer)
    // Writers often replace cert and key in two steps: wait for both before reading.
    this.reloadTimer = setTimeout(() => {
      try {
        if (this.load()) this.events.onReload(this.loaded)
      } catch (error) {
        this.events.onReloadError(error as Error)
      }
    }, 250)
    this.reloadTimer.unref()
  }

  close(): void {
    clearTimeout(this.reloadTimer)
    for (const watcher of this.watchers) watcher.close()
    this.watchers = []
  }
}
