// Composition root: builds the gateway from config step by step (upstreams, observability, auth, certificates, pipeline, listeners) and owns its shutdown.
import { hostname } from 'node:os'
import { join, resolve } from 'node:path'
import type { Config } from './config.js'
import { createUpstreams, type UpstreamSet } from '../upstreams/upstreams.js'
import type { CertificateStore } from '../tls/store.js'
import type { SelfSignedCertificate } from '../tls/selfsigned.js'
import type { Acme } from '../tls/acme/index.js'
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../embedded/registry.js'
import { createAuthenticator, type GeneratedAdmin } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { HealthMonitor } from '../upstreams/health.js'
import { loadCertificates } from './certificates.js'
import { displayHost, parseListen, type ListenAddress } from './listen.js'
import { openListeners, type Listeners } from './listeners.js'
import { createObservability, type Observability } from './observability.js'
import { buildPipeline, type ListenerState } from './pipeline.js'
import { Shutdown } from './shutdown.js'
import { startEvents, type Events } from '../events/index.js'
import { registerEventRoutes } from '../events/routes.js'
import { startCaches, type PullThroughCaches } from '../cache/index.js'
import { openStore } from '../store/open.js'
import type { StoreEngine } from '../store/engine.js'
import { PushPullTimes } from '../store/times.js'
import { scanTags, scanUntilComplete, type ScanAttempt } from '../store/scan.js'
import { firstInWindow, giveBackWindow } from '../store/turns.js'
import { AuditTrail, startAudit } from '../store/audit.js'
import { registerStoreRoutes } from '../store/routes.js'
import { uiAuditLog, uiStoreHook } from '../store/ui-hook.js'
import { countCoalescedLogins, watchStore } from '../store/metrics.js'
import { StoreValues } from '../store/shared-values.js'

/** How often instances sharing a PostgreSQL store without shared.redis read the shared values (the maintenance switch). */
const STORE_VALUES_POLL_MS = 1000

/** Instances sharing a PostgreSQL store that start within one window of this length run one start-up scan. */
const SCAN_WINDOW_MS = 10 * 60_000
/** A start-up scan that did not read everything runs again after store.scan_retry, doubling up to this wait, this many times in all (about 35 minutes from the default 30 s). */
const SCAN_RETRY_MAX_MS = 10 * 60_000
const SCAN_ATTEMPTS = 8
import { GcHistory } from '../housekeeping/gc-history.js'
import { createUsage } from './usage.js'
import { createRegistryClient } from '../ui/registry-client.js'
import { loadSso } from '../ui/index.js'
import { startShared } from './shared.js'
import { startRunLocks } from './run-locks.js'
import type { SharedState } from '../shared/index.js'
import { AccessTokens, type TokenAuditEvent } from '../auth/access-tokens/index.js'
import { registerTokenRoutes } from '../admin/token-routes.js'
import { accessAdmin, registerAccessAdminRoutes, startAccessGrants } from './access.js'
import { keepMemoryReducerAwake } from '../lib/memory-reducer.js'

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
  /** The persistent store (SQLite at store.path, or PostgreSQL at store.url): push/pull times, the audit trail, the events queue. */
  store: StoreEngine
  /** Push and pull times per repository, tag and digest (recorded from finished requests). */
  times: PushPullTimes
  /** The audit trail (audit.enabled). */
  audit?: AuditTrail
  /** Webhooks (events.endpoints), when any are configured. */
  events?: Events
  /** Hot state shared with the other instances (shared.redis), or this process's own without it. */
  shared: SharedState
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

/** How a worker of server.workers starts: with what the primary process holds for all of them. */
export interface WorkerParts {
  /** The shared state the primary holds (without shared.redis): used instead of this process's own. */
  shared?: SharedState
  /** The embedded registry the primary runs: used as the upstream instead of starting one here. */
  embeddedUrl?: string
  /** Told of the metrics before anything is served: /metrics answers every worker's sum. */
  onMetrics?: (metrics: Metrics) => void
}

export function buildPortier(config: Config, log: Logger, parts: WorkerParts = {}): Portier {
  const shutdown = new Shutdown()
  let started: Promise<RunningPortier> | undefined
  return {
    start: () => (started ??= start(config, log, shutdown, parts)),
    close: () => shutdown.close(),
  }
}

