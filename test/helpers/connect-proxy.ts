// An HTTP CONNECT proxy on 127.0.0.1 that sends every tunnel to 127.0.0.1 at the requested port, so a
// client given HTTPS_PROXY reaches test names like registry.test (which no resolver knows) while
// TLS still runs end to end with that name's SNI and certificate verification.
import { createServer, type Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface ConnectProxy {
  url: string
  /** host:port of every tunnel opened so far. */
  tunnels: string[]
  close(): Promise<void>
}

export async function startConnectProxy(): Promise<ConnectProxy> {
  const tunnels: string[] = []
  const sockets = new Set<Socket>()
  const server: Server = createServer((_req, res) => {
    res.writeHead(405, { 'Content-Type': 'text/plain' })
    res.end('CONNECT only\n')
  })
  server.on('connect', (req, client: Socket, head: Buffer) => {
    const target = req.url ?? ''
    const port = Number(/:(\d+)$/.exec(target)?.[1])
    if (!port) {
      client.end('HTTP/1.1 400 Bad Request\r\n\r\n')
      return
    }
    tunnels.push(target)
    const upstream = connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    }
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address ? address.port : 0
  return {
    url: `http://127.0.0.1:${port}`,
    tunnels,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

export async function connectProxyFixture(t: Test): Promise<ConnectProxy> {
  const proxy = await startConnectProxy()
  t.teardown(() => proxy.close())
  return proxy
}
