// Streams an upstream response body to the client with backpressure, counting bytes, in one small loop.
// stream.pipeline() does the same with an AbortController, end-of-stream watchers and an AbortError
// (DOMException) per call; on small registry answers (HEAD, GET /v2/, manifests) that was a measurable
// share of the gateway's CPU (npm run bench, --cpu-prof). On large blobs, batching chunks into fewer
// TLS writes saves more (see onData).
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import { streamedBytes } from '../lib/young-gc.js'

/** Bytes the gateway lets queue towards one client before it stops reading from the upstream (at least the socket's highWaterMark). */
const WINDOW = 256 * 1024

const ignore = (): void => undefined

export class ClientGone extends Error {
  constructor() {
    super('client closed the connection before the response was complete')
  }
}

/**
 * Resolves when the whole body is written and the response finished. Rejects when the upstream body
 * fails (the client response is destroyed, so the client sees a broken transfer, never a short 200)
 * or the client goes away (the upstream body is destroyed).
 */
export function relayBody(body: Readable, res: ServerResponse, onBytes: (count: number) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false
    const settle = (error?: Error): void => {
      if (settled) return
      settled = true
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onBodyError)
      res.off('drain', onDrain)
      res.off('finish', onFinish)
      res.off('close', onClose)
      if (error) reject(error)
      else resolve()
    }
    // Chunks that arrive in the same tick (undici reads 64 KiB at a time, several per socket event) are
    // written together: one TLS write of up to WINDOW bytes instead of one per 64 KiB.
    let corked = false
    const flush = (): void => {
      corked = false
      res.uncork()
    }
    const onData = (chunk: Buffer): void => {
      onBytes(chunk.length)
      streamedBytes(chunk.length)
      if (!corked) {
        corked = true
        res.cork()
        process.nextTick(flush)
      }
      const accepted = res.write(chunk)
      // Backpressure with a window larger than the socket's highWaterMark (16 KiB up to Node 20, 64 KiB since
      // Node 22), or nothing could be batched. Pause only once write() has said false: only then is a 'drain'
      // due, so a socket highWaterMark above WINDOW moves the pause point up instead of stalling the transfer.
      if (!accepted && res.writableLength >= WINDOW) body.pause()
    }
    const onDrain = (): void => {
      body.resume()
    }
    const onEnd = (): void => {
      res.end()
    }
    const onFinish = (): void => settle()
    const onBodyError = (error: Error): void => {
      res.destroy(error)
      settle(error)
    }
    const onClose = (): void => {
      if (res.writableFinished) return settle()
      body.destroy()
      settle(new ClientGone())
    }
    // Errors on the client socket end in 'close'; without a listener they would be thrown.
    res.on('error', ignore)
    // Destroying an undici body emits its 'error' (RequestAbortedError) a tick later, after settle()
    // took onBodyError away: without a listener that stays, that error would kill the process.
    body.on('error', ignore)
    body.on('data', onData)
    body.once('end', onEnd)
    body.once('error', onBodyError)
    res.on('drain', onDrain)
    res.once('finish', onFinish)
    res.once('close', onClose)
    if (res.destroyed) onClose()
  })
}
