// Start-up step: the request handlers built from config — the registry pipeline (with the web UI) and the admin endpoints.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Config } from './config.js'
import type { AuthSetup, Caller } from '../auth/index.js'
import type { RegistryRequest } from '../registry/classify.js'
import { HtpasswdStore } from '../auth/htpasswd.js'
import { Forwarder } from '../forward/forward.js'
import { createTrustedProxies } from '../forward/headers.js'
import { createAddressList } from '../net/addresses.js'
import { createAdminHandler, isAdminPath, type ReadinessCheck } from '../observe/admin.js'
import { createAdminApi, createAdminAuth, type AdminApi } from '../admin/api.js'
import { registerMaintenanceRoutes } from '../admin/maintenance-routes.js'
import { Maintenance } from '../housekeeping/maintenance.js'
import { registerMaintenanceMetrics } from '../housekeeping/maintenance-metrics.js'
import { createMaintenanceGate } from '../pipeline/maintenance-gate.js'
import { uiMaintenance } from '../ui/maintenance.js'
import { reportInternalError } from '../observe/internal-errors.js'
import type { Logger } from '../observe/log.js'
import { ExchangeLimiter } from '../pipeline/fairness.js'
import { createGateway } from '../pipeline/gateway.js'
import { createLimits } from '../pipeline/limits.js'
import { createMinRate } from '../pipeline/min-rate.js'
import { createPublicHosts, type PublicHosts } from '../pipeline/public-hosts.js'
import { createSecurityHeaders } from '../pipeline/security-headers.js'
import { createStatusSource, createUi, type UiAccessAdmin, type UiDeps } from '../ui/index.js'
import type { UiAuditHook, UiAuditLog } from '../ui/api.js'
import type { UiAccessTokens } from '../ui/tokens.js'
import type { Events } from '../events/index.js'
import { announceGc, announceRetentionDeletes } from '../events/housekeeping.js'
import type { UpstreamSet } from '../upstreams/upstreams.js'
import type { ServedCertificates } from './certificates.js'
import { createConnectionCap, type ConnectionCap } from './connection-cap.js'
import { displayHost, parseListen } from './listen.js'
import type { Observability } from './observability.js'
import { createRouter } from './routing.js'
import type { Router } from '../routing/router.js'
import type { PullThrough } from '../routing/pull-through.js'
import { cacheSourceOf } from '../cache/index.js'
import { ManifestCache } from '../forward/manifest-cache.js'
import { createImmutableTagGuard } from '../housekeeping/immutable-guard.js'
import { ImmutableTags } from '../housekeeping/immutable-tags.js'
import { housekeepingRegistry } from '../housekeeping/registry-access.js'
import type { Shutdown } from './shutdown.js'
import { createGc } from './gc.js'
import type { RunLocks } from '../housekeeping/run-lock.js'
import { createRetention } from './retention.js'
import type { RetentionTimes } from '../housekeeping/retention-run.js'
import type { RouteContext } from '../forward/forward.js'
import type { InternalAnswer } from '../routing/router.js'
import type { UsageSetup } from './usage.js'
import type { GcHistory } from '../housekeeping/gc-history.js'
import type { SharedState } from '../shared/index.js'
import { shareCacheInvalidation, shareMaintenance } from './shared.js'
import type { StoreValues } from '../store/shared-values.js'
import { createLocalCounters } from '../shared/index.js'
import { createRateLimiter } from '../ratelimit/index.js'

/** What the handlers learn only once the listeners are up. */
export interface ListenerState {
  /** The bound port of server.listen (the configured one until then). */
  port: number
  /** Every listener is up: /readyz answers ready only then. */
  serving: boolean
}