/** Builds and starts the gateway; a start that fails stops what it had started before rejecting. */
export async function startPortier(config: Config, log: Logger, parts: WorkerParts = {}): Promise<RunningPortier> {
  const portier = buildPortier(config, log, parts)
  try {
    return await portier.start()
  } catch (error) {
    await portier.close()
    throw error
  }
}

async function start(config: Config, log: Logger, shutdown: Shutdown, parts: WorkerParts): Promise<RunningPortier> {
  // First: a store that cannot be opened (or is from a newer Portier) stops the start before anything runs.
  const store = await openStore(config.store, log)
  shutdown.defer(() => store.close())
  // So that V8 gives back what a busy stretch grew once the process is quiet (src/lib/memory-reducer.ts).
  const reducer = keepMemoryReducerAwake()
  shutdown.defer(() => reducer.stop())
  const { upstreams, embedded } = await startUpstreams(config, log, shutdown, parts.embeddedUrl)
  const observability = createObservability(config, upstreams.all, log)
  if (observability.metrics) watchStore(store, observability.metrics.registry)
  if (observability.metrics) parts.onMetrics?.(observability.metrics)
  const times = new PushPullTimes(store)
  observability.recorder.listen(times.listener())
  const onCoalesced = observability.metrics ? countCoalescedLogins(observability.metrics.registry) : undefined
  const audit = config.audit.enabled ? new AuditTrail(store, Date.now, { loginIntervalMs: config.audit.login_interval, ...(onCoalesced ? { onCoalesced } : {}) }) : undefined
  // Tables first (on PostgreSQL the first instance migrates, under a lock, and the others wait for it).
  await times.ready
  await audit?.ready
  if (audit) {
    observability.recorder.listen(audit.listener())
    const pruning = startAudit(audit, {
      retentionMs: config.audit.retention,
      pruneIntervalMs: config.audit.prune_interval,
      // Instances sharing a PostgreSQL store: one of them prunes in each interval.
      claim: () => firstInWindow(store, 'audit:prune', config.audit.prune_interval, Date.now(), (error) =>
        log.warn({ err: error instanceof Error ? error.message : String(error) }, 'audit trail: could not claim pruning in the store; this instance prunes')),
      onPruned: (count) => log.info({ count }, 'audit trail: entries older than audit.retention deleted'),
      onError: (error) => log.error({ err: error instanceof Error ? error.message : String(error) }, 'audit trail: pruning failed'),
    })
    shutdown.defer(() => pruning.stop())
  }
  shutdown.defer(() => observability.close())
  // Before auth and the pipeline: the throttle, sessions, maintenance and caches share through it.
  const shared = await startShared(config, log, shutdown, observability.metrics, parts.shared)
  const caches = await startPullThroughCaches(config, log, shutdown, observability)
  // A restarted embedded registry is checked at once, so requests do not get 503 until the next check.
  embedded?.onRestarted(() => Promise.all(upstreams.all.map((upstream) => observability.health.checkNow(upstream))).then(() => undefined))
  // Access tokens (access_tokens.*) live in the store (either engine); htpasswd users who are removed lose theirs, checked
  // through auth once it is built. With shared.redis a revocation reaches every instance at once.
  const owners: { active?: (user: string) => boolean } = {}
  const accessTokens = accessTokensWanted(config)
    ? new AccessTokens(store, {
        cacheTtlMs: config.access_tokens.cache_ttl,
        accountActive: (user) => owners.active?.(user) ?? false,
        revocations: shared.revocations,
        ...(audit ? { onAudit: (event: TokenAuditEvent) => audit.record(tokenAuditEntry(event)) } : {}),
      })
    : undefined
  await accessTokens?.ready
  // Groups and grants made in the web UI: the ACL adds them to auth.acl.
  const grants = await startAccessGrants(config, store, shared, log, shutdown)
  const auth = await createAuthenticator(config.auth, log, observability.metrics, { grants: () => grants.set, ...(accessTokens ? { accessTokens } : {}) }, shared.counters)
  if (auth.accountActive) owners.active = auth.accountActive
  shutdown.defer(() => auth.close())
  const certificates = config.tls.enabled ? await loadCertificates(config, log, shutdown, observability, shared.locks) : undefined
  const state: ListenerState = { port: parseListen(config.server.listen).port, serving: false }
  // Webhooks listen to finished requests from the first one on; their queue (in the store) outlives restarts.
  const events = startEvents(config.events, { recorder: observability.recorder, metrics: observability.metrics, log, port: () => state.port, store })
  if (events) shutdown.defer(() => events.close())
  // Storage over time and pulls per day (the UI's charts), and the GC history: kept in the store across restarts.
  // Scheduled GC, retention and storage samples run at one instance per scheduled time (shared.redis, else a PostgreSQL store).
  const runLocks = await startRunLocks(config, log, shutdown, { store, shared, metrics: observability.metrics })
  const usage = createUsage(config, log, shutdown, { store, times, metrics: observability.metrics, runLocks })
  const gcHistory = new GcHistory(store)
  const sso = await loadSso(config.ui)
  // Several instances on one PostgreSQL store without shared.redis: the maintenance switch (GC's too) is shared through the store.
  const storeValues = store.kind === 'postgres' && shared.engine === 'local' ? new StoreValues(store, STORE_VALUES_POLL_MS, log) : undefined
  if (storeValues) {
    await storeValues.start()
    shutdown.defer(() => storeValues.stop())
  }
  const uiAudit = uiStoreHook(times, audit)
  const pipeline = buildPipeline(config, log, shutdown, { ...(sso ? { sso } : {}), ...(storeValues ? { storeValues } : {}), upstreams, observability, auth, certificates, state, times, usage, gcHistory, storeReadiness: () => storeReadiness(store), ...(caches ? { pullThrough: caches.routes } : {}), ...(events ? { events } : {}), uiAudit, ...(audit ? { uiAuditLog: uiAuditLog(audit) } : {}), shared, runLocks, ...(accessTokens ? { accessTokens: { tokens: accessTokens, policy: config.access_tokens } } : {}), access: accessAdmin(config, grants, auth, shared) })
  registerEventRoutes(pipeline.adminApi, events, log)
  registerStoreRoutes(pipeline.adminApi, { audit, times })
  usage.registerRoutes(pipeline.adminApi)
  if (accessTokens) registerTokenRoutes(pipeline.adminApi, accessTokens, config.access_tokens)
  registerAccessAdminRoutes(pipeline.adminApi, auth, grants, uiAudit)
  // A close() while starting has stopped what was up; opening listeners now would leave them open.
  if (shutdown.closed) throw new Error('closed during start-up')
  const listeners = await openListeners(config, log, shutdown, { pipeline, observability, certificates, state })
  // Only now that every listener is up can the CA's validation reach us.
  certificates?.startAcme()
  state.serving = true
  if (config.store.scan) {
    // In the background: tags older than Portier get a first-seen time; serving never waits for it.
    const scan = new AbortController()
    shutdown.defer(() => scan.abort())
    const issue = auth.issueServiceToken
    const registry = createRegistryClient((context) => pipeline.router.answer(context), issue ? { serviceTokens: (access) => issue('portier-store', access) } : {})
    const scanOnce = async (): Promise<ScanAttempt> => {
      // Instances sharing a PostgreSQL store that start together (a deployment, a rolling restart) scan once.
      const askedAt = Date.now()
      const first = await firstInWindow(store, 'store:scan', SCAN_WINDOW_MS, askedAt, (error) =>
        log.warn({ err: error instanceof Error ? error.message : String(error) }, 'store scan: could not claim the scan in the store; this instance scans'))
      if (!first) {
        log.info({ window_minutes: SCAN_WINDOW_MS / 60_000 }, 'store scan: skipped, another instance sharing this PostgreSQL store began one in this window')
        return 'skipped'
      }
      const result = await scanTags({ registry, times, log, concurrency: config.store.scan_concurrency, signal: scan.signal })
      if (!result.aborted && result.failed === 0) return 'complete'
      // Not all read: an instance that starts later in the window scans, and so does this one after store.scan_retry.
      await giveBackWindow(store, 'store:scan', SCAN_WINDOW_MS, askedAt)
      return 'incomplete'
    }
    scanUntilComplete(scanOnce, { retryMs: config.store.scan_retry, maxAttempts: SCAN_ATTEMPTS, maxDelayMs: SCAN_RETRY_MAX_MS, signal: scan.signal, log })
      .catch((error: unknown) => log.error({ err: String(error) }, 'store scan failed'))
  }

  const url = config.server.public_url || `${config.tls.enabled ? 'https' : 'http'}://${displayHost(listeners.address)}:${listeners.address.port}`
  logReady(log, url, listeners, upstreams)
  const running: RunningPortier = { url, address: listeners.address, upstreams, health: observability.health, observability, store, times, shared, close: () => shutdown.close() }
  if (listeners.adminAddress) running.adminAddress = listeners.adminAddress
  if (listeners.redirectAddress) running.redirectAddress = listeners.redirectAddress
  if (certificates) running.certificates = certificates.store
  if (certificates?.selfSigned) running.selfSigned = certificates.selfSigned
  if (certificates?.acme) running.acme = certificates.acme
  if (embedded) running.embedded = embedded
  if (auth.generatedAdmin) running.generatedAdmin = auth.generatedAdmin
  if (audit) running.audit = audit
  if (events) running.events = events
  return running
}

