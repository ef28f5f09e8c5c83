// A small HTTPS client for e2e tests: raw paths (no URL normalisation), explicit headers, bodies as buffers or chunk lists.
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:https'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

export const MiB = 1024 * 1024

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The parsed JSON body (throws when it is not JSON). */
  json(): unknown
  /** First registry error code of a `{"errors":[…]}` body, or undefined. */
  errorCode(): string | undefined
}

/** The answer to a body streamed until the gateway answered, and how many body bytes had gone out by then. */
export interface Streamed {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  sent: number
}

export interface SendOptions {
  headers?: OutgoingHttpHeaders
  /** One buffer (sent with Content-Length unless chunked) or several pieces. */
  body?: Buffer | string | Buffer[]
  /** Send with Transfer-Encoding: chunked and no Content-Length. */
  chunked?: boolean
  timeoutMs?: number
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await check()) return true
    if (Date.now() > deadline) return false
    await sleep(50)
  }
}

export class GatewayClient {
  readonly origin: string
  readonly ca: Buffer
  readonly agent: Agent
  private readonly host: string
  private readonly port: number

  constructor(gateway: { url: string; caFile: string }) {
    this.origin = gateway.url
    this.ca = readFileSync(gateway.caFile)
    const url = new URL(gateway.url)
    this.host = url.hostname
    this.port = Number(url.port)
    this.agent = new Agent({ keepAlive: true, ca: this.ca, maxSockets: 16 })
  }

  close(): void {
    this.agent.destroy()
  }

  /** Options for a raw node:https request against the gateway (for tests that drive the socket themselves). */
  options(method: string, path: string, headers: OutgoingHttpHeaders = {}, agent: Agent | false = this.agent) {
    return { host: this.host, port: this.port, method, path, headers, ca: this.ca, agent, servername: undefined as string | undefined }
  }

  send(method: string, path: string, options: SendOptions = {}): Promise<Reply> {
    const headers: OutgoingHttpHeaders = { ...(options.headers ?? {}) }
    const pieces = options.body === undefined ? [] : Array.isArray(options.body) ? options.body : [Buffer.from(options.body)]
    if (options.chunked) headers['transfer-encoding'] = 'chunked'
    else if (options.body !== undefined && headers['content-length'] === undefined) {
      headers['content-length'] = pieces.reduce((sum, piece) => sum + piece.length, 0)
    }
    return new Promise<Reply>((resolve, reject) => {
      const req = request(this.options(method, path, headers), (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', reject)
        res.on('end', () => {
          const body = Buffer.concat(chunks)
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            json: () => JSON.parse(body.toString('utf8')) as unknown,
            errorCode: () => {
              try {
                return (JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string }> }).errors?.[0]?.code
              } catch {
                return undefined
              }
            },
          })
        })
      })
      req.on('error', reject)
      if (options.timeoutMs) req.setTimeout(options.timeoutMs, () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)))
      for (const piece of pieces) req.write(piece)
      req.end()
    })
  }

  /**
   * Sends a body of `total` random bytes in `pieceBytes` writes (with backpressure), with exactly
   * `headers` (Content-Length or Transfer-Encoding among them), and stops writing as soon as the
   * answer arrives. With `headersOnly`, only the headers go out: the answer must come without any body byte.
   */
  streamUntilAnswered(method: string, path: string, total: number, headers: OutgoingHttpHeaders, options: { pieceBytes: number; headersOnly?: boolean }): Promise<Streamed> {
    return new Promise((resolve, reject) => {
      const req = request(this.options(method, path, headers, false))
      let sent = 0
      let answered = false
      req.on('response', (res) => {
        answered = true
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), sent })
          req.destroy()
        })
        res.on('error', reject)
      })
      req.on('error', (error) => {
        if (!answered) reject(new Error(`no answer after ${sent} bytes: ${error.message}`))
      })
      if (options.headersOnly) {
        req.flushHeaders()
        return
      }
      const piece = randomBytes(options.pieceBytes)
      const write = (): void => {
        while (!answered && sent < total) {
          const n = Math.min(piece.length, total - sent)
          sent += n
          if (!req.write(n === piece.length ? piece : piece.subarray(0, n))) {
            req.once('drain', write)
            return
          }
        }
        if (!answered) req.end()
      }
      write()
    })
  }

  /** The path part of an absolute Location that must point at this gateway; throws otherwise. */
  pathOf(location: string | undefined): string {
    if (!location || !location.startsWith(`${this.origin}/`)) throw new Error(`Location ${location} does not point at ${this.origin}`)
    return location.slice(this.origin.length)
  }
}