export interface PipelineDeps {
  upstreams: UpstreamSet
  observability: Observability
  auth: AuthSetup
  /** Undefined with TLS off. */
  certificates: ServedCertificates | undefined
  state: ListenerState
  /** The pull-through caches' routes (caches), in front of the routing strategy. */
  pullThrough?: PullThrough
  /** Push/pull times from the store: retention judges tags by them. */
  times?: RetentionTimes
  /** Webhooks, when configured: the UI status panel shows their health. */
  events?: Events
  /** /readyz's check of the persistent store. */
  storeReadiness?: () => ReadinessCheck
  /** The audit trail's (and push/pull times') hook for what is done in the web UI. */
  uiAudit?: UiAuditHook
  /** The audit trail page of the web UI (administrators). */
  uiAuditLog?: UiAuditLog
  /** Storage samples and pulls per day from the store: the UI's charts; a sample is taken after each GC. */
  usage?: UsageSetup
  /** Where finished GC runs are kept across restarts. */
  gcHistory?: GcHistory
  /** Hot state shared with the other instances (shared.redis), or this process's own. */
  shared: SharedState
  /** Access tokens: the web UI's "Access tokens" page. */
  accessTokens?: UiAccessTokens
  /** The web UI's "Users & access" page. */
  access?: UiAccessAdmin
  /** Values shared through the PostgreSQL store, when instances share one without shared.redis: the maintenance switch. */
  storeValues?: StoreValues
  /** Single sign-on for the web UI, when ui.oidc is enabled (loaded by loadSso). */
  sso?: UiDeps['sso']
  /** The lock scheduled and manual GC and retention take across instances (none with one instance). */
  runLocks: RunLocks
}

export interface Pipeline {
  /** The main listener's handler: security headers, connection cap, then the gateway (or the admin endpoints on it). */
  serve: (req: IncomingMessage, res: ServerResponse) => void
  /** /metrics, /healthz, /readyz. */
  admin: (req: IncomingMessage, res: ServerResponse) => void
  connectionCap: ConnectionCap
  publicHosts: PublicHosts
  /** Routes the gateway's own registry reads (the store's start-up scan) exactly like a client's. */
  router: Router
  /** Maintenance mode: the read-only switch and the writes in flight (GC enters it and drains). */
  maintenance: Maintenance
  /** The admin API (/admin/api/...): add routes with adminApi.route(method, path, handler). */
  adminApi: AdminApi
}

