// The `ui` config section: the web UI served on the gateway's own origin.
import { z } from 'zod'
import { duration, flag, section, strings, text } from '../config/fields.js'
import { oidcSection } from './oidc/section.js'

export const uiSection = section({
  enabled: flag().default(true),
  session_ttl: duration().default(12 * 3_600_000),
  session_secret: text({ pattern: /^(?:.{32,})?$/, expect: 'empty (use session_secret_file), or a random string of at least 32 characters' }).default(''),
  session_secret_file: text().default('data/ui/session-secret'),
  admin_users: strings().default(() => []),
  oidc: oidcSection,
}).prefault({})

export type UiConfig = z.output<typeof uiSection>
