// Who signed in, read from the ID token's (or userinfo's) claims: the user name and the groups Portier's ACL knows.

const MAX_USER_LENGTH = 256
/** At most this many groups ride in the session cookie; only groups auth.groups declares are kept at all. */
export const MAX_SESSION_GROUPS = 64

export type Identity = { ok: true; user: string; groups: string[]; ignoredGroups: number } | { ok: false; problem: string }

/** A claim's value; a dotted name reaches into nested objects (e.g. "realm_access.roles") when no claim has the whole name. */
export function claimValue(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (name in claims) return claims[name]
  let value: unknown = claims
  for (const part of name.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
    value = (value as Record<string, unknown>)[part]
  }
  return value
}

/** Group names from a claim: a list of strings, or one string (some providers send a lone group so). */
function groupNames(value: unknown): string[] {
  if (typeof value === 'string') return [value]
  if (Array.isArray(value)) return value.filter((entry): entry is string => typeof entry === 'string')
  return []
}

/**
 * The user and groups of a sign-in. `declared` is the set of group names auth.groups defines: other
 * groups cannot match an ACL rule, so they are left out of the session.
 */
export function identityOf(
  claims: Readonly<Record<string, unknown>>,
  options: { usernameClaim: string; groupsClaim: string; declared: ReadonlySet<string> },
): Identity {
  const user = claimValue(claims, options.usernameClaim)
  if (typeof user !== 'string' || user.trim() === '') {
    return { ok: false, problem: `the provider sent no "${options.usernameClaim}" claim (ui.oidc.username_claim) in the ID token or userinfo` }
  }
  if (user.length > MAX_USER_LENGTH || [...user].some((char) => char < ' ' || char === '\u007f')) {
    return { ok: false, problem: `the "${options.usernameClaim}" claim is not a usable user name (control characters, or longer than ${MAX_USER_LENGTH})` }
  }
  const all = options.groupsClaim === '' ? [] : groupNames(claimValue(claims, options.groupsClaim))
  const kept = [...new Set(all.filter((group) => options.declared.has(group)))].slice(0, MAX_SESSION_GROUPS)
  return { ok: true, user, groups: kept, ignoredGroups: new Set(all).size - kept.length }
}