export function buildPipeline(config: Config, log: Logger, shutdown: Shutdown, deps: PipelineDeps): Pipeline {
  const { upstreams, observability, auth, certificates, state, shared } = deps
  const { metrics, health } = observability
  const requested = parseListen(config.server.listen)

  const forwarder = new Forwarder((error, path) =>
    log.warn({ path: path.split('?')[0], err: error instanceof Error ? error.message : String(error) }, 'could not cancel upstream upload'),
  )
  // With shared.redis, manifest writes and deletes here make the other instances' tag and manifest caches forget too.
  const invalidation = shared.engine === 'local' ? undefined : shareCacheInvalidation(shared.bus)
  const router = createRouter(config, upstreams.all, { health, forwarder, log, metrics, ...(deps.pullThrough ? { pullThrough: deps.pullThrough } : {}), ...(invalidation ? { invalidation } : {}), shared: { engine: shared.engine, bus: shared.bus, up: () => shared.status().up } })
  // Maintenance mode (maintenance.*): writes refused at the gateway, no restart; switched by the admin API, the CLI and the UI.
  const maintenance = new Maintenance({ message: config.maintenance.message, retryAfterMs: config.maintenance.retry_after, drainTimeoutMs: config.maintenance.drain_timeout })
  if (config.maintenance.enabled) {
    maintenance.enter({ by: 'config' })
    log.warn({ message: config.maintenance.message }, 'maintenance on at start (maintenance.enabled): writes refused, reads go on')
  }
  // Switched at one instance, followed by all (shared.redis, the workers' primary, else a PostgreSQL store read every
  // second); the state at start comes from there when it has one.
  const maintenanceSharing = shared.engine !== 'local'
    ? shareMaintenance(maintenance, shared.values, log)
    : deps.storeValues ? shareMaintenance(maintenance, deps.storeValues, log, 2 * deps.storeValues.pollMs) : undefined
  if (metrics) registerMaintenanceMetrics(metrics.registry, maintenance)
  const maintenanceGate = createMaintenanceGate(maintenance)
  // Manifests by digest kept in memory (cache.manifests); deletes from clients and from the web UI evict.
  const manifestCache = config.cache.manifests.max_bytes > 0
    ? new ManifestCache(config.cache.manifests.max_bytes, {
        hit: () => metrics?.manifestCacheHits.inc(),
        miss: () => metrics?.manifestCacheMisses.inc(),
        bytes: (held) => metrics?.manifestCacheBytes.set(held),
        ...(invalidation ? { evicted: (repository: string, digest: string) => invalidation.manifestEvicted(repository, digest) } : {}),
      })
    : undefined
  if (manifestCache) invalidation?.attachManifests(manifestCache)

  // Immutable tags: checked after authorization (client requests) and before the web UI's deletes; the check reads through routing.
  const immutableRules = new ImmutableTags(config.immutable_tags)
  const times = deps.times
  const immutableTags = createImmutableTagGuard(immutableRules, housekeepingRegistry((context) => router.answer(context), auth, 'portier-immutable-tags'), {
    // The store's last known digest of each tag: the tags to HEAD first when a digest is deleted.
    ...(times ? { likelyTags: async (repository: string, digest: string) => (await times.tagTimes(repository)).filter((entry) => entry.digest === digest).map((entry) => entry.tag) } : {}),
  })

  // Portier's own registry calls (the web UI's, repository deletes): routed as a client's would be.
  const internalAnswer = async (context: RouteContext): Promise<InternalAnswer> => {
    // Deletes are writes like a client's: refused in maintenance, counted in flight otherwise.
    const write = maintenanceGate(context.request)
    let status = 499
    try {
      await immutableTags?.checkRequest(context.request)
      manifestCache?.evict(context.request)
      const answer = await router.answer(context)
      status = answer.status
      return answer
    } finally {
      write?.done(status, undefined)
    }
  }
  // Garbage collection (gc.*) and whole-repository deletes; their admin API routes are added below.
  const events = deps.events
  const usage = deps.usage
  const gc = createGc(config, log, shutdown, {
    maintenance, answer: internalAnswer, auth, metrics, runLocks: deps.runLocks,
    ...(maintenanceSharing ? { maintenanceAnnounced: maintenanceSharing.announced } : {}),
    ...(deps.times ? { times: deps.times } : {}),
    ...(deps.gcHistory ? { history: deps.gcHistory } : {}),
    onFinished: (run: Parameters<typeof announceGc>[1]) => {
      if (events) announceGc(events, run)
      // The storage chart gets a point right after what a run freed.
      if (usage && !run.dryRun) usage.sample('gc').catch(() => undefined)
    },
  })
  // Retention (retention.*): its deletes go through the same gated internal calls, then a collection.
  const retention = deps.times ? createRetention(config, log, shutdown, { answer: internalAnswer, auth, times: events ? announceRetentionDeletes(deps.times, events) : deps.times, immutable: immutableRules, startGc: gc.startLocked, metrics, runLocks: deps.runLocks }) : undefined

  // The web UI's status panel reads health checks, the served certificates and recent pushes.
  const ui = config.ui.enabled
    ? createUi({
        config: config.ui,
        authMode: config.auth.mode,
        auth,
        // The UI reads and deletes through the same routing and forwarding as registry clients.
        registry: internalAnswer,
        log,
        revocations: shared.revocations,
        maintenance: uiMaintenance(maintenance, log),
        ...(retention ? { retention: retention.ui } : {}),
        repositories: gc.ui,
        ...(usage ? { charts: { storage: usage.storageOverTime, pulls: usage.pullsPerDay } } : {}),
        // Cached repositories are marked with the remote they come from.
        ...(config.caches.length > 0 ? { cacheSource: cacheSourceOf(config.caches) } : {}),
        ...(deps.uiAudit ? { audit: deps.uiAudit } : {}),
        ...(deps.uiAuditLog ? { auditLog: deps.uiAuditLog } : {}),
        declaredGroups: config.auth.groups.map((group) => group.name),
        ...(deps.accessTokens ? { accessTokens: deps.accessTokens } : {}),
        ...(deps.access ? { access: deps.access } : {}),
        ...(deps.sso ? { sso: deps.sso } : {}),
        status: createStatusSource({
          upstreams: upstreams.all,
          health: () => health.snapshot(),
          certificates: () => certificates?.store.certificates ?? [],
          selfSigned: () => certificates?.selfSigned !== undefined,
          recentPushes: (limit) => observability.recent.list(limit),
          ...(deps.events ? { webhooks: () => deps.events?.statusSnapshot() ?? [] } : {}),
          gc: () => gc.status(),
        }),
      })
    : undefined
  if (ui) shutdown.defer(() => ui.close())

  const trustedProxies = createTrustedProxies(config.server.trusted_proxies)
  const store = certificates?.store
  // URLs name the gateway by a Host the certificates (or server.hosts) cover, else by this default name.
  const publicHosts = createPublicHosts({
    hosts: config.server.hosts,
    ...(store ? { covers: (name: string) => store.covers(name) } : {}),
    defaultName: () => store?.certificates.find((c) => !c.selfSigned)?.names.find((name) => !name.startsWith('*.')) ?? displayHost(requested),
    port: () => state.port,
    onRefused: (name, fallback) =>
      log.warn({ host: name, using: fallback }, 'a Host no certificate or server.hosts covers: URLs for it use the default name (add it to tls.self_signed.hosts or server.hosts if clients use it)'),
  })
  const minRate = createMinRate(config.timeouts)
  // Request rate limits (limits.rate): buckets in the shared engine when there is one, else (and while it is down) here.
  const localCounters = createLocalCounters()
  const rateLimits = createRateLimiter(config.limits.rate, {
    counters: shared.counters ?? localCounters,
    fallback: localCounters,
    // Groups as the ACL sees them: auth.groups and the web UI's (the credential's own come with the caller).
    memberOf: (group, user) => auth.acl.inGroup(group, user),
    log,
    onLimited: (rule, by) => metrics?.rateLimited(rule, by),
  })
  const gateway = createGateway({
    router,
    authenticator: auth.authenticator,
    acl: auth.acl,
    ...(auth.tokenEndpoint ? { tokenEndpoint: auth.tokenEndpoint } : {}),
    ...(ui ? { ui } : {}),
    limits: createLimits(config.limits),
    ...(rateLimits ? { rateLimits } : {}),
    trustedProxies,
    publicUrl: config.server.public_url,
    hosts: publicHosts,
    log,
    recorder: observability.recorder,
    ...(metrics ? { metrics } : {}),
    authMode: config.auth.mode,
    exchanges: new ExchangeLimiter(config.limits.per_client, (limit) => metrics?.limitRejected(limit)),
    ...(minRate ? { minRate } : {}),
    ...(manifestCache ? { manifestCache } : {}),
    ...(immutableTags ? { immutableTags } : {}),
    maintenance: maintenanceGate,
    ...(deps.pullThrough ? { administratorsOnly: cacheDeletesForAdministrators(config, auth, deps.pullThrough) } : {}),
  })

  const readiness = (): ReadinessCheck[] => {
    const routed = router.readiness(health.snapshot())
    return [
      { name: 'listeners', ready: state.serving },
      certificates?.readiness() ?? { name: 'certificate', ready: true, detail: 'TLS disabled' },
      // Enough upstreams up for the routing strategy: one shared, every one by repository, the required mirrors.
      { name: 'upstreams', ready: routed.ready, detail: routed.detail },
      // Still ready in maintenance: reads go on, and a load balancer must not take the gateway out for it.
      { name: 'maintenance', ready: true, detail: maintenance.status() },
      // Single sign-on down never makes the gateway unready (registry clients do not use it); the detail says so.
      ...(ui?.readiness() ?? []),
      // Still ready while Redis is down: each instance serves from its local fallbacks, and the detail says so.
      { name: 'shared', ready: true, detail: shared.status() },
      // Still ready while the shared counters are unreachable: rate limits fail open to each instance's own buckets.
      ...(rateLimits ? [{ name: 'rate_limits', ready: true, detail: rateLimits.status() }] : []),
      // The LDAP directory (auth.ldap): its users cannot sign in while it is unreachable.
      ...(auth.readiness?.() ?? []),
      ...(deps.storeReadiness ? [deps.storeReadiness()] : []),
    ]
  }
  const metricsUsers = config.admin.htpasswd
    ? new HtpasswdStore(config.admin.htpasswd, config.auth.cache_ttl, {
        onLoad: (parsed, path) => log.info({ path, users: parsed.users.size }, 'loaded the metrics users (admin.htpasswd)'),
        onError: (error, path) => log.error({ path, err: error.message }, 'could not reload admin.htpasswd; keeping the users loaded before'),
      })
    : undefined
  if (metricsUsers) {
    metricsUsers.watch()
    shutdown.defer(() => metricsUsers.close())
  }
  const adminApi = createAdminApi({
    auth: createAdminAuth({
      authMode: config.auth.mode,
      ...(auth.verifyLogin ? { verifyLogin: auth.verifyLogin } : {}),
      isAdmin: (user, clientIp) => isAdministrator(config, auth, user, clientIp),
    }),
    log,
  })
  registerMaintenanceRoutes(adminApi, maintenance, log)
  gc.registerRoutes(adminApi)
  retention?.registerRoutes(adminApi)
  const adminHandler = createAdminHandler({
    api: adminApi,
    metrics,
    allow: config.admin.allow.length > 0 ? createAddressList(config.admin.allow) : undefined,
    users: metricsUsers,
    readiness,
    log,
  })
  // The admin handler answers its own failures with a 500 and is not meant to reject; should one still
  // escape it, it is logged and counted here rather than left to exit the process as an unhandled rejection.
  const admin = (req: IncomingMessage, res: ServerResponse): void => {
    adminHandler(req, res).catch((error: unknown) => {
      reportInternalError(log, metrics, 'admin_handler', error, { requestId: '', method: req.method ?? 'GET', url: req.url ?? '/' })
      if (res.headersSent) res.destroy()
      else res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":"internal error; see the gateway log"}\n')
    })
  }
  const handler = config.admin.on_main_listener
    ? (req: IncomingMessage, res: ServerResponse): void => {
        if (isAdminPath((req.url ?? '').split('?')[0] ?? '')) admin(req, res)
        else gateway(req, res)
      }
    : gateway
  const securityHeaders = createSecurityHeaders({
    hsts: config.server.hsts,
    tlsEnabled: config.tls.enabled,
    verifiableCertificate: (servername) => store?.certificateFor(servername).selfSigned === false,
    trustedProxies,
  })
  const connectionCap = createConnectionCap(config.server.max_connections, () => metrics?.limitRejected('max_connections'))
  return {
    serve: (req, res) => {
      securityHeaders(req, res)
      if (connectionCap.refuse(req, res)) return
      handler(req, res)
    },
    admin,
    connectionCap,
    publicHosts,
    router,
    maintenance,
    adminApi,
  }
}

