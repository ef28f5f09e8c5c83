// The minimum transfer rate: a request or response body that moves slower than timeouts.min_rate while the gateway waits on the client is cut.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TimeoutsConfig } from './section.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'

export type SlowDirection = 'request' | 'response'

export interface SlowTransfer {
  direction: SlowDirection
  /** Bytes that moved during the window that was too slow. */
  bytes: number
  windowMs: number
  /** The least the window had to move. */
  needed: number
}

/** Stops watching; calling it again does nothing. */
export type StopWatching = () => void

/** A window shorter than this would judge a client by the jitter of a single write. */
const MIN_WINDOW_MS = 1000
/** How long a client that was cut may take to read the 408 before its connection is dropped. */
const CLOSE_AFTER_MS = 1000

export interface MinRate {
  /** Watches one forwarded request until it ends; `onSlow` runs once, after the transfer has been cut. */
  watch(req: IncomingMessage, res: ServerResponse, onSlow: (slow: SlowTransfer) => void): StopWatching
}

/**
 * nginx's client_body_timeout and send_timeout bound the pause between two reads or writes; a client
 * trickling a byte a second never pauses that long, and each such request holds an upstream
 * connection. So the rate is judged instead, like Apache's mod_reqtimeout MinRate: after a grace
 * period, every window in which the gateway was waiting on the client from start to end must
 * move `min_rate` bytes per second. Waiting on the client means reading its request body (the
 * upstream takes what comes: the request is not paused by backpressure) or holding response bytes
 * the client has not taken yet. A slow upstream makes the gateway wait on the upstream instead, so
 * it never counts against the client. Bytes are the socket's own counters: nothing is added to the
 * data path.
 */
export function createMinRate(timeouts: TimeoutsConfig): MinRate | undefined {
  if (timeouts.min_rate <= 0) return undefined
  const windowMs = Math.max(timeouts.min_rate_window, MIN_WINDOW_MS)
  const needed = Math.ceil((timeouts.min_rate * windowMs) / 1000)
  return {
    watch(req, res, onSlow) {
      const socket = req.socket
      // Bytes the client has sent, plus bytes the kernel accepted toward it (queued ones are not yet taken).
      const moved = (): number => socket.bytesRead + Math.max(socket.bytesWritten - socket.writableLength, 0)
      const waitingOn = (): SlowDirection | undefined => {
        if (!req.complete && req.readableFlowing === true) return 'request'
        if (res.headersSent && !res.writableFinished && res.writableLength > 0) return 'response'
        return undefined
      }
      let baseline = moved()
      let waiting = waitingOn()
      let interval: NodeJS.Timeout | undefined
      const tick = (): void => {
        const now = moved()
        const direction = waitingOn()
        const bytes = now - baseline
        if (direction !== undefined && direction === waiting && bytes < needed) {
          stop()
          cut(req, res, direction)
          onSlow({ direction, bytes, windowMs, needed })
          return
        }
        baseline = now
        waiting = direction
      }
      const grace = setTimeout(() => {
        baseline = moved()
        waiting = waitingOn()
        interval = setInterval(tick, windowMs)
        interval.unref()
      }, timeouts.min_rate_grace)
      grace.unref()
      let stopped = false
      const stop = (): void => {
        if (stopped) return
        stopped = true
        clearTimeout(grace)
        clearInterval(interval)
      }
      return stop
    },
  }
}

/**
 * A slow upload is answered 408 (if nothing was answered yet) and its connection closed; the
 * forwarder sees the client gone and cancels the upload session upstream (an upload into storage is
 * cut back to where the request began instead). A slow download can only be cut: its status line is
 * already out.
 */
function cut(req: IncomingMessage, res: ServerResponse, direction: SlowDirection): void {
  const socket = req.socket
  if (direction === 'request' && !res.headersSent) {
    // Nothing more of this body is wanted.
    req.pause()
    res.once('finish', () => {
      // The client reads the 408 before the connection goes: FIN first, then the rest once it has closed (or a moment later).
      const drop = (): void => {
        clearTimeout(timer)
        endRequest(req)
        socket.destroy()
      }
      const timer = setTimeout(drop, CLOSE_AFTER_MS)
      timer.unref()
      socket.once('close', drop)
      socket.end()
    })
    sendRegistryError(res, new RegistryError('TOO_SLOW', { direction }, { Connection: 'close' }))
    return
  }
  endRequest(req)
  socket.destroy()
}

/**
 * Ends the request for whoever streams its body upstream: they see the client gone and end or abort
 * the upstream request (an upload session is then cancelled). Once a response has finished, Node
 * no longer tells the request that its socket closed, so it is destroyed here, with an error
 * (that is what a body piped upstream listens for) and a listener so that error cannot go unhandled.
 */
function endRequest(req: IncomingMessage): void {
  if (req.destroyed) return
  req.on('error', () => undefined)
  req.destroy(new Error('transfer slower than timeouts.min_rate'))
}
