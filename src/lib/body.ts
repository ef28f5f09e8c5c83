// Reads a whole small body (a client's JSON or form, an upstream's manifest or error) into memory, never more than a cap.
import type { Readable } from 'node:stream'

export interface CappedRead {
  /** Bytes accepted at most. */
  maxBytes: number
  /** The error to fail with once the body is longer than maxBytes (`bytes`: how many came so far). */
  tooLarge: (bytes: number) => Error
  /**
   * What becomes of the rest of an overlong body: `discard` reads and drops it (a client's request,
   * so that the client gets to read the error and the connection stays usable), `destroy` ends the
   * stream (an upstream's answer: nothing more of it is wanted).
   */
  rest: 'discard' | 'destroy'
  /** Each chunk kept, as it arrives (to count bytes received). */
  onChunk?: (chunk: Buffer) => void
}

/** The stream closed before its end: the peer went away mid-body. */
export class BodyIncomplete extends Error {
  constructor(readonly bytes: number) {
    super(`the body ended after ${bytes} bytes, before it was complete`)
  }
}

/**
 * The whole body, or a rejection: `tooLarge` as soon as it passes `maxBytes` (the rest handled as
 * `rest` says), the stream's own error, or BodyIncomplete when it closes before its end. An error
 * listener stays attached, so an error the stream emits later (undici's abort after a destroy, a
 * reset while the rest is discarded) never goes unhandled.
 */
export function readCapped(stream: Readable, options: CappedRead): Promise<Buffer> {
  const { maxBytes, tooLarge, rest, onChunk } = options
  stream.on('error', ignore)
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const stop = (): void => {
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
      stream.off('close', onClose)
    }
    const onData = (chunk: Buffer | string): void => {
      const piece = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
      size += piece.length
      if (size > maxBytes) {
        stop()
        if (rest === 'destroy') stream.destroy()
        else stream.resume()
        reject(tooLarge(size))
        return
      }
      onChunk?.(piece)
      chunks.push(piece)
    }
    const onEnd = (): void => {
      stop()
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
    }
    const onError = (error: Error): void => {
      stop()
      reject(error)
    }
    // 'close' after 'end' is normal; 'close' without it means the body was cut short.
    const onClose = (): void => {
      stop()
      reject(new BodyIncomplete(size))
    }
    if (stream.readableEnded) {
      reject(new BodyIncomplete(0))
      return
    }
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('error', onError)
    stream.once('close', onClose)
  })
}

export interface BodyPrefix {
  /** The first bytes of the body, at most the cap. */
  head: Buffer
  /** The body's whole length. */
  bytes: number
}

/**
 * Reads a body to its end keeping only its first `maxBytes` (the rest is read and dropped, so the
 * connection stays reusable): for an upstream's error answer that is relayed or inspected.
 */
export async function readPrefix(stream: Readable, maxBytes: number): Promise<BodyPrefix> {
  const chunks: Buffer[] = []
  let kept = 0
  let bytes = 0
  stream.on('error', ignore)
  for await (const chunk of stream) {
    const piece = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer)
    bytes += piece.length
    if (kept < maxBytes) {
      const part = piece.length <= maxBytes - kept ? piece : piece.subarray(0, maxBytes - kept)
      chunks.push(part)
      kept += part.length
    }
  }
  return { head: Buffer.concat(chunks), bytes }
}

/** JSON.parse of a body read with readCapped; `invalid` makes the error when it is not JSON. */
export function parseJson(body: Buffer, invalid: () => Error): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    throw invalid()
  }
}

function ignore(): void {}
