// Portier's configuration: the sections registered by the modules that own them, the rules between sections, and the loader bound to both.
import { z } from 'zod'
import { section } from '../config/fields.js'
import { isRecord } from '../lib/is-record.js'
import { loadWith, type ConfigSpec, type CrossCheck, type Loaded, type LoadOptions } from '../config/load.js'
import { serverSection, workersProblems } from './server-section.js'
import { tlsSection } from '../tls/section.js'
import { acmeProblems } from '../tls/acme/config.js'
import { upstreamsSection, healthSection } from '../upstreams/section.js'
import { routingSection } from '../routing/section.js'
import { routingProblems } from '../routing/config.js'
import { embeddedRegistrySection } from '../embedded/section.js'
import { limitsFields, timeoutsSection } from '../pipeline/section.js'
import { rateLimitProblems, rateLimitsSection } from '../ratelimit/section.js'
import { authSection } from '../auth/section.js'
import { aclProblems } from '../auth/acl.js'
import { uiSection } from '../ui/section.js'
import { oidcProblems } from '../ui/oidc/section.js'
import { adminSection, logSection, metricsSection } from '../observe/section.js'
import { cacheSection } from '../forward/section.js'
import { eventsSection } from '../events/section.js'
import { cachesProblems, cachesSection } from '../cache/section.js'
import { maintenanceSection } from '../housekeeping/maintenance-section.js'
import { gcSection } from '../housekeeping/gc-section.js'
import { immutableTagsSection, retentionProblems, retentionSection } from '../housekeeping/retention-section.js'
import { auditSection, storeSection } from '../store/section.js'
import { sharedProblems, sharedSection } from '../shared/section.js'
import { accessTokensSection } from '../auth/access-tokens/section.js'

export const configSchema = section({
  server: serverSection,
  tls: tlsSection,
  upstreams: upstreamsSection,
  routing: routingSection,
  embedded_registry: embeddedRegistrySection,
  timeouts: timeoutsSection,
  // The size limits and fair share (pipeline) with the request rate limits (ratelimit) beside them.
  limits: section({ ...limitsFields, rate: rateLimitsSection }).prefault({}),
  auth: authSection,
  ui: uiSection,
  log: logSection,
  admin: adminSection,
  metrics: metricsSection,
  health: healthSection,
  cache: cacheSection,
  events: eventsSection,
  caches: cachesSection,
  maintenance: maintenanceSection,
  gc: gcSection,
  immutable_tags: immutableTagsSection,
  retention: retentionSection,
  store: storeSection,
  audit: auditSection,
  shared: sharedSection,
  access_tokens: accessTokensSection,
})

/** The validated configuration; durations are milliseconds and sizes bytes. */
export type Config = z.output<typeof configSchema>

function record(value: unknown): Readonly<Record<string, unknown>> | undefined {
  return isRecord(value) ? value : undefined
}

/** The redirect listener sends clients to HTTPS, which must be served here or in front. */
const redirectNeedsHttps: CrossCheck = ({ server, tls }) => {
  const listen = record(server)
  const redirect = listen?.http_redirect_listen
  if (typeof redirect !== 'string' || redirect === '' || record(tls)?.enabled !== false) return []
  if (String(listen?.public_url ?? '').startsWith('https://')) return []
  return [{
    key: 'server.http_redirect_listen',
    expected: 'tls.enabled: true, or an https:// server.public_url (it redirects to HTTPS, which this gateway does not serve with TLS off)',
    found: JSON.stringify(redirect),
  }]
}

/** Two listeners cannot share an address; port 0 means "any free port", so two of those never collide. */
const adminListenerApart: CrossCheck = ({ server, admin }) => {
  const address = record(admin)?.listen
  if (typeof address !== 'string' || address === '' || address !== record(server)?.listen || address.endsWith(':0')) return []
  return [{ key: 'admin.listen', expected: 'an address other than server.listen (or admin.on_main_listener: true to serve the admin paths there)', found: JSON.stringify(address) }]
}

export const configSpec: ConfigSpec<typeof configSchema> = {
  schema: configSchema,
  checks: [
    redirectNeedsHttps,
    adminListenerApart,
    ({ tls, server }) => acmeProblems(tls, server),
    ({ upstreams, routing }) => routingProblems(upstreams, routing),
    ({ auth }) => aclProblems(auth),
    ({ limits, auth }) => rateLimitProblems(limits, auth),
    ({ ui, auth }) => oidcProblems(ui, auth),
    ({ retention }) => retentionProblems(retention),
    ({ caches }) => cachesProblems(caches),
    ({ shared }) => sharedProblems(shared),
    ({ server, admin, caches, events, store }) => workersProblems(server, admin, caches, events, store),
  ],
}

export type LoadedConfig = Loaded<Config>

/** Loads and validates Portier's configuration; throws ConfigError listing every problem found. */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  return loadWith(configSpec, options)
}