/**
 * Deletes from a pull-through cache take content out of what the cache serves to everyone: administrators
 * only, on top of the ACL's delete. With auth.mode none everyone is one (as for the admin API).
 */
function cacheDeletesForAdministrators(config: Config, auth: AuthSetup, pullThrough: PullThrough): (request: RegistryRequest, caller: Caller, clientIp: string) => string | undefined {
  return (request, caller, clientIp) => {
    if (request.op !== 'manifest.delete' && request.op !== 'blob.delete') return undefined
    const prefix = pullThrough.cacheOf(request)
    if (prefix === undefined || config.auth.mode === 'none') return undefined
    if (!caller.anonymous && isAdministrator(config, auth, caller.user, clientIp)) return undefined
    return `deleting from the pull-through cache ${prefix}/ is for administrators (ui.admin_users)`
  }
}

/** An administrator: a user in ui.admin_users or, with that empty, one the ACL grants the catalog (the web UI's rule). */
function isAdministrator(config: Config, auth: AuthSetup, user: string, clientIp: string): boolean {
  if (config.ui.admin_users.length > 0) return config.ui.admin_users.includes(user)
  const groups = auth.groupsOf?.(user)
  return auth.acl.granted({ user, anonymous: false, ...(groups ? { groups } : {}) }, { type: 'registry', name: 'catalog', actions: ['*'] }, clientIp).length > 0
}
