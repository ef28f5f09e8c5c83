// Start-up step: the certificates the main listener serves (configured files, ACME, or a self-signed one) and their reloads.
import type { Server as HttpsServer } from 'node:https'
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { ReadinessCheck } from '../observe/admin.js'
import { CertificateStore } from '../tls/store.js'
import { ensureSelfSigned, type SelfSignedCertificate } from '../tls/selfsigned.js'
import type { Acme } from '../tls/acme/index.js'
import type { Locks } from '../shared/index.js'
import type { Observability } from './observability.js'
import type { Shutdown } from './shutdown.js'

export interface ServedCertificates {
  store: CertificateStore
  /** Set when Portier generated (or reused) its own certificate because none was configured. */
  selfSigned?: SelfSignedCertificate
  /** Automatic HTTPS (tls.acme). */
  acme?: Acme
  readiness(): ReadinessCheck
  /** Hands the listener to the certificates: reloads swap its context, TLS-ALPN-01 answers on it; starts watching the files. */
  attach(server: HttpsServer): void
  /** Starts ACME issuance; only once every listener is up, so the CA's validation can reach us. */
  startAcme(): void
}

export async function loadCertificates(config: Config, log: Logger, shutdown: Shutdown, observability: Observability, locks?: Locks): Promise<ServedCertificates> {
  let files = config.tls.certificates
  let selfSigned: SelfSignedCertificate | undefined
  let acme: Acme | undefined
  if (config.tls.acme.enabled) {
    // Loaded only when enabled: acme-client and its dependencies add ~28 MiB of resident memory.
    const { createAcme } = await import('../tls/acme/index.js')
    // With shared.redis one instance orders even where the storage's lock file is unreliable.
    const created = createAcme(config.tls.acme, log, locks ? (name: string, ttlMs: number) => locks.tryAcquire(name, ttlMs) : undefined)
    acme = created
    shutdown.defer(() => created.close())
    // Until ACME issues one: the certificate from an earlier run, or a self-signed one naming the domains.
    let placeholder = created.storedCertificate()
    if (!placeholder) {
      const generated = ensureSelfSigned(config.tls.self_signed.dir, [...config.tls.self_signed.hosts, ...created.domains])
      placeholder = { cert: generated.certPath, key: generated.keyPath }
    }
    files = [placeholder, ...files]
  } else if (files.length === 0) {
    selfSigned = ensureSelfSigned(config.tls.self_signed.dir, config.tls.self_signed.hosts)
    files = [{ cert: selfSigned.certPath, key: selfSigned.keyPath }]
    logSelfSigned(selfSigned, log)
  }

  let server: HttpsServer | undefined
  const store: CertificateStore = new CertificateStore(files, config.tls.min_version, {
    onReload: (loaded) => {
      server?.setSecureContext(store.defaultOptions())
      log.info({ certificates: loaded.map((c) => ({ names: c.names, sha256: c.fingerprint, notAfter: c.notAfter })) }, 'certificates reloaded')
    },
    onReloadError: (error) => log.error({ err: error.message }, 'certificate reload failed; still serving the previous certificates'),
  })
  shutdown.defer(() => store.close())
  observability.watchCertificates(() => store.certificates)
  if (acme) observability.watchAcme(acme)

  const served: ServedCertificates = {
    store,
    readiness: () => {
      const certificates = store.certificates.map((c) => ({ names: c.names, notAfter: c.notAfter.toISOString(), selfSigned: selfSigned !== undefined }))
      // Until ACME issues, a placeholder certificate is served: ready, and the detail says so.
      return { name: 'certificate', ready: store.certificates.length > 0, detail: acme ? { served: certificates, acme: acme.status() } : certificates }
    },
    attach: (listener) => {
      server = listener
      if (acme && config.tls.acme.challenge === 'tls-alpn-01') acme.interceptTlsAlpn(listener)
      store.watch()
    },
    startAcme: () => {
      // The ACME certificate serves its domains and clients without SNI; static ones other names.
      const staticFiles = config.tls.certificates
      acme?.start((pair) => store.setFiles([pair, ...staticFiles]))
    },
  }
  if (selfSigned) served.selfSigned = selfSigned
  if (acme) served.acme = acme
  return served
}

function logSelfSigned(selfSigned: SelfSignedCertificate, log: Logger): void {
  if (selfSigned.replaced) {
    // Clients trusted the old fingerprint (certs.d/ca.crt): they refuse the new one until told.
    log.warn(
      { cert: selfSigned.certPath, sha256: selfSigned.fingerprint, previous_sha256: selfSigned.replaced.fingerprint, reason: selfSigned.replaced.reason, names: selfSigned.names },
      'replaced the self-signed certificate: its fingerprint changed; clients must trust the new one',
    )
  } else {
    log.info(
      { cert: selfSigned.certPath, sha256: selfSigned.fingerprint, names: selfSigned.names, created: selfSigned.created },
      selfSigned.created ? 'generated a self-signed certificate' : 'using the self-signed certificate generated earlier',
    )
  }
}
