// Streams part of an open blob file to a client from a few reused buffers: each is read into, written, and taken again once the socket is done with it.
import type { FileHandle } from 'node:fs/promises'
import type { ServerResponse } from 'node:http'
import { ClientGone } from '../forward/relay-body.js'

/**
 * A fresh buffer per read (what fs.createReadStream does) made the garbage collector a quarter of
 * the gateway's busy time on a 512 MiB download (--cpu-prof): every byte of the blob became garbage
 * once written. The same few buffers carry the whole file instead. Their number is also the
 * backpressure: at most POOL_BUFFERS reads wait in the socket, and the next read waits for one back.
 */
const POOL_BUFFERS = 4

const ignore = (): void => undefined

/**
 * Sends `length` bytes of `handle` from `start`, then ends the response. Rejects with ClientGone
 * when the client leaves; a read error destroys the response (the client sees a broken transfer,
 * never a short 200). Never closes `handle`: the caller does, once this settles.
 */
export async function sendFile(res: ServerResponse, handle: FileHandle, start: number, length: number, chunkBytes: number, onBytes: (count: number) => void): Promise<void> {
  const count = Math.max(1, Math.min(POOL_BUFFERS, Math.ceil(length / chunkBytes)))
  const free: Buffer[] = Array.from({ length: count }, () => Buffer.allocUnsafe(Math.min(chunkBytes, length)))
  let wake: (() => void) | undefined
  let gone = false
  const onClose = (): void => {
    if (res.writableFinished) return
    gone = true
    wake?.()
  }
  // Errors on the client socket end in 'close'; without a listener they would be thrown.
  res.on('error', ignore)
  res.on('close', onClose)
  try {
    let position = start
    let left = length
    while (left > 0) {
      if (gone || res.destroyed) throw new ClientGone()
      const buffer = free.pop()
      if (buffer === undefined) {
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        wake = undefined
        continue
      }
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, left), position)
      if (bytesRead === 0) throw new Error('the blob file is shorter than its size')
      position += bytesRead
      left -= bytesRead
      onBytes(bytesRead)
      // The callback runs once the socket has taken (encrypted and written) the bytes: the buffer may be read into again.
      res.write(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead), () => {
        free.push(buffer)
        wake?.()
      })
    }
    if (gone || res.destroyed) throw new ClientGone()
    await new Promise<void>((resolve, reject) => {
      res.once('finish', resolve)
      res.once('close', () => (res.writableFinished ? resolve() : reject(new ClientGone())))
      res.end()
    })
  } catch (error) {
    if (!(error instanceof ClientGone)) res.destroy(error instanceof Error ? error : new Error('blob read failed'))
    throw error
  } finally {
    res.off('close', onClose)
  }
}
