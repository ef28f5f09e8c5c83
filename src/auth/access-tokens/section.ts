// The `access_tokens` config section: whether personal tokens and robot accounts are accepted, and their lifetimes.
import { z } from 'zod'
import { duration, flag, section } from '../../config/fields.js'

const TEN_YEARS_MS = 3650 * 86_400_000

export const accessTokensSection = section({
  /** Tokens are accepted as passwords (auth.mode htpasswd, and token with the built-in token server). */
  enabled: flag().default(true),
  /** The lifetime of a token created without one. */
  default_expiry: duration(TEN_YEARS_MS).default(90 * 86_400_000),
  /** The longest lifetime a token may be given; 0: no limit (tokens that never expire are allowed). */
  max_expiry: duration(TEN_YEARS_MS).default(365 * 86_400_000),
  /** How long a verified token is answered from memory; a revocation on this instance clears it at once. */
  cache_ttl: duration().default(30_000),
}).superRefine((tokens, context) => {
  if (tokens.max_expiry > 0 && tokens.default_expiry > tokens.max_expiry) {
    context.addIssue({ code: 'custom', path: ['default_expiry'], input: tokens.default_expiry, message: 'a duration no longer than access_tokens.max_expiry' })
  }
  if (tokens.default_expiry === 0 && tokens.max_expiry > 0) {
    context.addIssue({ code: 'custom', path: ['default_expiry'], input: 0, message: 'a duration above 0 (tokens that never expire need access_tokens.max_expiry: 0)' })
  }
}).prefault({})

export type AccessTokensConfig = z.output<typeof accessTokensSection>
