// What both minimal forwarders share: their settings from the environment and the TLS listener.
// TLS as Portier serves it (cipher order), so the comparison is of the forwarding and nothing else.
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { serverCipherOptions } from '../../src/tls/ciphers.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

export interface ForwarderSettings {
  port: number
  /** e.g. http://127.0.0.1:5000 */
  upstream: string
  cert: string
  key: string
}

export function settingsFromEnv(): ForwarderSettings {
  const need = (name: string): string => {
    const value = process.env[name]
    if (!value) throw new Error(`${name} is not set`)
    return value
  }
  return { port: Number(need('FORWARDER_PORT')), upstream: need('FORWARDER_UPSTREAM'), cert: need('FORWARDER_CERT'), key: need('FORWARDER_KEY') }
}

/** An HTTPS listener on 127.0.0.1 with the same timeouts as Portier's (none for whole requests); stops on SIGTERM. */
export function listenTls(settings: ForwarderSettings, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const server = createServer({ cert: readFileSync(settings.cert), key: readFileSync(settings.key), ...serverCipherOptions, requestTimeout: 0, keepAliveTimeout: 65_000 }, handler)
  server.listen(settings.port, '127.0.0.1')
  process.once('SIGTERM', () => {
    server.close()
    server.closeAllConnections()
    process.exit(0)
  })
  return server
}
