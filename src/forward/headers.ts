// Header rules at the gateway boundary: hop-by-hop removal, forwarded headers, and Location rewriting.
import { isIPv6 } from 'node:net'
import { createAddressList, plainIp } from '../net/addresses.js'
import type { IncomingHttpHeaders } from 'node:http'
import { SESSION_COOKIE } from '../ui/session.js'
import type { PublicHosts } from '../pipeline/public-hosts.js'

const hopByHop = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade',
])

/** Headers the gateway sets itself toward the upstream, never copied from the client. */
const replacedUpstream = new Set([
  'host', 'expect', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip',
])

export type HeaderValue = string | string[]
export type Headers = Record<string, HeaderValue>

function connectionTokens(headers: IncomingHttpHeaders | Record<string, HeaderValue | undefined>): Set<string> {
  const value = headers.connection
  const text = Array.isArray(value) ? value.join(',') : value ?? ''
  return new Set(text.split(',').map((token) => token.trim().toLowerCase()).filter(Boolean))
}

export interface TrustedProxies {
  isTrusted(ip: string): boolean
}

export function createTrustedProxies(entries: string[]): TrustedProxies {
  const list = createAddressList(entries)
  return { isTrusted: (ip) => list.has(ip) }
}

/** Who the client is and which public origin it used, after trusted-proxy resolution. */
export interface ClientView {
  peer: string
  clientIp: string
  /** The X-Forwarded-For chain to send upstream. */
  forwardedFor: string
  proto: 'http' | 'https'
  host: string
  /** e.g. "https://registry.example.com:5443" */
  publicOrigin: string
  /** The client's own RFC 7239 Forwarded header, kept when the peer is trusted. */
  priorForwarded?: string
}

function firstValue(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value[0] : value
  return text?.split(',')[0]?.trim() || undefined
}

/** The scheme a proxy says the client used (first X-Forwarded-Proto value); believe it only from a trusted peer. */
export function forwardedProto(headers: IncomingHttpHeaders): 'http' | 'https' | undefined {
  const proto = firstValue(headers['x-forwarded-proto'])?.toLowerCase()
  return proto === 'http' || proto === 'https' ? proto : undefined
}

const hostPattern = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/

/** A bare name or address with an optional port: nothing that could add a path, user info or another URL part. */
function wellFormedHost(value: string | undefined): value is string {
  if (value === undefined || value.length > 261) return false
  const match = hostPattern.exec(value)
  if (match === null) return false
  // Brackets hold an IPv6 address and nothing else ("[127.0.0.1]" names the same host as 127.0.0.1), and a
  // port stops at 65535: either would make a URL nothing can parse (new URL throws a TypeError).
  if (value.startsWith('[') && !isIPv6(value.slice(1, value.indexOf(']')))) return false
  return match[1] === undefined || Number(match[1]) <= 65535
}

/**
 * The host[:port] to put in URLs for a client that sent `given` as its Host: the value itself only when
 * it is a bare name or address with an optional port and names this gateway (see PublicHosts), else
 * the default name. A Host is the client's word, so it never reaches a URL unchecked.
 */
export function publicHost(given: string | undefined, hosts: PublicHosts, localAddress?: string): string {
  return wellFormedHost(given) && hosts.accepts(given, localAddress) ? given : hosts.fallback()
}

export function describeClient(
  headers: IncomingHttpHeaders,
  peerAddress: string | undefined,
  encrypted: boolean,
  trusted: TrustedProxies,
  configuredPublicUrl: string,
  hosts: PublicHosts,
  localAddress?: string,
): ClientView {
  const peer = plainIp(peerAddress ?? '')
  const peerTrusted = trusted.isTrusted(peer)
  let proto: 'http' | 'https' = encrypted ? 'https' : 'http'
  // server.public_url names the gateway by itself: the client's Host is not checked (nor reported as refused).
  // Else a trusted proxy answers for the Host it passes on (nginx's `proxy_set_header Host $http_host`), as for X-Forwarded-Host.
  let host = configuredPublicUrl
    ? ''
    : peerTrusted && wellFormedHost(headers.host) ? headers.host : publicHost(headers.host, hosts, localAddress)
  let forwardedFor = peer
  let clientIp = peer
  let priorForwarded: string | undefined

  if (peerTrusted) {
    const xff = headers['x-forwarded-for']
    const chain = (Array.isArray(xff) ? xff.join(',') : xff ?? '').split(',').map((s) => s.trim()).filter(Boolean)
    if (chain.length > 0) {
      forwardedFor = `${chain.join(', ')}, ${peer}`
      // The client is the right-most address that is not one of our trusted proxies.
      clientIp = [...chain].reverse().find((ip) => !trusted.isTrusted(ip)) ?? (chain[0] as string)
    }
    proto = forwardedProto(headers) ?? proto
    // A trusted proxy answers for the public name it reports (it terminated the client's TLS under it).
    const forwardedHost = firstValue(headers['x-forwarded-host'])
    if (wellFormedHost(forwardedHost)) host = forwardedHost
    const forwarded = headers.forwarded
    if (forwarded) priorForwarded = Array.isArray(forwarded) ? forwarded.join(', ') : forwarded
  }

  let publicOrigin = `${proto}://${host}`
  if (configuredPublicUrl) {
    publicOrigin = configuredPublicUrl
    const url = parsedPublicUrl(configuredPublicUrl)
    proto = url.proto
    host = url.host
  }
  const view: ClientView = { peer, clientIp, forwardedFor, proto, host, publicOrigin }
  if (priorForwarded !== undefined) view.priorForwarded = priorForwarded
  return view
}

