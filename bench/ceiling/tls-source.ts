// Node's TLS send ceiling on this machine: an HTTPS server that answers every request with SIZE bytes from
// memory, written in CHUNK_KIB writes with backpressure. No upstream, no HTTP client, no parsing.
// Run: node --import=tsx bench/ceiling/tls-source.ts CERT KEY PORT CHUNK_KIB SIZE_MIB
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'
import { serverCipherOptions } from '../../src/tls/ciphers.js'

const [cert, key, port, chunkKiB, sizeMiB] = process.argv.slice(2)
if (!cert || !key || !port || !chunkKiB || !sizeMiB) throw new Error('usage: tls-source.ts CERT KEY PORT CHUNK_KIB SIZE_MIB')
const chunk = Buffer.alloc(Number(chunkKiB) * 1024, 7)
const total = Number(sizeMiB) * 1024 * 1024

const server = createServer({ cert: readFileSync(cert), key: readFileSync(key), ...serverCipherOptions }, (_req, res) => {
  res.writeHead(200, { 'content-length': total, 'content-type': 'application/octet-stream' })
  let sent = 0
  const pump = (): void => {
    while (sent < total) {
      const part = Math.min(chunk.length, total - sent)
      sent += part
      if (!res.write(part === chunk.length ? chunk : chunk.subarray(0, part))) {
        res.once('drain', pump)
        return
      }
    }
    res.end()
  }
  pump()
})
server.listen(Number(port), '127.0.0.1')
process.once('SIGTERM', () => process.exit(0))
