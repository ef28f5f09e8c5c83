// Looking at a connection's first bytes before the server it belongs to sees them (ACME tls-alpn-01, plain HTTP on the HTTPS port).
import type { Server as NetServer, Socket } from 'node:net'

/** Passes a connection on to the server's own 'connection' listeners (TLS, HTTP). */
export type HandOn = (socket: Socket) => void

/**
 * Runs `examine` on every new connection of `server` in place of the server's own 'connection'
 * listeners (those present now), which `examine` calls through `handOn` when the connection is theirs.
 * Interceptors stack: one installed later examines first and hands on to the earlier one.
 */
export function interceptConnections(server: NetServer, examine: (socket: Socket, handOn: HandOn) => void): void {
  const listeners = server.listeners('connection') as Array<(socket: Socket) => void>
  server.removeAllListeners('connection')
  const handOn: HandOn = (socket) => {
    for (const listener of listeners) listener.call(server, socket)
  }
  server.on('connection', (socket: Socket) => examine(socket, handOn))
}

/**
 * Reads `socket` until `judge` decides on the bytes so far (returns anything but undefined), the client
 * ends, or `waitMs` passes (then `decided` gets undefined). The bytes read are put back first, so
 * whoever takes the socket next reads them again. A socket error destroys it and decides nothing.
 */
export function peekFirstBytes<T>(socket: Socket, judge: (bytes: Buffer) => T | undefined, waitMs: number, decided: (result: T | undefined) => void): void {
  const chunks: Buffer[] = []
  let done = false
  const finish = (result: T | undefined): void => {
    if (done) return
    done = true
    clearTimeout(timer)
    socket.removeListener('readable', onReadable)
    socket.removeListener('error', onError)
    socket.removeListener('end', onEnd)
    const buffered = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks)
    if (buffered.length > 0) socket.unshift(buffered)
    decided(result)
  }
  const onReadable = (): void => {
    let chunk: Buffer | null
    while ((chunk = socket.read() as Buffer | null) !== null) chunks.push(chunk)
    if (chunks.length === 0) return
    const result = judge(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks))
    if (result !== undefined) finish(result)
  }
  const onError = (): void => {
    done = true
    clearTimeout(timer)
    socket.destroy()
  }
  // A client that closes (or says nothing) before enough bytes: the next owner sees what there was and fails as usual.
  const onEnd = (): void => finish(undefined)
  const timer = setTimeout(() => finish(undefined), waitMs)
  timer.unref()
  socket.on('readable', onReadable)
  socket.on('error', onError)
  socket.on('end', onEnd)
}
