// Automatic HTTPS: the one entry point server/ uses to obtain, serve and renew ACME certificates.
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Server as NetServer } from 'node:net'
import type { AcmeConfig } from './section.js'
import type { CertificateFiles } from '../section.js'
import type { Logger } from '../../observe/log.js'
import { configureTransport, routeLibraryLog } from './account.js'
import { ChallengeResponder } from './challenges.js'
import { directoryUrl } from './config.js'
import { AcmeManager, type AcmeEvent, type AcmeState, type AcmeStatus, type ManagerOptions } from './manager.js'
import { acmePaths } from './storage.js'

export type { AcmeEvent, AcmeState, AcmeStatus }
export { acmeProblems, directoryUrl } from './config.js'

export interface Acme {
  readonly domains: readonly string[]
  /** The certificate from an earlier run to serve at start, when there is a usable one. */
  storedCertificate(): CertificateFiles | undefined
  /** Starts ordering/renewing in the background; `install` serves a new pair (without dropping connections). */
  start(install: (files: CertificateFiles) => void): void
  /** For the plain-HTTP listener: answers an HTTP-01 request and returns true, or returns false. */
  answerHttp(req: IncomingMessage, res: ServerResponse): boolean
  /** For the TLS listener (before it listens): answers TLS-ALPN-01 handshakes on it. */
  interceptTlsAlpn(server: NetServer): void
  status(): AcmeStatus
  onEvent(listener: (event: AcmeEvent) => void): void
  close(): Promise<void>
}

/** Prepares storage and the ACME client settings; nothing talks to the CA before start(). */
/** `sharedLock`: the order lock in the shared state (shared.redis), taken with the lock file. */
export function createAcme(config: AcmeConfig, log: Logger, sharedLock?: ManagerOptions['sharedLock']): Acme {
  const url = directoryUrl(config.directory_url)
  const paths = acmePaths(config.storage, url, config.domains)
  let caBundle: string | undefined
  if (config.ca_bundle) {
    try {
      caBundle = readFileSync(config.ca_bundle, 'utf8')
    } catch (error) {
      throw new Error(`tls.acme.ca_bundle: cannot read ${config.ca_bundle}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`)
    }
  }
  configureTransport(caBundle)
  routeLibraryLog(log)
  const acmeLog = log.child({ component: 'acme' })
  const responder = new ChallengeResponder(paths.challenges, acmeLog)
  const manager = new AcmeManager({ config, directoryUrl: url, paths, responder, log: acmeLog, ...(sharedLock ? { sharedLock } : {}) })
  return {
    domains: config.domains.map((name) => name.toLowerCase()),
    storedCertificate: () => manager.storedCertificate(),
    start: (install) => manager.start(install),
    answerHttp: (req, res) => responder.answerHttp(req, res),
    interceptTlsAlpn: (server) => responder.interceptTlsAlpn(server),
    status: () => manager.status(),
    onEvent: (listener) => manager.onEvent(listener),
    close: () => manager.close(),
  }
}
