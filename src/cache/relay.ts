// The loopback relay between a cache's registry and its remote: presents the remote's basic credentials (registry 2.8's proxy mode only answers token challenges), trusts the remote's CA, and sees every remote answer (bytes, failures, 429 with its Retry-After).
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'
import { pipeline } from 'node:stream/promises'
import { Pool } from 'undici'
import { streamedBytes } from '../lib/young-gc.js'

export interface RelayEvents {
  /** Body bytes that came from the remote. */
  bytes(count: number): void
  /** The remote could not be reached, or answered 5xx or 429. */
  failed(reason: 'unreachable' | '5xx' | '429'): void
}

export interface RelayOptions {
  remote: string
  username: string
  password: string
  caFile: string
  connectTimeoutMs: number
  headersTimeoutMs: number
  bodyIdleMs: number
}

// Hop-by-hop headers (RFC 9110 7.6.1) and the Host the pool sets itself.
const hopByHop = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'])

function endToEnd(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !hopByHop.has(name)) kept[name] = value
  return kept
}

/** Retry-After in seconds (a number or an HTTP date); 60 when absent or unreadable. */
export function retryAfterSeconds(value: string | string[] | undefined): number {
  const text = Array.isArray(value) ? value[0] : value
  if (text === undefined) return 60
  if (/^\d+$/.test(text.trim())) return Number(text.trim())
  const at = Date.parse(text)
  return Number.isNaN(at) ? 60 : Math.max(0, Math.ceil((at - Date.now()) / 1000))
}

export class RemoteRelay {
  private readonly server: Server
  private readonly pool: Pool
  private readonly authorization: string | undefined
  /** Until when the remote asked not to be asked (its 429's Retry-After). */
  private limitedUntil = 0
  /** 429 answers seen so far: a request that began before one and failed after it was refused by the remote. */
  rateLimits = 0
  url = ''

  constructor(
    options: RelayOptions,
    private readonly events: RelayEvents,
  ) {
    const ca = options.caFile ? [...rootCertificates, readFileSync(options.caFile, 'utf8')] : undefined
    this.pool = new Pool(new URL(options.remote).origin, {
      connections: 32,
      allowH2: false,
      connect: { timeout: options.connectTimeoutMs, ...(ca ? { ca } : {}) },
      headersTimeout: options.headersTimeoutMs,
      bodyTimeout: options.bodyIdleMs,
    })
    this.authorization = options.username ? `Basic ${Buffer.from(`${options.username}:${options.password}`).toString('base64')}` : undefined
    this.server = createServer((req, res) => {
      // relay() answers every failure itself; anything else ends the registry's request broken, never the process.
      this.relay(req, res).catch(() => res.destroy())
    })
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(0, '127.0.0.1', () => {
        this.server.off('error', reject)
        resolve()
      })
    })
    const address = this.server.address()
    if (typeof address !== 'object' || address === null) throw new Error('the relay has no address')
    this.url = `http://127.0.0.1:${address.port}`
  }

  /** While the remote is rate limiting this cache: the seconds its Retry-After has left (at least 1), else undefined. */
  rateLimited(now = Date.now()): string | undefined {
    return now < this.limitedUntil ? String(Math.max(1, Math.ceil((this.limitedUntil - now) / 1000))) : undefined
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
    await this.pool.close().catch(() => undefined)
  }

  private async relay(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers = endToEnd(req.headers)
    // The registry sends its own Bearer token once it has one (Docker Hub); basic credentials are the relay's to add.
    if (this.authorization && headers.authorization === undefined) headers.authorization = this.authorization
    const hasBody = req.method !== 'GET' && req.method !== 'HEAD'
    const controller = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) controller.abort()
    })
    let answer
    try {
      answer = await this.pool.request({
        method: req.method === 'HEAD' ? 'HEAD' : req.method === 'GET' ? 'GET' : (req.method as 'POST'),
        path: req.url ?? '/',
        headers,
        body: hasBody ? req : null,
        signal: controller.signal,
        reset: false,
      })
    } catch (error) {
      req.resume()
      if (controller.signal.aborted) return
      this.events.failed('unreachable')
      const body = JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: `remote unreachable: ${error instanceof Error ? error.message : String(error)}` }] })
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
      return
    }
    if (answer.statusCode === 429) {
      this.limitedUntil = Date.now() + retryAfterSeconds(answer.headers['retry-after']) * 1000
      this.rateLimits += 1
      this.events.failed('429')
    } else if (answer.statusCode >= 500) {
      this.events.failed('5xx')
    }
    res.writeHead(answer.statusCode, endToEnd(answer.headers))
    answer.body.on('data', (chunk: Buffer) => {
      this.events.bytes(chunk.length)
      streamedBytes(chunk.length)
    })
    try {
      await pipeline(answer.body, res)
    } catch {
      // The remote or the registry went away mid-body: pipeline destroyed both sides, so the registry sees a broken transfer.
    }
  }
}
