// Which Host names the gateway may build URLs from (Location, token realm, redirects): the names its certificates cover or server.hosts, else a default name.
import { isIP } from 'node:net'
import { plainIp } from '../net/addresses.js'

/** Decides whether a well-formed Host may name this gateway, and what to use when it may not. */
export interface PublicHosts {
  /** `host` is "name" or "name:port" (IPv6 in brackets); `localAddress` is the address the connection arrived on. */
  accepts(host: string, localAddress?: string): boolean
  /** "name[:port]" for URLs when the client's Host is missing or not accepted. */
  fallback(): string
}

export interface PublicHostsOptions {
  /** server.hosts: names (or "*.example.com") accepted besides the certificates' names. */
  hosts: readonly string[]
  /** Whether a served certificate covers the name or address; undefined with TLS off. */
  covers?: (name: string) => boolean
  /** The default name when server.hosts is empty: e.g. the certificate's first name or the listen address. */
  defaultName: () => string
  /** The port clients reach the gateway on (the bound port, known once listening). */
  port: () => number
  /** Told once per distinct refused name (up to REPORTED_NAMES), so an operator sees which name to add. */
  onRefused?: (name: string, fallback: string) => void
}

/** Refused names reported at most once each, and no more than this many: a scanner cannot flood the log. */
const REPORTED_NAMES = 100

/** Names a gateway without TLS accepts: the loopback names a generated certificate would carry. */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1'])

/** The name part of a Host value, lower-cased, without brackets, port or a trailing dot. */
export function hostName(host: string): string {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '')
  return name.toLowerCase().replace(/\.$/, '')
}

function matchesConfigured(name: string, pattern: string): boolean {
  const wanted = pattern.toLowerCase()
  if (wanted.startsWith('*.')) {
    // Like a certificate wildcard: exactly one more label.
    const dot = name.indexOf('.')
    return dot > 0 && name.slice(dot + 1) === wanted.slice(2)
  }
  return name === wanted
}

export function createPublicHosts(options: PublicHostsOptions): PublicHosts {
  const covers = options.covers ?? ((name: string) => LOOPBACK.has(name))
  const reported = new Set<string>()
  const accepted = (name: string, localAddress: string | undefined): boolean => {
    if (name === '') return false
    if (options.hosts.some((pattern) => matchesConfigured(name, pattern))) return true
    // The very address the client connected to names this gateway, whatever the certificate says.
    if (isIP(name) !== 0 && localAddress !== undefined && plainIp(localAddress) === plainIp(name)) return true
    return covers(name)
  }
  const hosts: PublicHosts = {
    accepts(host, localAddress) {
      const name = hostName(host)
      if (accepted(name, localAddress)) return true
      if (options.onRefused && !reported.has(name) && reported.size < REPORTED_NAMES) {
        reported.add(name)
        options.onRefused(name, hosts.fallback())
      }
      return false
    },
    fallback() {
      const configured = options.hosts.find((pattern) => !pattern.startsWith('*.'))
      const name = configured ?? options.defaultName()
      const port = options.port()
      const shown = isIP(name) === 6 ? `[${name}]` : name
      return port === 443 || port === 0 ? shown : `${shown}:${port}`
    },
  }
  return hosts
}