/** Access tokens need users of Portier's own (htpasswd, or the built-in token server) and access_tokens.enabled. */
function accessTokensWanted(config: Config): boolean {
  if (!config.access_tokens.enabled || config.auth.mode === 'none') return false
  return !(config.auth.mode === 'token' && config.auth.token.external.enabled)
}

/** A token's create, revoke or refusal as an audit trail entry. */
function tokenAuditEntry(event: TokenAuditEvent): Parameters<AuditTrail['record']>[0] {
  return {
    at: Date.now(), action: event.action, outcome: event.outcome, status: event.action === 'token.refused' ? 401 : event.action === 'token.create' ? 201 : 200,
    user: event.user, client: event.client, userAgent: undefined, repository: undefined, tag: undefined, digest: undefined, size: undefined,
    sourceRepository: undefined, requestId: '', subject: event.subject,
  }
}

/** /readyz's store check: not ready while the engine does not answer (writes that can wait are queued meanwhile). */
function storeReadiness(store: StoreEngine): { name: string; ready: boolean; detail: unknown } {
  const health = store.health()
  return { name: 'store', ready: health.up, detail: health.up ? { engine: store.kind } : { engine: store.kind, reason: health.reason, queued_writes: store.queued } }
}

/** The configured upstreams, or (with none) the embedded registry started as the one upstream. */
async function startUpstreams(config: Config, log: Logger, shutdown: Shutdown, embeddedUrl?: string): Promise<{ upstreams: UpstreamSet; embedded?: EmbeddedRegistry }> {
  let embedded: EmbeddedRegistry | undefined
  let targets = config.upstreams
  if (targets.length === 0 && embeddedUrl !== undefined) {
    // A worker of server.workers: the primary runs the one embedded registry; its storage is read the same way.
    targets = [{ name: 'embedded', url: embeddedUrl, username: '', password: '', forward_authorization: false, storage: embeddedStorage(config), storage_uploads: config.embedded_registry.storage_uploads }]
  } else if (targets.length === 0) {
    const registry = await startEmbeddedRegistry({
      binary: config.embedded_registry.binary,
      dataDir: config.embedded_registry.data_dir,
      maxBackoffMs: config.embedded_registry.restart_max_backoff,
      log,
    })
    embedded = registry
    shutdown.defer(() => registry.stop())
    // Its storage (data_dir/storage, as src/embedded/registry.ts lays it out) is Portier's to read: blob GET/HEAD come from it.
    targets = [{ name: 'embedded', url: registry.url, username: '', password: '', forward_authorization: false, storage: embeddedStorage(config), storage_uploads: config.embedded_registry.storage_uploads }]
  }
  const upstreams = createUpstreams(targets, config.timeouts)
  shutdown.defer(() => upstreams.close())
  return embedded ? { upstreams, embedded } : { upstreams }
}

function embeddedStorage(config: Config): string {
  return join(resolve(config.embedded_registry.data_dir), 'storage')
}

/** One embedded registry in proxy mode per configured cache (caches), stopped on shutdown. */
async function startPullThroughCaches(config: Config, log: Logger, shutdown: Shutdown, observability: Observability): Promise<PullThroughCaches | undefined> {
  if (config.caches.length === 0) return undefined
  const caches = await startCaches(config.caches, {
    binary: config.embedded_registry.binary,
    maxBackoffMs: config.embedded_registry.restart_max_backoff,
    timeouts: config.timeouts,
    log,
    ...(observability.metrics ? { metricsRegistry: observability.metrics.registry } : {}),
  })
  shutdown.defer(() => caches.stop())
  log.info({ caches: caches.describe() }, 'pull-through caches started')
  return caches
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
