// Keeps a valid ACME certificate served: orders when there is none, renews before `renew_before`,
// backs off after failures, and picks up certificates another instance wrote to shared storage.
// It never blocks start-up: until a certificate exists the listener serves a placeholder.
import { watch, type FSWatcher } from 'node:fs'
import type { AcmeConfig } from './section.js'
import type { CertificateFiles } from '../section.js'
import type { Logger } from '../../observe/log.js'
import { writeKeyAndCertificate } from '../pem-files.js'
import { accountClient } from './account.js'
import type { ChallengeResponder } from './challenges.js'
import { tryLock, type HeldLock, type LockHolder } from './lock.js'
import { orderCertificate, type ChallengeType } from './order.js'
import { covers, ensureDirectories, readStored, type AcmePaths, type StoredCertificate } from './storage.js'
import type acme from 'acme-client'

export type AcmeState = 'pending' | 'issued' | 'failed'

export interface AcmeStatus {
  domains: string[]
  challenge: ChallengeType
  directoryUrl: string
  /** pending: no ACME certificate yet, working on it; issued: one is served and the last attempt (if any) succeeded; failed: the last attempt failed. */
  state: AcmeState
  /** What the TLS listener serves for the domains right now. */
  serving: 'acme' | 'placeholder'
  notAfter?: Date
  /** When renewal is due for the served certificate. */
  renewAt?: Date
  lastError?: string
  nextAttemptAt?: Date
  /** Since start: certificates this instance obtained first-time / by renewal, failed attempts. */
  counters: { issued: number; renewed: number; failures: number }
}

export type AcmeEvent =
  | { type: 'issued' | 'renewed'; notAfter: Date; fingerprint: string; durationMs: number }
  | { type: 'loaded'; notAfter: Date; fingerprint: string }
  | { type: 'failed'; error: string; nextAttemptAt: Date; consecutiveFailures: number }

export interface ManagerOptions {
  config: AcmeConfig
  directoryUrl: string
  paths: AcmePaths
  responder: ChallengeResponder
  log: Logger
  /** A holder that touched the lock less recently than this is presumed dead. */
  lockStaleMs?: number
  /**
   * The order lock in the shared state (shared.redis), taken as well as the lock file: one instance orders
   * even where the storage's file semantics are weak. While Redis is unreachable the lock file alone decides.
   */
  sharedLock?: (name: string, ttlMs: number) => Promise<{ release(): Promise<void> } | undefined>
}

/** Longest single wait: the stored certificate is re-read at least this often (shared storage without file events). */
const MAX_SLEEP_MS = 3_600_000
/** How often an instance waiting for another's order looks at the storage (file events come sooner). */
const LOCK_POLL_MS = 2000

function describe(error: unknown): string {
  if (error instanceof TypeError && /reading 'config'/.test(error.message)) {
    // acme-client's retry handler drops the network error of a request it gave up on.
    return 'the CA stopped answering during the order (network error)'
  }
  if (error instanceof Error) return error.message || error.name
  return String(error)
}

export class AcmeManager {
  private install: ((files: CertificateFiles) => void) | undefined
  private served: StoredCertificate | undefined
  private timer: NodeJS.Timeout | undefined
  private watcher: FSWatcher | undefined
  private watchDebounce: NodeJS.Timeout | undefined
  private evaluating: Promise<void> | undefined
  private again = false
  private closed = false
  private client: acme.Client | undefined
  private heldLock: HeldLock | undefined
  private consecutiveFailures = 0
  private retryAt: Date | undefined
  private lastError: string | undefined
  private waitingFor: string | undefined
  private warnedShortLifetime = false
  private readonly counters = { issued: 0, renewed: 0, failures: 0 }
  private readonly listeners: Array<(event: AcmeEvent) => void> = []
  private readonly domains: string[]

  constructor(private readonly options: ManagerOptions) {
    this.domains = options.config.domains.map((name) => name.toLowerCase())
    ensureDirectories(options.paths)
  }

  /** A stored certificate good enough to serve at start (right names, key matches, not expired), if any. */
  storedCertificate(): CertificateFiles | undefined {
    const stored = this.usable(readStored(this.options.paths))
    if (!stored) return undefined
    this.served = stored
    this.options.log.info(
      { domains: this.domains, notAfter: stored.notAfter, renewAt: this.renewAt(stored), issuer: stored.issuer, sha256: stored.fingerprint },
      'serving the stored ACME certificate',
    )
    return { cert: stored.cert, key: stored.key }
  }

