// The `timeouts` and `limits` config sections (how long and how much a request may take) and server.hsts.
import { z } from 'zod'
import { duration, flag, list, oneOf, section, size, text, whole } from '../config/fields.js'
import { repositoryGlobExpected, repositoryGlobPattern } from '../lib/glob.js'

export const timeoutsSection = section({
  upstream_connect: duration().default(10_000),
  upstream_headers: duration().default(60_000),
  body_idle: duration().default(300_000),
  /** Bytes per second a request or response body must move while the gateway waits on the client (0 = off). */
  min_rate: size().default(4096),
  min_rate_grace: duration().default(30_000),
  min_rate_window: duration().default(20_000),
}).prefault({})

const repositoryLimitRule = section({
  // A glob no name can match (capitals, ***) would silently limit nothing: refused at load.
  match: text({ pattern: repositoryGlobPattern, expect: repositoryGlobExpected }),
  blob_max_bytes: size().optional(),
  manifest_max_bytes: size().optional(),
})

/** The keys of `limits` this module owns; src/app/config.ts adds limits.rate (src/ratelimit) beside them. */
export const limitsFields = {
  blob_max_bytes: size().default(0),
  manifest_max_bytes: size().default(4 * 1024 * 1024),
  repositories: list(repositoryLimitRule).default(() => []),
  /** Upstream exchanges one authenticated user, and one client address, may have open at once (0 = no limit). */
  per_client: section({
    max_exchanges_per_user: whole({ min: 0 }).default(32),
    max_exchanges_per_address: whole({ min: 0 }).default(64),
  }).prefault({}),
}

export const limitsSection = section(limitsFields).prefault({})

/** server.hsts, Strict-Transport-Security: auto sends it when TLS is on with a certificate clients can verify. */
export const hstsSection = section({
  send: oneOf(['auto', 'always', 'never']).default('auto'),
  // Sent as seconds, never used as a timer: longer than a timer's 24 days is fine.
  max_age: duration(2 * 365 * 86_400_000).default(365 * 86_400_000),
  include_subdomains: flag().default(false),
}).prefault({})

export type HstsConfig = z.output<typeof hstsSection>
export type TimeoutsConfig = z.output<typeof timeoutsSection>
export type LimitsConfig = z.output<typeof limitsSection>
export type RepositoryLimitRule = z.output<typeof repositoryLimitRule>
