// A real HTTP receiver of registry:2 notifications on 127.0.0.1: records every POST (headers, raw body, parsed events); can go down and come back on its port.
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createTlsServer } from 'node:https'
import type { AddressInfo } from 'node:net'

export interface ReceivedEvent {
  id: string
  timestamp: string
  action: string
  target: Record<string, unknown>
  request: Record<string, unknown>
  actor: Record<string, unknown>
  source: Record<string, unknown>
}

export interface Delivery {
  headers: IncomingHttpHeaders
  body: Buffer
  events: ReceivedEvent[]
}

export interface Receiver {
  url: string
  port: number
  deliveries: Delivery[]
  /** Every event received, in arrival order. */
  events(): ReceivedEvent[]
  /** Answer each POST with this status (200 by default). */
  status: number
  /** Closes the listener (connections refused) until up(). */
  down(): Promise<void>
  up(): Promise<void>
  /** Resolves once `count` events have arrived; rejects after timeoutMs. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedEvent[]>
  close(): Promise<void>
}

/** `tls`: serve HTTPS with this certificate and key (PEM), e.g. one from a CA of the test's own. */
export async function startReceiver(path = '/api/notification', tls?: { cert: Buffer; key: Buffer }): Promise<Receiver> {
  const deliveries: Delivery[] = []
  const waiters = new Set<() => void>()
  let server: Server | undefined
  let port = 0
  const receiver: Receiver = {
    url: '',
    port: 0,
    deliveries,
    status: 200,
    events: () => deliveries.flatMap((delivery) => delivery.events),
    async down() {
      const current = server
      server = undefined
      if (!current) return
      current.closeAllConnections()
      await new Promise<void>((resolve) => current.close(() => resolve()))
    },
    async up() {
      if (server) return
      server = await listen()
    },
    waitFor(count, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (receiver.events().length < count) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve(receiver.events())
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`receiver: ${receiver.events().length} of ${count} events after ${timeoutMs} ms`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    close: () => receiver.down(),
  }

  function listen(): Promise<Server> {
    const handle = (req: IncomingMessage, res: ServerResponse): void => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('error', () => res.destroy())
      req.on('end', () => {
        const status = receiver.status
        if (req.method === 'POST' && req.url === path && status < 400) {
          const body = Buffer.concat(chunks)
          const parsed = JSON.parse(body.toString('utf8')) as { events: ReceivedEvent[] }
          deliveries.push({ headers: req.headers, body, events: parsed.events })
        }
        res.writeHead(status, { 'content-type': 'text/plain' })
        res.end('ok')
        for (const waiter of [...waiters]) waiter()
      })
    }
    const created: Server = tls ? createTlsServer(tls, handle) : createServer(handle)
    return new Promise((resolve, reject) => {
      created.once('error', reject)
      created.listen(port, '127.0.0.1', () => {
        port = (created.address() as AddressInfo).port
        resolve(created)
      })
    })
  }

  server = await listen()
  receiver.port = port
  receiver.url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}${path}`
  return receiver
}
