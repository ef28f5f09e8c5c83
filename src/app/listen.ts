// Parses "host:port" listen addresses and binds servers to them.
import type { Server } from 'node:net'

export interface ListenAddress {
  host: string
  port: number
}

export function parseListen(address: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address)
  if (!match) throw new Error(`not a listen address: ${address}`)
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port: Number(match[3]) }
}

export function listen(server: Server, address: ListenAddress): Promise<ListenAddress> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(address.port, address.host, () => {
      server.off('error', reject)
      const bound = server.address()
      resolve(typeof bound === 'object' && bound ? { host: address.host, port: bound.port } : address)
    })
  })
}

/** The host name a URL uses for a listen address: a wildcard address is reached as localhost. */
export function displayHost(address: ListenAddress): string {
  if (address.host === '0.0.0.0' || address.host === '::' || address.host === '') return 'localhost'
  return address.host.includes(':') ? `[${address.host}]` : address.host
}
