// The cap on open client connections (server.max_connections): connections past it get one readable 503 and are closed.
import type { IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { RETRY_AFTER_SECONDS } from '../forward/forward.js'

/** A refused connection that never sends its request is closed after this long. */
const REFUSED_IDLE_MS = 10_000

export interface ConnectionCap {
  /** Counts the server's connections from now on. */
  attach(server: HttpServer | HttpsServer, tls: boolean): void
  /** Answers 503 and returns true when the request came on a connection opened past the cap. */
  refuse(req: IncomingMessage, res: ServerResponse): boolean
  /** Client connections open now. */
  readonly open: number
}

/**
 * Node's own `server.maxConnections` closes extra connections without a word: the client sees a
 * reset and cannot tell a full gateway from a broken one. Past the cap the gateway instead lets the
 * connection in, answers its first request with 503 UNAVAILABLE (JSON, Retry-After) and closes it.
 * Past twice the cap Node's limit drops connections at accept, so a flood cannot exhaust file
 * descriptors on TLS handshakes either.
 */
export function createConnectionCap(max: number, onRefused: () => void = () => undefined): ConnectionCap {
  let open = 0
  const refused = new WeakSet<Socket>()
  return {
    get open() {
      return open
    },
    attach(server, tls) {
      if (max <= 0) return
      server.maxConnections = 2 * max
      server.on('connection', (socket: Socket) => {
        open += 1
        socket.once('close', () => {
          open -= 1
        })
      })
      // The socket a request arrives on: for TLS the TLSSocket, known once the handshake is done.
      const judge = (socket: Socket): void => {
        if (open <= max) return
        refused.add(socket)
        socket.setTimeout(REFUSED_IDLE_MS)
      }
      if (tls) server.on('secureConnection', judge)
      else server.on('connection', judge)
    },
    refuse(req, res) {
      if (!refused.has(req.socket)) return false
      onRefused()
      sendRegistryError(
        res,
        new RegistryError(
          'UNAVAILABLE',
          { limit: 'max_connections', max },
          { 'Retry-After': RETRY_AFTER_SECONDS, Connection: 'close' },
          `the gateway has ${max} connections open (server.max_connections); try again later`,
        ),
      )
      return true
    },
  }
}
