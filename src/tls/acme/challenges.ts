// Answers the CA's validation requests: HTTP-01 on the plain-HTTP listener, TLS-ALPN-01 on the TLS port.
// Pending challenges are also written to shared storage, so when several instances sit behind one
// load balancer, whichever instance the CA reaches can answer for the one that ordered.
import { readFileSync, unlinkSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Server as NetServer, Socket } from 'node:net'
import { join } from 'node:path'
import { createSecureContext, TLSSocket, type SecureContext } from 'node:tls'
import type { Logger } from '../../observe/log.js'
import { interceptConnections, peekFirstBytes, type HandOn } from '../../net/first-bytes.js'
import { readClientHello, type HelloResult } from './client-hello.js'
import { writeFileAtomically } from '../../lib/atomic-write.js'

export const ACME_TLS_PROTOCOL = 'acme-tls/1'
const HTTP_PATH = /^\/\.well-known\/acme-challenge\/([A-Za-z0-9_-]+)$/
/** How long to wait for a complete ClientHello before handing the connection on unexamined. */
const HELLO_WAIT_MS = 5000

export interface ChallengeCounters {
  http01Answered: number
  tlsAlpn01Answered: number
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    // Already gone (another instance or a previous cleanup).
  }
}

export class ChallengeResponder {
  private readonly http = new Map<string, string>()
  private readonly alpn = new Map<string, SecureContext>()
  readonly counters: ChallengeCounters = { http01Answered: 0, tlsAlpn01Answered: 0 }

  constructor(
    /** Shared directory for pending challenges (storage/<ca>/challenges). */
    private readonly dir: string,
    private readonly log: Logger,
  ) {}

  addHttp(token: string, keyAuthorization: string): void {
    this.http.set(token, keyAuthorization)
    writeFileAtomically(join(this.dir, `http-${token}`), keyAuthorization, 0o600)
  }

  removeHttp(token: string): void {
    this.http.delete(token)
    removeQuietly(join(this.dir, `http-${token}`))
  }

  /** The key and certificate carrying the acmeIdentifier extension for `domain` (RFC 8737). */
  addAlpn(domain: string, keyPem: string, certPem: string): void {
    const name = domain.toLowerCase()
    this.alpn.set(name, createSecureContext({ key: keyPem, cert: certPem, minVersion: 'TLSv1.2' }))
    writeFileAtomically(join(this.dir, `alpn-${name}.pem`), `${keyPem.trim()}\n${certPem.trim()}\n`, 0o600)
  }

  removeAlpn(domain: string): void {
    const name = domain.toLowerCase()
    this.alpn.delete(name)
    removeQuietly(join(this.dir, `alpn-${name}.pem`))
  }

  private httpAnswer(token: string): string | undefined {
    const known = this.http.get(token)
    if (known !== undefined) return known
    try {
      return readFileSync(join(this.dir, `http-${token}`), 'utf8')
    } catch {
      return undefined
    }
  }

  private alpnContext(domain: string): SecureContext | undefined {
    const known = this.alpn.get(domain)
    if (known) return known
    // Names reach here only from a ClientHello: keep them to DNS characters before touching the disk.
    if (!/^[a-z0-9.-]{1,253}$/.test(domain)) return undefined
    try {
      const pem = readFileSync(join(this.dir, `alpn-${domain}.pem`), 'utf8')
      return createSecureContext({ key: pem, cert: pem, minVersion: 'TLSv1.2' })
    } catch {
      return undefined
    }
  }

  /** Answers GET /.well-known/acme-challenge/<token> and returns true; false for any other request. */
  answerHttp(req: IncomingMessage, res: ServerResponse): boolean {
    const path = (req.url ?? '/').split('?')[0] as string
    const match = HTTP_PATH.exec(path)
    if (!match || (req.method !== 'GET' && req.method !== 'HEAD')) return false
    const token = match[1] as string
    const answer = this.httpAnswer(token)
    if (answer === undefined) {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': '0' })
      res.end()
      this.log.warn({ token, client: req.socket.remoteAddress }, 'ACME http-01 request for an unknown token')
      return true
    }
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': String(Buffer.byteLength(answer)) })
    res.end(req.method === 'HEAD' ? undefined : answer)
    this.counters.http01Answered++
    this.log.info({ token, host: req.headers.host, client: req.socket.remoteAddress }, 'answered ACME http-01 challenge')
    return true
  }

  /**
   * Makes `server` (a TLS server) answer TLS-ALPN-01 validations: each new connection's ClientHello
   * is read first; one offering only "acme-tls/1" gets the challenge certificate and is closed,
   * every other connection goes on to the server unchanged (the bytes read are put back).
   */
  interceptTlsAlpn(server: NetServer): void {
    interceptConnections(server, (socket, handOn) => this.examine(socket, handOn))
  }

  private examine(socket: Socket, handOn: HandOn): void {
    const judge = (bytes: Buffer): Exclude<HelloResult, 'incomplete'> | undefined => {
      const result = readClientHello(bytes)
      return result === 'incomplete' ? undefined : result
    }
    // A client that closes (or waits) before a full hello: TLS sees what there was and fails as usual.
    peekFirstBytes(socket, judge, HELLO_WAIT_MS, (result) => {
      if (typeof result === 'object' && result.alpn.length > 0 && result.alpn.every((p) => p === ACME_TLS_PROTOCOL)) {
        const context = result.serverName ? this.alpnContext(result.serverName) : undefined
        if (context) return this.answerAlpn(socket, context, result.serverName as string)
        this.log.warn({ servername: result.serverName, client: socket.remoteAddress }, 'ACME tls-alpn-01 handshake for a name with no pending challenge')
        socket.destroy()
        return
      }
      handOn(socket)
    })
  }

  private answerAlpn(socket: Socket, secureContext: SecureContext, servername: string): void {
    const tls = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: [ACME_TLS_PROTOCOL] })
    tls.setTimeout(10_000, () => tls.destroy())
    tls.on('error', (error: Error) => {
      this.log.warn({ servername, err: error.message }, 'ACME tls-alpn-01 handshake failed')
      tls.destroy()
    })
    // Counted when presented: the validator may close before our side sees its Finished.
    this.counters.tlsAlpn01Answered++
    this.log.info({ servername, client: socket.remoteAddress }, 'answered ACME tls-alpn-01 challenge')
    // RFC 8737: nothing follows the handshake.
    tls.on('secure', () => tls.end())
  }
}
