// Wires the modules together and owns lifecycles: upstreams, certificates, listeners, shutdown.
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerOptions, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import { hostname } from 'node:os'
import type { Config } from '../config/index.js'
import { createLimits } from '../pipeline/limits.js'
import { createTrustedProxies, publicHost } from '../forward/headers.js'
import { createPublicHosts } from '../pipeline/public-hosts.js'
import { createUpstreams, type UpstreamSet } from '../upstreams/upstreams.js'
import { Forwarder } from '../forward/forward.js'
import { CertificateStore } from '../tls/store.js'
import { ensureSelfSigned, type SelfSignedCertificate } from '../tls/selfsigned.js'
import type { Acme } from '../tls/acme/index.js'
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../embedded/registry.js'
import { createAuthenticator, type GeneratedAdmin } from '../auth/index.js'
import { HtpasswdStore } from '../auth/htpasswd.js'
import { createAddressList } from '../net/addresses.js'
import type { Logger } from '../observe/log.js'
import type { HealthMonitor } from '../upstreams/health.js'
import { createGateway } from '../pipeline/gateway.js'
import { answerClientError } from './client-error.js'
import { createRouter } from './routing.js'
import { createStatusSource, createUi } from '../ui/index.js'
import { ADMIN_PATHS, createAdminHandler, type ReadinessCheck } from '../observe/admin.js'
import { createObservability, type Observability } from './observability.js'
import { listen, parseListen, type ListenAddress } from './listen.js'
import { createConnectionCap } from './connection-cap.js'
import { ExchangeLimiter } from '../pipeline/fairness.js'
import { createMinRate } from '../pipeline/min-rate.js'
import { createSecurityHeaders } from '../pipeline/security-headers.js'
import { answerPlainHttp } from './plain-http.js'

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
  close(): Promise<void>
}

const serverOptions: ServerOptions = {
  // A multi-GiB layer PATCH may take many minutes: no whole-request timeout, only idle timeouts.
  requestTimeout: 0,
  headersTimeout: 60_000,
  keepAliveTimeout: 65_000,
}

/**
 * A TLS handshake takes a round trip or two; Node's default of 120 s let a client that opened a connection
 * and stalled its handshake hold one of server.max_connections (and, past twice it, keep everyone out) for
 * two minutes at no cost.
 */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

function displayHost(address: ListenAddress): string {
  if (address.host === '0.0.0.0' || address.host === '::' || address.host === '') return 'localhost'
  return address.host.includes(':') ? `[${address.host}]` : address.host
}

export async function startPortier(config: Config, log: Logger): Promise<RunningPortier> {
  const cleanups: Array<() => Promise<void> | void> = []
  const cleanup = async (): Promise<void> => {
    for (const step of cleanups.reverse()) await step()
  }
  try {
    return await start(config, log, cleanups, cleanup)
  } catch (error) {
    await cleanup()
    throw error
  }
}

