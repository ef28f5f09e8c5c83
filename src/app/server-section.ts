// The `server` config section: listeners, the public origin, trusted proxies, accepted hosts and HSTS.
import { isIP } from 'node:net'
import { z } from 'zod'
import { isRecord } from '../lib/is-record.js'
import type { KeyProblem } from '../config/fields.js'
import { duration, section, strings, text, whole } from '../config/fields.js'
import { hstsSection } from '../pipeline/section.js'
import { cidrs, hostPortExpect, listenAddress } from '../net/fields.js'

const hostName = /^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/

export const serverSection = section({
  listen: listenAddress().default('0.0.0.0:5443'),
  public_url: text({
    pattern: /^(?:https?:\/\/[^/?#\s]+\/?)?$/,
    expect: 'an origin like "https://registry.example.com" (no path), or empty to use the Host header',
  })
    // One spelling of the origin: without the trailing slash.
    .transform((url) => (url.endsWith('/') ? url.slice(0, -1) : url))
    .default(''),
  http_redirect_listen: listenAddress({ orEmpty: true, expect: `empty, or ${hostPortExpect}` }).default(''),
  trusted_proxies: cidrs().default(() => []),
  drain_timeout: duration().default(30_000),
  /** Client connections on the main listener before new ones get 503 and are closed (0 = no cap). */
  max_connections: whole({ min: 0 }).default(1024),
  /** Host names (or "*.example.com") accepted in the Host header besides the certificates' names. */
  hosts: strings((entry) =>
    hostName.test(entry) || isIP(entry) !== 0 ? undefined : 'a host name like "registry.example.com", "*.example.com" or an IP address (no scheme, port or path)',
  ).default(() => []),
  hsts: hstsSection,
  /**
   * Worker processes serving the listeners (node:cluster, one shared socket). 1: this process alone, as
   * before. More: a primary process supervises them, holds the state they share and runs the embedded registry.
   */
  workers: whole({ min: 1, max: 64 }).default(1),
})
  .superRefine((server, context) => {
    // Port 0 means "any free port": two of those never collide.
    if (server.http_redirect_listen !== '' && server.http_redirect_listen === server.listen && !server.listen.endsWith(':0')) {
      context.addIssue({ code: 'custom', path: ['http_redirect_listen'], input: server.http_redirect_listen, message: 'an address other than server.listen' })
    }
  })
  .prefault({})

export type ServerConfig = z.output<typeof serverSection>

/**
 * What server.workers > 1 cannot run yet: listeners on port 0, pull-through caches (each worker would start its own registry on
 * the same data) and webhooks on SQLite (its events queue is delivered by the one process that owns the file).
 */
export function workersProblems(server: unknown, admin: unknown, caches: unknown, events: unknown, store: unknown): KeyProblem[] {
  const workers = isRecord(server) ? server.workers : undefined
  if (typeof workers !== 'number' || workers <= 1) return []
  const problems: KeyProblem[] = []
  // node:cluster shares a listening socket by address and port: two listeners on port 0 would be one.
  const listeners: Array<[string, unknown]> = [['server.listen', isRecord(server) ? server.listen : undefined], ['server.http_redirect_listen', isRecord(server) ? server.http_redirect_listen : undefined], ['admin.listen', isRecord(admin) ? admin.listen : undefined]]
  for (const [key, address] of listeners) {
    if (typeof address === 'string' && /:0$/.test(address)) problems.push({ key, expected: 'a fixed port with server.workers > 1 (the workers share each listener by its address and port; port 0 is not one)', found: JSON.stringify(address) })
  }
  if (Array.isArray(caches) && caches.length > 0) {
    problems.push({ key: 'caches', expected: 'no pull-through caches with server.workers > 1 (each worker would start its own registry on the same data); set server.workers: 1 to use them', found: `${caches.length} cache(s) with server.workers: ${workers}` })
  }
  const endpoints = isRecord(events) && Array.isArray(events.endpoints) ? events.endpoints : []
  const postgres = isRecord(store) && typeof store.url === 'string' && store.url !== ''
  if (endpoints.length > 0 && !postgres) {
    problems.push({ key: 'events.endpoints', expected: 'store.url (PostgreSQL) with server.workers > 1: on SQLite one process delivers the events queue; or server.workers: 1', found: `${endpoints.length} endpoint(s) with the SQLite store and server.workers: ${workers}` })
  }
  return problems
}
