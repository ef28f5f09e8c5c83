// The `tls.acme` config section: certificates from an ACME CA (Let's Encrypt by default).
import { z } from 'zod'
import { duration, flag, oneOf, section, strings, text } from '../../config/fields.js'

export const acmeSection = section({
  enabled: flag().default(false),
  /** An https URL, or the alias "letsencrypt" / "letsencrypt-staging". */
  directory_url: text({
    pattern: /^(?:letsencrypt|letsencrypt-staging|https:\/\/\S+)$/,
    expect: 'an https:// ACME directory URL, or "letsencrypt" / "letsencrypt-staging"',
  }).default('https://acme-v02.api.letsencrypt.org/directory'),
  email: text({ pattern: /^(?:[^@\s:,]+@[^@\s:,]+\.[^@\s:,]+)?$/, expect: 'an email address like "ops@example.com", or empty' }).default(''),
  domains: strings().default(() => []),
  challenge: oneOf(['http-01', 'tls-alpn-01']).default('http-01'),
  storage: text().default('certs/acme'),
  // Let's Encrypt certificates live 90 days (45 from 2026 on): longer than a timer can wait.
  renew_before: duration(365 * 86_400_000).default(30 * 86_400_000),
  ca_bundle: text().default(''),
  eab: section({ kid: text().default(''), hmac_key: text().default('') }).prefault({}),
  self_check: flag().default(true),
  retry_min: duration().default(60_000),
  retry_max: duration().default(6 * 3_600_000),
}).prefault({})

export type AcmeConfig = z.output<typeof acmeSection>
