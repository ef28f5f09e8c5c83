// Headers every answer of the main listener carries: X-Content-Type-Options, and Strict-Transport-Security when configured.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import type { HstsConfig } from './section.js'
import { plainIp } from '../net/addresses.js'
import { forwardedProto, type TrustedProxies } from '../forward/headers.js'

export interface SecurityHeadersOptions {
  hsts: HstsConfig
  tlsEnabled: boolean
  /** Whether the certificate served to a client naming `servername` is one it can verify (not self-signed). */
  verifiableCertificate: (servername: string | undefined) => boolean
  /** Peers whose X-Forwarded-Proto is believed: with TLS off, an answer to a client they say used plain HTTP carries no HSTS. */
  trustedProxies?: TrustedProxies
}

export type SetSecurityHeaders = (req: IncomingMessage, res: ServerResponse) => void

/** The Strict-Transport-Security value for the configured max-age (whole seconds) and subdomain choice. */
export function hstsValue(hsts: HstsConfig): string {
  const value = `max-age=${Math.floor(hsts.max_age / 1000)}`
  return hsts.include_subdomains ? `${value}; includeSubDomains` : value
}

export function createSecurityHeaders(options: SecurityHeadersOptions): SetSecurityHeaders {
  const { hsts, tlsEnabled } = options
  const value = hstsValue(hsts)
  const sendsHsts = (req: IncomingMessage): boolean => {
    if (hsts.send === 'never') return false
    // `always` is for a gateway behind another TLS terminator, which answers clients over HTTPS; a client
    // that terminator reports on plain HTTP must not get it (RFC 6797 7.2: never over non-secure transport).
    if (hsts.send === 'always') return !reportedPlainHttp(req)
    // Pinning browsers to a certificate they cannot verify would lock them out until max-age runs out.
    if (!tlsEnabled) return false
    const socket = req.socket as TLSSocket
    return socket.encrypted === true && options.verifiableCertificate(typeof socket.servername === 'string' ? socket.servername : undefined)
  }
  const reportedPlainHttp = (req: IncomingMessage): boolean => {
    const trusted = options.trustedProxies
    if (trusted === undefined || (req.socket as TLSSocket).encrypted === true) return false
    return forwardedProto(req.headers) === 'http' && trusted.isTrusted(plainIp(req.socket.remoteAddress ?? ''))
  }
  return (req, res) => {
    // Registry answers are JSON or blobs: a browser must never sniff them into HTML or script.
    res.setHeader('X-Content-Type-Options', 'nosniff')
    if (sendsHsts(req)) res.setHeader('Strict-Transport-Security', value)
  }
}
