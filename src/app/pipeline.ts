// Start-up step: the request handlers built from config — the registry pipeline (with the web UI) and the admin endpoints.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Config } from './config.js'
import type { AuthSetup } from '../auth/index.js'
import { HtpasswdStore } from '../auth/htpasswd.js'
import { Forwarder } from '../forward/forward.js'
import { createTrustedProxies } from '../forward/headers.js'
import { createAddressList } from '../net/addresses.js'
import { ADMIN_PATHS, createAdminHandler, type ReadinessCheck } from '../observe/admin.js'
import { reportInternalError } from '../observe/internal-errors.js'
import type { Logger } from '../observe/log.js'
import { ExchangeLimiter } from '../pipeline/fairness.js'
import { createGateway } from '../pipeline/gateway.js'
import { createLimits } from '../pipeline/limits.js'
import { createMinRate } from '../pipeline/min-rate.js'
import { createPublicHosts, type PublicHosts } from '../pipeline/public-hosts.js'
import { createSecurityHeaders } from '../pipeline/security-headers.js'
import { createStatusSource, createUi } from '../ui/index.js'
import type { UpstreamSet } from '../upstreams/upstreams.js'
import type { ServedCertificates } from './certificates.js'
import { createConnectionCap, type ConnectionCap } from './connection-cap.js'
import { displayHost, parseListen } from './listen.js'
import type { Observability } from './observability.js'
import { createRouter } from './routing.js'
import { ManifestCache } from '../forward/manifest-cache.js'
import type { Shutdown } from './shutdown.js'

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
}

export interface Pipeline {
  /** The main listener's handler: security headers, connection cap, then the gateway (or the admin endpoints on it). */
  serve: (req: IncomingMessage, res: ServerResponse) => void
  /** /metrics, /healthz, /readyz. */
  admin: (req: IncomingMessage, res: ServerResponse) => void
  connectionCap: ConnectionCap
  publicHosts: PublicHosts
}

export function buildPipeline(config: Config, log: Logger, shutdown: Shutdown, deps: PipelineDeps): Pipeline {
  const { upstreams, observability, auth, certificates, state } = deps
  const { metrics, health } = observability
  const requested = parseListen(config.server.listen)

  const forwarder = new Forwarder((error, path) =>
    log.warn({ path: path.split('?')[0], err: error instanceof Error ? error.message : String(error) }, 'could not cancel upstream upload'),
  )
  const router = createRouter(config, upstreams.all, { health, forwarder, log, metrics })
  // Manifests by digest kept in memory (cache.manifests); deletes from clients and from the web UI evict.
  const manifestCache = config.cache.manifests.max_bytes > 0
    ? new ManifestCache(config.cache.manifests.max_bytes, {
        hit: () => metrics?.manifestCacheHits.inc(),
        miss: () => metrics?.manifestCacheMisses.inc(),
        bytes: (held) => metrics?.manifestCacheBytes.set(held),
      })
    : undefined

  // The web UI's status panel reads health checks, the served certificates and recent pushes.
  const ui = config.ui.enabled
    ? createUi({
        config: config.ui,
        authMode: config.auth.mode,
        auth,
        // The UI reads and deletes through the same routing and forwarding as registry clients.
        registry: (context) => {
          manifestCache?.evict(context.request)
          return router.answer(context)
        },
        log,
        status: createStatusSource({
          upstreams: upstreams.all,
          health: () => health.snapshot(),
          certificates: () => certificates?.store.certificates ?? [],
          selfSigned: () => certificates?.selfSigned !== undefined,
          recentPushes: (limit) => observability.recent.list(limit),
        }),
      })
    : undefined

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
  const gateway = createGateway({
    router,
    authenticator: auth.authenticator,
    acl: auth.acl,
    ...(auth.tokenEndpoint ? { tokenEndpoint: auth.tokenEndpoint } : {}),
    ...(ui ? { ui } : {}),
    limits: createLimits(config.limits),
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
  })

  const readiness = (): ReadinessCheck[] => {
    const routed = router.readiness(health.snapshot())
    return [
      { name: 'listeners', ready: state.serving },
      certificates?.readiness() ?? { name: 'certificate', ready: true, detail: 'TLS disabled' },
      // Enough upstreams up for the routing strategy: one shared, every one by repository, the required mirrors.
      { name: 'upstreams', ready: routed.ready, detail: routed.detail },
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
  const adminHandler = createAdminHandler({
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
        if (ADMIN_PATHS.has((req.url ?? '').split('?')[0] ?? '')) admin(req, res)
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
  }
}
