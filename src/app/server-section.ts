// The `server` config section: listeners, the public origin, trusted proxies, accepted hosts and HSTS.
import { isIP } from 'node:net'
import { z } from 'zod'
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
})
  .superRefine((server, context) => {
    // Port 0 means "any free port": two of those never collide.
    if (server.http_redirect_listen !== '' && server.http_redirect_listen === server.listen && !server.listen.endsWith(':0')) {
      context.addIssue({ code: 'custom', path: ['http_redirect_listen'], input: server.http_redirect_listen, message: 'an address other than server.listen' })
    }
  })
  .prefault({})

export type ServerConfig = z.output<typeof serverSection>