  /** Begins the work in the background; `install` swaps a certificate in for the domains. */
  start(install: (files: CertificateFiles) => void): void {
    this.install = install
    if (!this.served) {
      this.options.log.warn({ domains: this.domains, challenge: this.options.config.challenge, directory: this.options.directoryUrl }, 'serving a self-signed certificate until ACME issues one')
    }
    try {
      // Another instance finishing its order shows up here first.
      this.watcher = watch(this.options.paths.certificateDir, { persistent: false }, () => {
        clearTimeout(this.watchDebounce)
        this.watchDebounce = setTimeout(() => this.wake(), 300)
        this.watchDebounce.unref()
      })
      this.watcher.on('error', () => undefined)
    } catch {
      // No file events on this storage: the periodic re-check covers it.
    }
    this.schedule(0)
  }

  onEvent(listener: (event: AcmeEvent) => void): void {
    this.listeners.push(listener)
  }

  status(): AcmeStatus {
    const status: AcmeStatus = {
      domains: [...this.domains],
      challenge: this.options.config.challenge,
      directoryUrl: this.options.directoryUrl,
      state: this.consecutiveFailures > 0 ? 'failed' : this.served ? 'issued' : 'pending',
      serving: this.served ? 'acme' : 'placeholder',
      counters: { ...this.counters },
    }
    if (this.served) {
      status.notAfter = this.served.notAfter
      status.renewAt = this.renewAt(this.served)
    }
    if (this.lastError !== undefined) status.lastError = this.lastError
    if (this.retryAt) status.nextAttemptAt = this.retryAt
    return status
  }

  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    clearTimeout(this.watchDebounce)
    this.watcher?.close()
    // An order in flight is abandoned (acme-client cannot cancel one); give the lock back now.
    this.heldLock?.release()
  }

  private emit(event: AcmeEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (error) {
        this.options.log.error({ err: describe(error) }, 'ACME event listener failed')
      }
    }
  }

  private usable(stored: StoredCertificate | 'mismatch' | undefined): StoredCertificate | undefined {
    if (!stored || stored === 'mismatch') return undefined
    if (!covers(stored, this.domains) || stored.notAfter.getTime() <= Date.now()) return undefined
    return stored
  }

  /** notAfter minus renew_before, or minus a third of the lifetime when renew_before is not shorter than it. */
  private renewAt(stored: StoredCertificate): Date {
    const lifetime = stored.notAfter.getTime() - stored.notBefore.getTime()
    let before = this.options.config.renew_before
    if (before >= lifetime) {
      before = Math.floor(lifetime / 3)
      if (!this.warnedShortLifetime) {
        this.warnedShortLifetime = true
        this.options.log.warn(
          { renew_before_ms: this.options.config.renew_before, lifetime_ms: lifetime },
          'tls.acme.renew_before is not shorter than the certificate lifetime; renewing when a third of it is left',
        )
      }
    }
    return new Date(stored.notAfter.getTime() - before)
  }

  private schedule(delayMs: number): void {
    if (this.closed) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => this.wake(), Math.max(0, Math.min(delayMs, MAX_SLEEP_MS)))
    this.timer.unref()
  }

  /** Runs one evaluation at a time; a wake-up during one runs another right after. */
  private wake(): void {
    if (this.closed) return
    if (this.evaluating) {
      this.again = true
      return
    }
    this.evaluating = this.evaluate()
      .catch((error: unknown) => {
        // Storage trouble (permissions, disk full): log and look again later rather than stop.
        this.options.log.error({ err: describe(error) }, 'ACME certificate check failed')
        this.schedule(this.options.config.retry_min)
      })
      .finally(() => {
        this.evaluating = undefined
        if (this.again) {
          this.again = false
          this.wake()
        }
      })
  }

  private async evaluate(): Promise<void> {
    const now = Date.now()
    const current = this.usable(readStored(this.options.paths))
    if (current) this.serve(current, 'loaded')
    if (current && now < this.renewAt(current).getTime()) {
      // Not due (perhaps renewed by another instance after our own attempt failed): nothing is failing.
      this.consecutiveFailures = 0
      this.retryAt = undefined
      this.lastError = undefined
      this.schedule(this.renewAt(current).getTime() - now)
      return
    }
    if (this.retryAt && now < this.retryAt.getTime()) {
      this.schedule(this.retryAt.getTime() - now)
      return
    }
    const attempt = tryLock(this.options.paths.lock, this.options.lockStaleMs ?? 120_000)
    if (!attempt.acquired) {
      this.noteWaiting(attempt.holder)
      this.schedule(LOCK_POLL_MS)
      return
    }
    let shared: { release(): Promise<void> } | undefined
    if (this.options.sharedLock) {
      try {
        shared = await this.options.sharedLock(`acme:${this.domains.join(',')}`, this.options.lockStaleMs ?? 120_000)
        if (!shared) {
          attempt.lock.release()
          this.noteWaiting(undefined)
          this.schedule(LOCK_POLL_MS)
          return
        }
      } catch (error) {
        this.options.log.warn({ err: describe(error) }, 'ACME order lock: the shared state is unreachable; the lock file alone decides')
      }
    }
    this.waitingFor = undefined
    this.heldLock = attempt.lock
    try {
      // Another instance may have finished just before we got the lock.
      const latest = this.usable(readStored(this.options.paths))
      if (latest && Date.now() < this.renewAt(latest).getTime()) {
        this.serve(latest, 'loaded')
        this.schedule(this.renewAt(latest).getTime() - Date.now())
        return
      }
      await this.order(latest)
    } finally {
      attempt.lock.release()
      this.heldLock = undefined
      await shared?.release()
    }
  }

  private noteWaiting(holder: LockHolder | undefined): void {
    const who = holder ? `${holder.host} pid ${holder.pid}` : 'another instance'
    if (this.waitingFor === who) return
    this.waitingFor = who
    this.options.log.info({ domains: this.domains, lock: this.options.paths.lock, holder }, `another instance (${who}) is ordering the ACME certificate; waiting for it`)
  }

  private async order(previous: StoredCertificate | undefined): Promise<void> {
    const { config, paths, log, directoryUrl, responder } = this.options
    const started = performance.now()
    log.info({ domains: this.domains, challenge: config.challenge, directory: directoryUrl, notAfter: previous?.notAfter }, previous ? 'renewing the ACME certificate' : 'ordering an ACME certificate')
    let stored: StoredCertificate | undefined
    try {
      this.client ??= await accountClient({ directoryUrl, email: config.email, eab: config.eab, paths, log })
      const issued = await orderCertificate({
        client: this.client,
        domains: this.domains,
        challenge: config.challenge,
        responder,
        email: config.email,
        selfCheck: config.self_check,
      })
      writeKeyAndCertificate(paths.key, issued.keyPem, paths.cert, issued.chainPem)
      stored = this.usable(readStored(paths))
      if (!stored) throw new Error(`the certificate written to ${paths.cert} does not cover ${this.domains.join(', ')} or does not match its key`)
    } catch (error) {
      // The next attempt registers again (harmless for a known key) in case the CA forgot the account.
      this.client = undefined
      this.consecutiveFailures++
      this.counters.failures++
      const delay = Math.min(config.retry_min * 2 ** Math.min(this.consecutiveFailures - 1, 30), config.retry_max)
      this.retryAt = new Date(Date.now() + delay)
      this.lastError = describe(error)
      log.error(
        { domains: this.domains, err: this.lastError, attempt: this.consecutiveFailures, nextAttemptAt: this.retryAt, serving: this.served ? 'acme' : 'placeholder' },
        `ACME order failed; next attempt at ${this.retryAt.toISOString()}`,
      )
      this.emit({ type: 'failed', error: this.lastError, nextAttemptAt: this.retryAt, consecutiveFailures: this.consecutiveFailures })
      this.schedule(delay)
      return
    }
    this.consecutiveFailures = 0
    this.retryAt = undefined
    this.lastError = undefined
    const renewed = previous !== undefined || this.served !== undefined
    this.schedule(this.renewAt(stored).getTime() - Date.now())
    // A certificate that fails to load here is not re-ordered: the next check serves it from storage.
    this.serve(stored, renewed ? 'renewed' : 'issued', Math.round(performance.now() - started))
  }

  /** Swaps `stored` in when it is not what is served already. */
  private serve(stored: StoredCertificate, how: 'issued' | 'renewed' | 'loaded', durationMs = 0): void {
    if (stored.fingerprint === this.served?.fingerprint && how === 'loaded') return
    this.install?.({ cert: stored.cert, key: stored.key })
    this.served = stored
    const fields = { domains: this.domains, notAfter: stored.notAfter, renewAt: this.renewAt(stored), issuer: stored.issuer, sha256: stored.fingerprint }
    if (how === 'loaded') {
      this.options.log.info(fields, 'serving the ACME certificate found in storage')
      this.emit({ type: 'loaded', notAfter: stored.notAfter, fingerprint: stored.fingerprint })
      return
    }
    this.counters[how]++
    this.options.log.info({ ...fields, ms: durationMs }, how === 'issued' ? 'ACME certificate issued' : 'ACME certificate renewed')
    this.emit({ type: how, notAfter: stored.notAfter, fingerprint: stored.fingerprint, durationMs })
  }
}
