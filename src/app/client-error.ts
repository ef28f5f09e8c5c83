// Requests Node's HTTP parser cannot read (garbage, oversized headers, a header timeout): the registry's JSON error, then the connection closes.
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Logger } from '../observe/log.js'
import { RegistryError } from '../registry/errors.js'

/** What Node's parser reports; `code` is llhttp's (HPE_*) or Node's own. */
type ParserError = Error & { code?: string }

/** The response Node attaches to a connection while a request on it is answered (not in its types). */
type ServedSocket = Duplex & { _httpMessage?: { headersSent: boolean } | null; remoteAddress?: string }

/** Errors of Node's HTTP parser (llhttp's HPE_*) and its request/headers timeout: a request was being read. */
function readByHttp(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('HPE_') || code === 'ERR_HTTP_REQUEST_TIMEOUT')
}

function statusOf(code: string | undefined): number {
  if (code === 'HPE_HEADER_OVERFLOW') return 431
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return 408
  if (code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW') return 413
  return 400
}

/**
 * Node's own answer is a bare `400 Bad Request` with no body; docker and skopeo then print nothing
 * useful. Same rules as Node's: a connection already answering (status line sent) or gone is only
 * closed, since another status line would corrupt the response in flight.
 */
export function answerClientError(error: ParserError, socket: Duplex, log: Logger): void {
  const served = socket as ServedSocket
  if (!readByHttp(error.code)) {
    // Not a request HTTP read (a TLS handshake that failed or timed out, a reset): there is no one to
    // answer in HTTP. Ending the socket instead would wait on a handshake that never completes.
    log.debug({ client: served.remoteAddress, reason: error.code ?? error.message }, 'connection failed before a request')
    socket.destroy()
    return
  }
  if (!socket.writable || served._httpMessage?.headersSent === true) {
    socket.destroy()
    return
  }
  endWithError(socket, statusOf(error.code), error.code ?? error.message, log)
}

/**
 * The answer to a request the gateway never sees (Node could not read it, or would answer it itself):
 * the registry's JSON error and its headers, the connection closing after it; logged once.
 */
export function unreadableAnswer(status: number, reason: string, client: string | undefined, log: Logger, extraHeaders: Record<string, string> = {}): { body: string; headers: Record<string, string> } {
  // The status says which limit or failure; the body is the registry's error format.
  const body = new RegistryError('REQUEST_INVALID', { reason }).body()
  log.info({ client, status, reason }, 'unreadable request')
  return {
    body,
    headers: {
      Connection: 'close',
      'Content-Type': 'application/json; charset=utf-8',
      'Docker-Distribution-Api-Version': 'registry/2.0',
      ...extraHeaders,
      'Content-Length': String(Buffer.byteLength(body)),
    },
  }
}

/**
 * unreadableAnswer written straight to the socket, then the connection closes: for what Node would
 * otherwise answer itself or drop (a CONNECT request, a request it cannot parse).
 */
export function endWithError(socket: Duplex, status: number, reason: string, log: Logger, extraHeaders: Record<string, string> = {}): void {
  const { body, headers } = unreadableAnswer(status, reason, (socket as ServedSocket).remoteAddress, log, extraHeaders)
  // A socket handed over by Node (a CONNECT's) has no error listener left: a reset would be thrown.
  if (socket.listenerCount('error') === 0) socket.on('error', () => socket.destroy())
  const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Bad Request'}\r\n${head}\r\n${body}`)
  // A client that never reads its answer does not keep the connection; one that closes takes the timer with it.
  const timer = setTimeout(() => socket.destroy(), 5000)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}
