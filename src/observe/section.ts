// The `log`, `admin` and `metrics` config sections: what Portier tells its operators, and where.
import { z } from 'zod'
import { flag, oneOf, section, text, whole } from '../config/fields.js'
import { cidrs, hostPortExpect, listenAddress } from '../net/fields.js'

export const logSection = section({
  level: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  format: oneOf(['json', 'pretty']).default('json'),
}).prefault({})

export const adminSection = section({
  listen: listenAddress({ orEmpty: true, expect: `empty (no admin listener), or ${hostPortExpect}` }).default('127.0.0.1:9113'),
  on_main_listener: flag().default(false),
  allow: cidrs().default(() => []),
  htpasswd: text().default(''),
}).prefault({})

export const metricsSection = section({
  enabled: flag().default(true),
  per_repository: flag().default(false),
  max_repositories: whole({ min: 1 }).default(100),
}).prefault({})

export type LogConfig = z.output<typeof logSection>
export type AdminConfig = z.output<typeof adminSection>
export type MetricsConfig = z.output<typeof metricsSection>