async function start(
  config: Config,
  log: Logger,
  cleanups: Array<() => Promise<void> | void>,
  cleanup: () => Promise<void>,
): Promise<RunningPortier> {
  let embedded: EmbeddedRegistry | undefined
  let targets = config.upstreams
  if (targets.length === 0) {
    embedded = await startEmbeddedRegistry({
      binary: config.embedded_registry.binary,
      dataDir: config.embedded_registry.data_dir,
      maxBackoffMs: config.embedded_registry.restart_max_backoff,
      log,
    })
    cleanups.push(() => embedded?.stop())
    targets = [{ name: 'embedded', url: embedded.url, username: '', password: '', forward_authorization: false }]
  }
  const upstreams = createUpstreams(targets, config.timeouts)
  cleanups.push(() => upstreams.close())
  const observability = createObservability(config, upstreams.all, log)
  cleanups.push(() => observability.close())
  const { metrics, health } = observability

  const auth = await createAuthenticator(config.auth, log, metrics)
  cleanups.push(() => auth.close())

  // The web UI's status panel reads health checks, the served certificates (set up below) and recent pushes.
  const ui = config.ui.enabled
    ? createUi({
        config: config.ui,
        authMode: config.auth.mode,
        routingStrategy: config.routing.strategy,
        auth,
        upstreams,
        log,
        status: createStatusSource({
          upstreams: upstreams.all,
          health: () => health.snapshot(),
          certificates: () => certificates?.certificates ?? [],
          selfSigned: () => selfSigned !== undefined,
          recentPushes: (limit) => observability.recent.list(limit),
        }),
      })
    : undefined

  const forwarder = new Forwarder((error, path) =>
    log.warn({ path: path.split('?')[0], err: error instanceof Error ? error.message : String(error) }, 'could not cancel upstream upload'),
  )
  const router = createRouter(config, upstreams.all, { health, forwarder, log, metrics })
  // Internal readers (the UI) ask the router too, so they see the upstream a client's read would reach.
  upstreams.pick = (request) => router.pick(request)

  const requested = parseListen(config.server.listen)
  const minRate = createMinRate(config.timeouts)
  const trustedProxies = createTrustedProxies(config.server.trusted_proxies)
  // URLs name the gateway by a Host the certificates (or server.hosts) cover, else by this default name.
  let boundPort = requested.port
  const publicHosts = createPublicHosts({
    hosts: config.server.hosts,
    ...(config.tls.enabled ? { covers: (name: string) => certificates?.covers(name) ?? false } : {}),
    defaultName: () => certificates?.certificates.find((c) => !c.selfSigned)?.names.find((name) => !name.startsWith('*.')) ?? displayHost(requested),
    port: () => boundPort,
    onRefused: (name, fallback) =>
      log.warn({ host: name, using: fallback }, 'a Host no certificate or server.hosts covers: URLs for it use the default name (add it to tls.self_signed.hosts or server.hosts if clients use it)'),
  })
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
  })

  let serving = false
  let certificatesLoaded: () => ReadinessCheck = () => ({ name: 'certificate', ready: true, detail: 'TLS disabled' })
  const readiness = (): ReadinessCheck[] => {
    const upstreams = router.readiness(health.snapshot())
    return [
      { name: 'listeners', ready: serving },
      certificatesLoaded(),
      // Enough upstreams up for the routing strategy: one shared, every one by repository, the required mirrors.
      { name: 'upstreams', ready: upstreams.ready, detail: upstreams.detail },
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
    cleanups.push(() => metricsUsers.close())
  }
  const admin = createAdminHandler({
    metrics,
    allow: config.admin.allow.length > 0 ? createAddressList(config.admin.allow) : undefined,
    users: metricsUsers,
    readiness,
    log,
  })
  const handler = config.admin.on_main_listener
    ? (req: IncomingMessage, res: ServerResponse): void => {
        if (ADMIN_PATHS.has((req.url ?? '').split('?')[0] ?? '')) void admin(req, res)
        else gateway(req, res)
      }
    : gateway
  const securityHeaders = createSecurityHeaders({
    hsts: config.server.hsts,
    tlsEnabled: config.tls.enabled,
    verifiableCertificate: (servername) => certificates?.certificateFor(servername).selfSigned === false,
    trustedProxies,
  })
  const connectionCap = createConnectionCap(config.server.max_connections, () => metrics?.limitRejected('max_connections'))
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    securityHeaders(req, res)
    if (connectionCap.refuse(req, res)) return
    handler(req, res)
  }

  let server: HttpServer | HttpsServer
  let selfSigned: SelfSignedCertificate | undefined
  let certificates: CertificateStore | undefined
  let acme: Acme | undefined
  let startAcme: (() => void) | undefined
  if (config.tls.enabled) {
    let files = config.tls.certificates
    if (config.tls.acme.enabled) {
      // Loaded only when enabled: acme-client and its dependencies add ~28 MiB of resident memory.
      const { createAcme } = await import('../tls/acme/index.js')
      const created = createAcme(config.tls.acme, log)
      acme = created
      cleanups.push(() => created.close())
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
    const store: CertificateStore = new CertificateStore(files, config.tls.min_version, {
      onReload: (loaded) => {
        httpsServer.setSecureContext(store.defaultOptions())
        log.info({ certificates: loaded.map((c) => ({ names: c.names, sha256: c.fingerprint, notAfter: c.notAfter })) }, 'certificates reloaded')
      },
      onReloadError: (error) => log.error({ err: error.message }, 'certificate reload failed; still serving the previous certificates'),
    })
    const httpsServer = createHttpsServer(
      { ...serverOptions, ...store.defaultOptions(), handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, SNICallback: (name, done) => done(null, store.contextFor(name)) },
      serve,
    )
    answerPlainHttp(httpsServer, () => config.server.public_url || `https://${publicHosts.fallback()}`, log)
    if (acme) {
      const staticFiles = config.tls.certificates
      if (config.tls.acme.challenge === 'tls-alpn-01') acme.interceptTlsAlpn(httpsServer)
      const started = acme
      observability.watchAcme(acme)
      // The ACME certificate serves its domains and clients without SNI; static ones other names.
      startAcme = () => started.start((pair) => store.setFiles([pair, ...staticFiles]))
    }
    store.watch()
    cleanups.push(() => store.close())
    certificates = store
    const servedAcme = acme
    certificatesLoaded = () => {
      const served = store.certificates.map((c) => ({ names: c.names, notAfter: c.notAfter.toISOString(), selfSigned: selfSigned !== undefined }))
      // Until ACME issues, a placeholder certificate is served: ready, and the detail says so.
      return { name: 'certificate', ready: store.certificates.length > 0, detail: servedAcme ? { served, acme: servedAcme.status() } : served }
    }
    observability.watchCertificates(() => store.certificates)
    server = httpsServer
  } else {
    server = createHttpServer(serverOptions, serve)
    log.warn('TLS is disabled (tls.enabled: false): serving plain HTTP; only do this behind another TLS terminator')
  }
  // Idle sockets (no bytes either way) are closed after the body idle timeout.
  server.timeout = config.timeouts.body_idle
  connectionCap.attach(server, config.tls.enabled)
  server.on('clientError', (error: Error, socket: Duplex) => answerClientError(error, socket, log))
  if (metrics) {
    const connections = metrics.openConnections
    server.on('connection', (socket: Socket) => {
      connections.inc()
      socket.once('close', () => connections.dec())
    })
  }
  const rawConnections = trackConnections(server, config.tls.enabled)
  const address = await listen(server, requested)
  boundPort = address.port
  cleanups.push(() => closeServer(server, config.server.drain_timeout, log, rawConnections))

  let adminAddress: ListenAddress | undefined
  if (config.admin.listen) {
    const adminServer = createHttpServer({ ...serverOptions, requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => void admin(req, res))
    adminAddress = await listen(adminServer, parseListen(config.admin.listen))
    cleanups.push(() => closeServer(adminServer, 1000, log))
  }

  const scheme = config.tls.enabled ? 'https' : 'http'
  const url = config.server.public_url || `${scheme}://${displayHost(address)}:${address.port}`

  let redirectAddress: ListenAddress | undefined
  if (config.server.http_redirect_listen) {
    const redirect = createHttpServer(serverOptions, (req, res) => {
      if (acme?.answerHttp(req, res)) return
      const host = publicHost(req.headers.host, publicHosts, req.socket.localAddress).replace(/:\d+$/, '')
      const target = config.server.public_url || `https://${host}${address.port === 443 ? '' : `:${address.port}`}`
      res.writeHead(301, { Location: `${target}${req.url ?? '/'}`, 'Content-Length': '0' })
      res.end()
    })
    redirectAddress = await listen(redirect, parseListen(config.server.http_redirect_listen))
    cleanups.push(() => closeServer(redirect, 1000, log))
  }

  // Only now that every listener is up can the CA's validation reach us.
  startAcme?.()
  serving = true
  log.info({ url, listen: `${address.host}:${address.port}`, ...(redirectAddress ? { redirect_listen: `${redirectAddress.host}:${redirectAddress.port}` } : {}), ...(adminAddress ? { admin_listen: `${adminAddress.host}:${adminAddress.port}` } : {}), upstreams: upstreams.all.map((u) => ({ name: u.name, url: u.origin })), hostname: hostname() }, 'portier ready')

  const running: RunningPortier = { url, address, upstreams, health, observability, close: cleanup }
  if (adminAddress) running.adminAddress = adminAddress
  if (selfSigned) running.selfSigned = selfSigned
  if (certificates) running.certificates = certificates
  if (embedded) running.embedded = embedded
  if (redirectAddress) running.redirectAddress = redirectAddress
  if (acme) running.acme = acme
  if (auth.generatedAdmin) running.generatedAdmin = auth.generatedAdmin
  return running
}

/**
 * Every connection of a TLS server from accept to close. closeAllConnections() knows only those that
 * reached HTTP: one waiting for its first byte or in the TLS handshake held server.close(), and so
 * shutdown, past the drain timeout (up to the 120 s handshake timeout).
 */
function trackConnections(server: HttpServer | HttpsServer, tls: boolean): Set<Socket> {
  const open = new Set<Socket>()
  if (!tls) return open
  server.on('connection', (socket: Socket) => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
  })
  return open
}

/** Stops accepting, lets in-flight requests finish up to the drain timeout, then closes what is left. */
function closeServer(server: HttpServer | HttpsServer, drainMs: number, log: Logger, rawConnections: Set<Socket> = new Set()): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    const timer = setTimeout(() => {
      log.warn({ drainMs }, 'drain timeout reached; closing remaining connections')
      server.closeAllConnections()
      for (const socket of rawConnections) socket.destroy()
    }, drainMs)
    timer.unref()
    // Keep-alive connections whose request finishes during the drain become idle: close them as they do.
    const sweeper = setInterval(() => server.closeIdleConnections(), 100)
    sweeper.unref()
    server.close(() => {
      clearTimeout(timer)
      clearInterval(sweeper)
      resolve()
    })
    server.closeIdleConnections()
  })
}
