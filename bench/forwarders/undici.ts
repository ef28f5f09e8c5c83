// The smallest TLS-terminating forwarder built on undici's Pool (Portier's engine, without auth, limits or logging),
// for the engine comparison.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { Pool, type Dispatcher } from 'undici'
import { listenTls, settingsFromEnv } from './common.js'

const settings = settingsFromEnv()
const pool = new Pool(settings.upstream, { connections: 128, keepAliveTimeout: 30_000, bodyTimeout: 300_000 })
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host'])

function upstreamHeaders(req: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || hopByHop.has(name)) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  headers['x-forwarded-for'] = req.socket.remoteAddress ?? ''
  headers['x-forwarded-proto'] = 'https'
  headers['x-forwarded-host'] = req.headers.host ?? ''
  headers.host = req.headers.host ?? ''
  return headers
}

function clientHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !hopByHop.has(name)) out[name] = value
  return out
}

async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = (req.method ?? 'GET') as Dispatcher.HttpMethod
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
  const response = await pool.request({
    method,
    path: req.url ?? '/',
    headers: upstreamHeaders(req),
    body: hasBody ? req : null,
    highWaterMark: 1 << 20,
    reset: false,
  })
  res.writeHead(response.statusCode, clientHeaders(response.headers))
  await pipeline(response.body, res)
}

listenTls(settings, (req, res) => {
  forward(req, res).catch((error: unknown) => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain' })
      res.end(String(error))
    } else {
      res.destroy()
    }
  })
})
