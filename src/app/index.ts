// Composition root: builds the gateway from config step by step (upstreams, observability, auth, certificates, pipeline, listeners) and owns its shutdown.
import { hostname } from 'node:os'
import type { Config } from './config.js'
import { createUpstreams, type UpstreamSet } from '../upstreams/upstreams.js'
import type { CertificateStore } from '../tls/store.js'
import type { SelfSignedCertificate } from '../tls/selfsigned.js'
import type { Acme } from '../tls/acme/index.js'
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../embedded/registry.js'
import { createAuthenticator, type GeneratedAdmin } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import type { HealthMonitor } from '../upstreams/health.js'
import { loadCertificates } from './certificates.js'
import { displayHost, parseListen, type ListenAddress } from './listen.js'
import { openListeners, type Listeners } from './listeners.js'
import { createObservability, type Observability } from './observability.js'
import { buildPipeline, type ListenerState } from './pipeline.js'
import { Shutdown } from './shutdown.js'

export interface RunningPortier {
  /** The URL clients use, e.g. https://localhost:5443 */
  url: string
  address: ListenAddress
  upstreams: UpstreamSet
  selfSigned?: SelfSignedCertificate
  certificates?: CertificateStore
  embedded?: EmbeddedRegistry
  redirectAddress?: ListenAddress
  /** Automatic HTTPS (tls.acme): status() for readiness and metrics, onEvent() for issued/renewed/failed. */
  acme?: Acme
  /** The admin listener (/metrics, /healthz, /readyz), when admin.listen is set. */
  adminAddress?: ListenAddress
  health: HealthMonitor
  observability: Observability
  /** Set on the start that created the htpasswd file: the credentials to show the operator once. */
  generatedAdmin?: GeneratedAdmin
  /** Drains and stops everything, last started first. Idempotent: every call answers the same promise. */
  close(): Promise<void>
}

/** A gateway built from config: start() brings it up step by step; close() undoes what has started, once. */
export interface Portier {
  start(): Promise<RunningPortier>
  close(): Promise<void>
}

export function buildPortier(config: Config, log: Logger): Portier {
  const shutdown = new Shutdown()
  let started: Promise<RunningPortier> | undefined
  return {
    start: () => (started ??= start(config, log, shutdown)),
    close: () => shutdown.close(),
  }
}

/** Builds and starts the gateway; a start that fails stops what it had started before rejecting. */
export async function startPortier(config: Config, log: Logger): Promise<RunningPortier> {
  const portier = buildPortier(config, log)
  try {
    return await portier.start()
  } catch (error) {
    await portier.close()
    throw error
  }
}

async function start(config: Config, log: Logger, shutdown: Shutdown): Promise<RunningPortier> {
  const { upstreams, embedded } = await startUpstreams(config, log, shutdown)
  const observability = createObservability(config, upstreams.all, log)
  shutdown.defer(() => observability.close())
  // A restarted embedded registry is checked at once, so requests do not get 503 until the next check.
  embedded?.onRestarted(() => Promise.all(upstreams.all.map((upstream) => observability.health.checkNow(upstream))).then(() => undefined))
  const auth = await createAuthenticator(config.auth, log, observability.metrics)
  shutdown.defer(() => auth.close())
  const certificates = config.tls.enabled ? await loadCertificates(config, log, shutdown, observability) : undefined
  const state: ListenerState = { port: parseListen(config.server.listen).port, serving: false }
  const pipeline = buildPipeline(config, log, shutdown, { upstreams, observability, auth, certificates, state })
  // A close() while starting has stopped what was up; opening listeners now would leave them open.
  if (shutdown.closed) throw new Error('closed during start-up')
  const listeners = await openListeners(config, log, shutdown, { pipeline, observability, certificates, state })
  // Only now that every listener is up can the CA's validation reach us.
  certificates?.startAcme()
  state.serving = true

  const url = config.server.public_url || `${config.tls.enabled ? 'https' : 'http'}://${displayHost(listeners.address)}:${listeners.address.port}`
  logReady(log, url, listeners, upstreams)
  const running: RunningPortier = { url, address: listeners.address, upstreams, health: observability.health, observability, close: () => shutdown.close() }
  if (listeners.adminAddress) running.adminAddress = listeners.adminAddress
  if (listeners.redirectAddress) running.redirectAddress = listeners.redirectAddress
  if (certificates) running.certificates = certificates.store
  if (certificates?.selfSigned) running.selfSigned = certificates.selfSigned
  if (certificates?.acme) running.acme = certificates.acme
  if (embedded) running.embedded = embedded
  if (auth.generatedAdmin) running.generatedAdmin = auth.generatedAdmin
  return running
}

/** The configured upstreams, or (with none) the embedded registry started as the one upstream. */
async function startUpstreams(config: Config, log: Logger, shutdown: Shutdown): Promise<{ upstreams: UpstreamSet; embedded?: EmbeddedRegistry }> {
  let embedded: EmbeddedRegistry | undefined
  let targets = config.upstreams
  if (targets.length === 0) {
    const registry = await startEmbeddedRegistry({
      binary: config.embedded_registry.binary,
      dataDir: config.embedded_registry.data_dir,
      maxBackoffMs: config.embedded_registry.restart_max_backoff,
      log,
    })
    embedded = registry
    shutdown.defer(() => registry.stop())
    targets = [{ name: 'embedded', url: registry.url, username: '', password: '', forward_authorization: false }]
  }
  const upstreams = createUpstreams(targets, config.timeouts)
  shutdown.defer(() => upstreams.close())
  return embedded ? { upstreams, embedded } : { upstreams }
}

function logReady(log: Logger, url: string, listeners: Listeners, upstreams: UpstreamSet): void {
  const { address, redirectAddress, adminAddress } = listeners
  log.info(
    {
      url,
      listen: `${address.host}:${address.port}`,
      ...(redirectAddress ? { redirect_listen: `${redirectAddress.host}:${redirectAddress.port}` } : {}),
      ...(adminAddress ? { admin_listen: `${adminAddress.host}:${adminAddress.port}` } : {}),
      upstreams: upstreams.all.map((u) => ({ name: u.name, url: u.origin })),
      hostname: hostname(),
      node: process.version,
    },
    'portier ready',
  )
}
