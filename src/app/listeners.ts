// Start-up step: the listeners (main HTTPS or HTTP, admin, HTTP redirect), bound in order, each closed by draining.
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerOptions, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Config } from './config.js'
import { publicHost } from '../forward/headers.js'
import type { Logger } from '../observe/log.js'
import type { ServedCertificates } from './certificates.js'
import { answerClientError, endWithError, unreadableAnswer } from './client-error.js'
import { closeServer, Connections } from './drain.js'
import { listen, parseListen, type ListenAddress } from './listen.js'
import type { Observability } from './observability.js'
import type { ListenerState, Pipeline } from './pipeline.js'
import { answerPlainHttp } from './plain-http.js'
import type { Shutdown } from './shutdown.js'

const serverOptions: ServerOptions = {
  // A multi-GiB layer PATCH may take many minutes: no whole-request timeout, only idle timeouts.
  requestTimeout: 0,
  headersTimeout: 60_000,
  keepAliveTimeout: 65_000,
  // How often Node looks for requests past headersTimeout: its default of 30 s let a slowloris client hold a connection for 90.
  connectionsCheckingInterval: 5_000,
}

/**
 * A TLS handshake takes a round trip or two; Node's default of 120 s let a client that opened a connection
 * and stalled its handshake hold one of server.max_connections (and, past twice it, keep everyone out) for
 * two minutes at no cost.
 */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000

export interface Listeners {
  address: ListenAddress
  adminAddress?: ListenAddress
  redirectAddress?: ListenAddress
}

export interface ListenerDeps {
  pipeline: Pipeline
  observability: Observability
  /** Undefined with TLS off. */
  certificates: ServedCertificates | undefined
  state: ListenerState
}

export async function openListeners(config: Config, log: Logger, shutdown: Shutdown, deps: ListenerDeps): Promise<Listeners> {
  const { pipeline, certificates, state } = deps
  const server = mainServer(config, log, pipeline, certificates)
  // Idle sockets (no bytes either way) are closed after the body idle timeout.
  server.timeout = config.timeouts.body_idle
  pipeline.connectionCap.attach(server, config.tls.enabled)
  server.on('clientError', (error: Error, socket: Duplex) => answerClientError(error, socket, log))
  // Node would close a CONNECT's socket without a word, and answer an Expect it does not know with a bare 417.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => endWithError(socket, 405, 'CONNECT is not a registry method', log, { Allow: 'GET, HEAD, POST, PUT, PATCH, DELETE' }))
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const { body, headers } = unreadableAnswer(417, `Expect: ${String(req.headers.expect).slice(0, 100)} is not supported (only 100-continue)`, req.socket.remoteAddress, log)
    req.resume()
    res.writeHead(417, headers)
    res.end(body)
  })
  const metrics = deps.observability.metrics
  if (metrics) {
    const connections = metrics.openConnections
    server.on('connection', (socket: Socket) => {
      connections.inc()
      socket.once('close', () => connections.dec())
    })
  }
  const connections = new Connections(server, config.tls.enabled)
  const address = await listen(server, parseListen(config.server.listen))
  state.port = address.port
  shutdown.defer(() => closeServer(server, connections, config.server.drain_timeout, log))
  const listeners: Listeners = { address }

  if (config.admin.listen) {
    const adminServer = createHttpServer({ ...serverOptions, requestTimeout: 30_000, headersTimeout: 10_000 }, pipeline.admin)
    const adminConnections = new Connections(adminServer, false)
    listeners.adminAddress = await listen(adminServer, parseListen(config.admin.listen))
    shutdown.defer(() => closeServer(adminServer, adminConnections, 1000, log))
  }

  if (config.server.http_redirect_listen) {
    const acme = certificates?.acme
    const redirect = createHttpServer(serverOptions, (req, res) => {
      if (acme?.answerHttp(req, res)) return
      const host = publicHost(req.headers.host, pipeline.publicHosts, req.socket.localAddress).replace(/:\d+$/, '')
      const target = config.server.public_url || `https://${host}${address.port === 443 ? '' : `:${address.port}`}`
      res.writeHead(301, { Location: `${target}${req.url ?? '/'}`, 'Content-Length': '0' })
      res.end()
    })
    const redirectConnections = new Connections(redirect, false)
    listeners.redirectAddress = await listen(redirect, parseListen(config.server.http_redirect_listen))
    shutdown.defer(() => closeServer(redirect, redirectConnections, 1000, log))
  }
  return listeners
}

function mainServer(config: Config, log: Logger, pipeline: Pipeline, certificates: ServedCertificates | undefined): HttpServer | HttpsServer {
  if (!certificates) {
    log.warn('TLS is disabled (tls.enabled: false): serving plain HTTP; only do this behind another TLS terminator')
    return createHttpServer({ ...serverOptions, requireHostHeader: false }, pipeline.serve)
  }
  const { store } = certificates
  const server = createHttpsServer(
    // requireHostHeader: the gateway answers a request without Host itself, in the registry's error format, and logs it.
    { ...serverOptions, requireHostHeader: false, ...store.defaultOptions(), handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS, SNICallback: (name, done) => done(null, store.contextFor(name)) },
    pipeline.serve,
  )
  answerPlainHttp(server, () => config.server.public_url || `https://${pipeline.publicHosts.fallback()}`, log)
  certificates.attach(server)
  return server
}