/** server.public_url parsed once (it is the same on every request), not with a new URL per request. */
let publicUrlParts: { text: string; proto: 'http' | 'https'; host: string } | undefined
function parsedPublicUrl(text: string): { proto: 'http' | 'https'; host: string } {
  if (publicUrlParts?.text !== text) {
    const url = new URL(text)
    publicUrlParts = { text, proto: url.protocol === 'http:' ? 'http' : 'https', host: url.host }
  }
  return publicUrlParts
}

function forwardedNode(ip: string): string {
  return isIPv6(ip) ? `"[${ip}]"` : ip
}

/** The client's Cookie header without Portier's own cookies (the web UI session is for the gateway, never the registry). */
function withoutGatewayCookies(cookie: HeaderValue | undefined): string | undefined {
  if (cookie === undefined) return undefined
  const kept = (Array.isArray(cookie) ? cookie.join('; ') : cookie)
    .split(';')
    .map((pair) => pair.trim())
    .filter((pair) => pair !== '' && pair.split('=')[0]?.trim() !== SESSION_COOKIE)
  return kept.length > 0 ? kept.join('; ') : undefined
}

/** Headers for the upstream request: the client's end-to-end headers plus the forwarded set. */
export function upstreamRequestHeaders(clientHeaders: IncomingHttpHeaders, client: ClientView, extra: Headers = {}): Headers {
  const drop = connectionTokens(clientHeaders)
  const out: Headers = {}
  for (const [name, value] of Object.entries(clientHeaders)) {
    if (value === undefined || hopByHop.has(name) || replacedUpstream.has(name) || drop.has(name)) continue
    out[name] = value
  }
  const cookie = withoutGatewayCookies(out.cookie)
  if (cookie === undefined) delete out.cookie
  else out.cookie = cookie
  // RFC 7239: each proxy appends the node it received the request from.
  const element = `for=${forwardedNode(client.peer)};host="${client.host}";proto=${client.proto}`
  out.forwarded = client.priorForwarded ? `${client.priorForwarded}, ${element}` : element
  out['x-forwarded-for'] = client.forwardedFor
  out['x-forwarded-proto'] = client.proto
  out['x-forwarded-host'] = client.host
  out['x-real-ip'] = client.clientIp
  return { ...out, ...extra }
}

/** Response headers for the client: upstream's end-to-end headers, with Location pointing at the gateway. */
export function clientResponseHeaders(
  upstreamHeaders: Record<string, string | string[] | undefined>,
  status: number,
  upstreamOrigin: string,
  client: ClientView,
): Headers {
  const drop = connectionTokens(upstreamHeaders)
  const out: Headers = {}
  for (const [name, value] of Object.entries(upstreamHeaders)) {
    if (value === undefined || hopByHop.has(name) || drop.has(name)) continue
    out[name] = value
  }
  const location = out.location
  if (typeof location === 'string') out.location = rewriteLocation(location, status, upstreamOrigin, client)
  return out
}

/**
 * Registry API Locations (uploads, finished blobs and manifests) always point back at the gateway,
 * whatever origin the upstream put in them. Redirects elsewhere (to object storage) pass unchanged.
 */
export function rewriteLocation(location: string, status: number, upstreamOrigin: string, client: ClientView): string {
  let url: URL
  try {
    url = new URL(location, `${upstreamOrigin}/`)
  } catch {
    return location
  }
  const isRedirect = status >= 300 && status < 400
  const pointsAtRegistry = url.origin === upstreamOrigin || url.origin === client.publicOrigin
  if (isRedirect && !pointsAtRegistry) return location
  if (!isRedirect && !url.pathname.startsWith('/v2/') && !pointsAtRegistry) return location
  return `${client.publicOrigin}${url.pathname}${url.search}`
}
