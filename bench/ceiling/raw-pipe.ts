// The least a Node forwarder can do for a download: per TLS connection, open a TCP connection to the
// registry, send one GET for PATH and copy the raw bytes back (status line and headers included) with
// stream.pipe(). No HTTP parser, no undici, no auth: what is left is Node's TLS and socket I/O.
// Run: node --import=tsx bench/ceiling/raw-pipe.ts CERT KEY PORT UPSTREAM_PORT PATH
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { createServer } from 'node:tls'
import { serverCipherOptions } from '../../src/tls/ciphers.js'

const [cert, key, port, upstreamPort, path] = process.argv.slice(2)
if (!cert || !key || !port || !upstreamPort || !path) throw new Error('usage: raw-pipe.ts CERT KEY PORT UPSTREAM_PORT PATH')

const server = createServer({ cert: readFileSync(cert), key: readFileSync(key), ...serverCipherOptions }, (client) => {
  client.once('data', () => {
    const upstream = connect({ port: Number(upstreamPort), host: '127.0.0.1' }, () => {
      upstream.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
    })
    upstream.pipe(client)
    upstream.on('error', () => client.destroy())
    client.on('error', () => upstream.destroy())
  })
})
server.listen(Number(port), '127.0.0.1')
process.once('SIGTERM', () => process.exit(0))
