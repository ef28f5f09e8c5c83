// Answers a plain-HTTP request sent to the HTTPS listener with a readable 400, instead of a TLS alert the client prints as garbage.
import type { Server as NetServer, Socket } from 'node:net'
import type { Logger } from '../observe/log.js'
import { RegistryError } from '../registry/errors.js'
import { interceptConnections, peekFirstBytes } from '../net/first-bytes.js'

/** A TLS connection starts with a handshake record (22); an HTTP request with a method in capitals. */
const looksLikeHttp = (byte: number): boolean => byte >= 0x41 && byte <= 0x5a
/** How long to wait for a client's first byte before leaving the connection to the TLS server as it is. */
const FIRST_BYTE_WAIT_MS = 10_000
/** How long to keep reading (and discarding) the rest of the plain request after answering, so the answer is not lost to a reset. */
const LINGER_MS = 2_000

function answer(socket: Socket, url: string): void {
  const error = new RegistryError('HTTPS_REQUIRED', { use: url })
  const body = error.body()
  socket.end(
    [
      `HTTP/1.1 ${error.status} Bad Request`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Docker-Distribution-Api-Version: registry/2.0',
      'Connection: close',
      '',
      body,
    ].join('\r\n'),
  )
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  socket.resume()
}

/**
 * Looks at the first byte of every connection to `server` (a TLS server) before TLS sees it: a plain
 * HTTP request gets a 400 telling the client to use https:// (`url`, the gateway's configured
 * address, never built from the request), every other connection goes on unchanged.
 */
export function answerPlainHttp(server: NetServer, url: () => string, log: Logger): void {
  interceptConnections(server, (socket, handOn) => {
    // The first byte decides: a TLS record (0x16) or anything else that is not a capital letter goes on to TLS.
    peekFirstBytes(socket, (bytes) => looksLikeHttp(bytes[0] as number), FIRST_BYTE_WAIT_MS, (plain) => {
      if (plain !== true) return handOn(socket)
      socket.on('error', () => socket.destroy())
      log.info({ client: socket.remoteAddress }, 'plain HTTP request on the HTTPS listener; answered 400')
      answer(socket, url())
    })
  })
}
