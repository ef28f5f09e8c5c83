// Closing a listener by draining: stop accepting, let responses in flight finish, close idle connections
// as they become idle, and cut what is left at the drain timeout.
import type { Server as HttpServer } from 'node:http'
import type { Server as HttpsServer } from 'node:https'
import type { Socket } from 'node:net'
import type { Logger } from '../observe/log.js'

type Listener = HttpServer | HttpsServer

/**
 * Every connection of a listener from accept to close, and how many responses each has in flight.
 *
 * Node's own closeIdleConnections() (also called by server.close()) destroys a connection as soon as its
 * response has *ended*, while the response's last bytes may still wait in the socket's buffer for a slow
 * reader: a download in flight at shutdown lost its tail. Here a connection is idle only once its
 * responses have closed, which is after their last byte left the process.
 */
export class Connections {
  private readonly inFlight = new Map<Socket, number>()
  /** TLS: every TCP connection, including those still in (or stalled before) the handshake. */
  private readonly raw = new Set<Socket>()

  constructor(server: Listener, tls: boolean) {
    server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      this.inFlight.set(socket, 0)
      socket.once('close', () => this.inFlight.delete(socket))
    })
    if (tls) {
      server.on('connection', (socket: Socket) => {
        this.raw.add(socket)
        socket.once('close', () => this.raw.delete(socket))
      })
    }
    server.on('request', (req, res) => {
      const socket = req.socket
      this.inFlight.set(socket, (this.inFlight.get(socket) ?? 0) + 1)
      res.once('close', () => {
        const count = this.inFlight.get(socket)
        if (count !== undefined) this.inFlight.set(socket, count - 1)
      })
    })
    // server.close() calls this method itself: make it the careful one.
    server.closeIdleConnections = () => this.closeIdle()
  }

  /** Closes the connections with no response in flight (keep-alive connections between requests). */
  closeIdle(): void {
    for (const [socket, count] of this.inFlight) if (count === 0) socket.destroy()
  }

  /** Cuts everything: the drain timeout has passed. */
  closeAll(server: Listener): void {
    server.closeAllConnections()
    for (const socket of this.inFlight.keys()) socket.destroy()
    for (const socket of this.raw) socket.destroy()
  }
}

/** Stops accepting, lets in-flight requests finish up to the drain timeout, then closes what is left. */
export function closeServer(server: Listener, connections: Connections, drainMs: number, log: Logger): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    const timer = setTimeout(() => {
      log.warn({ drainMs }, 'drain timeout reached; closing remaining connections')
      connections.closeAll(server)
    }, drainMs)
    timer.unref()
    // Keep-alive connections whose request finishes during the drain become idle: close them as they do.
    const sweeper = setInterval(() => connections.closeIdle(), 100)
    sweeper.unref()
    server.close(() => {
      clearTimeout(timer)
      clearInterval(sweeper)
      resolve()
    })
  })
}
