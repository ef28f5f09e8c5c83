// The `ui.oidc` config section: single sign-on to the web UI through an OpenID provider (authorization code flow with PKCE).
import { z } from 'zod'
import { duration, flag, section, strings, text } from '../../config/fields.js'
import { isRecord } from '../../lib/is-record.js'

/** The path the browser starts a sign-in at; the callback (redirect_path) is configurable, this is not. */
export const OIDC_LOGIN_PATH = '/ui/oidc/login'

const CLAIM = /^[A-Za-z0-9_.:/-]{1,100}$/

export const oidcSection = section({
  enabled: flag().default(false),
  /** The provider's issuer URL; its discovery document is at <issuer>/.well-known/openid-configuration. */
  issuer: text({ pattern: /^(?:https:\/\/[^\s/?#]+[^\s?#]*)?$/, expect: 'the provider\'s issuer, an https:// URL like "https://id.example.com/realms/main"' }).default(''),
  client_id: text().default(''),
  /** A file holding the client secret; empty: a public client (PKCE only, no secret). */
  client_secret_file: text().default(''),
  redirect_path: text({
    pattern: /^\/ui\/(?!api\/)[A-Za-z0-9._~/-]+$/,
    expect: 'a path under /ui/ (not /ui/api/) like "/ui/oidc/callback"; register https://<host><path> as a redirect URI at the provider',
  }).default('/ui/oidc/callback'),
  scopes: strings((scope) => (/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope) ? undefined : 'a scope name without spaces or quotes')).default(() => ['openid', 'profile', 'email', 'groups']),
  username_claim: text({ pattern: CLAIM, expect: 'a claim name like "preferred_username", "email" or "sub"' }).default('preferred_username'),
  groups_claim: text({ pattern: CLAIM, expect: 'a claim name like "groups", or "" for none' }).or(z.literal('')).default('groups'),
  /** PEM certificates to trust for the provider besides the system's (a private CA). */
  ca_file: text().default(''),
  /** The web UI's password form beside the single sign-on button. */
  allow_password_login: flag().default(true),
  /** The button's text: "Sign in with <label>". */
  label: text({ pattern: /^.{1,60}$/, expect: 'a short name for the provider (1 to 60 characters)' }).default('single sign-on'),
  /** How long one call to the provider may take. */
  timeout: duration().default(10_000),
  /** How often to try the provider again while it cannot be reached. */
  retry_interval: duration().default(30_000),
}).superRefine((oidc, context) => {
  if (!oidc.enabled) return
  const missing = (key: string, expected: string): void => {
    context.addIssue({ code: 'custom', path: [key], input: undefined, message: expected })
  }
  if (!oidc.issuer) missing('issuer', 'the provider\'s issuer URL (https://…) with ui.oidc.enabled true')
  if (!oidc.client_id) missing('client_id', 'the client id Portier is registered with at the provider')
  if (!oidc.scopes.includes('openid')) context.addIssue({ code: 'custom', path: ['scopes'], input: oidc.scopes, message: 'a list of scopes that includes "openid"' })
  if (oidc.redirect_path === OIDC_LOGIN_PATH) context.addIssue({ code: 'custom', path: ['redirect_path'], input: oidc.redirect_path, message: `a path other than ${OIDC_LOGIN_PATH}, where sign-ins start` })
  if (oidc.timeout === 0) context.addIssue({ code: 'custom', path: ['timeout'], input: 0, message: 'a duration above 0' })
  if (oidc.retry_interval === 0) context.addIssue({ code: 'custom', path: ['retry_interval'], input: 0, message: 'a duration above 0' })
}).prefault({})

export type OidcConfig = z.output<typeof oidcSection>

/** Rules between ui.oidc and auth (config/load runs this with the other cross-section checks). */
export function oidcProblems(ui: unknown, auth: unknown): Array<{ key: string; expected: string; found: string }> {
  const oidc = isRecord(ui) && isRecord(ui.oidc) ? ui.oidc : undefined
  if (!oidc || oidc.enabled !== true) return []
  const mode = isRecord(auth) ? (auth.mode ?? 'htpasswd') : 'htpasswd'
  if (mode !== 'none') return []
  return [{ key: 'ui.oidc.enabled', expected: 'false with auth.mode none (nobody signs in when auth is off; set auth.mode: htpasswd or token)', found: 'true' }]
}

