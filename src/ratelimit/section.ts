// The `limits.rate` config key: request rate limits per caller, written in the ACL's `match` dialect.
import { z } from 'zod'
import { duration, list, oneOf, section, text, whole, type KeyProblem } from '../config/fields.js'
import { repositoryGlobExpected, repositoryGlobPattern } from '../lib/glob.js'
import { parseDuration } from '../config/index.js'
import { isRecord } from '../lib/is-record.js'
import { parseCidr } from '../net/addresses.js'

const rateMatch = section({
  /** An account name or glob (* and ?); "" for anonymous callers; absent: every authenticated caller. */
  account: text().optional(),
  /** A group of auth.groups (or one a directory or identity provider vouches for). */
  group: text().optional(),
  /** A repository glob: only requests on matching repositories are counted. */
  name: text({ pattern: repositoryGlobPattern, expect: repositoryGlobExpected }).optional(),
  /** An IP address or CIDR the client's address lies in. */
  ip: text().optional(),
})

const rateRule = section({
  /** The rule's name in the metric and the log (default: its position, rate[0]). */
  name: text({ pattern: /^[a-z0-9][a-z0-9_.-]{0,39}$/, expect: 'up to 40 lowercase letters, digits and _ . - (a metric label)' }).optional(),
  match: rateMatch.prefault({}),
  /** Which requests count: those asking for one of these actions (GET/HEAD pull, POST/PUT/PATCH push, DELETE delete); * every request. */
  actions: list(oneOf(['pull', 'push', 'delete', '*'])).default(() => ['*' as const]),
  /** requests: every request counts; manifests: only manifest requests (one or two per image pulled, as Docker Hub counts pulls). */
  count: oneOf(['requests', 'manifests']).default('requests'),
  requests: whole({ min: 1 }),
  per: duration(),
  /** Requests let through at once; default: `requests`. */
  burst: whole({ min: 1 }).optional(),
  comment: text().optional(),
})

/** limits.rate: first rule that fits a request counts it, per caller (user, else client address). Empty: no rate limits. */
export const rateLimitsSection = list(rateRule).default(() => [])

export type RateLimitRule = z.output<typeof rateRule>
export type RateLimitsConfig = z.output<typeof rateLimitsSection>

const accountExpect = 'an account name or glob (* and ?) without placeholders, or "" for anonymous callers'

/**
 * What the schema cannot see in limits.rate: CIDRs, placeholders, groups auth.groups does not define,
 * a zero period. Accepts a partly invalid tree (it runs after the schema pass).
 */
export function rateLimitProblems(limits: unknown, auth: unknown): KeyProblem[] {
  const problems: KeyProblem[] = []
  const rules = isRecord(limits) && Array.isArray(limits.rate) ? limits.rate : []
  const groups = isRecord(auth) && Array.isArray(auth.groups) ? auth.groups : []
  const groupNames = new Set(groups.flatMap((group: unknown) => (isRecord(group) && typeof group.name === 'string' ? [group.name] : [])))
  const names = new Map<string, number>()
  rules.forEach((rule: unknown, index) => {
    if (!isRecord(rule)) return
    const at = `limits.rate[${index}]`
    const match = isRecord(rule.match) ? rule.match : {}
    const { account, group, ip } = match
    if (typeof account === 'string' && account.includes('${')) problems.push({ key: `${at}.match.account`, expected: accountExpect, found: JSON.stringify(account) })
    if (typeof group === 'string') {
      if (account === '') problems.push({ key: `${at}.match.group`, expected: 'no group in a rule for anonymous callers (account ""): they belong to no group', found: JSON.stringify(group) })
      else if (!groupNames.has(group)) problems.push({ key: `${at}.match.group`, expected: `a group defined in auth.groups${groupNames.size > 0 ? ` (${[...groupNames].join(', ')})` : ' (none are)'}`, found: JSON.stringify(group) })
    }
    if (typeof ip === 'string' && !parseCidr(ip)) problems.push({ key: `${at}.match.ip`, expected: 'an IP address or CIDR like 10.0.0.0/8 or fd00::/8', found: JSON.stringify(ip) })
    // Parsed (milliseconds) or as written: zero either way.
    if (parseDuration(rule.per) === 0) problems.push({ key: `${at}.per`, expected: 'a duration longer than zero like 1m or 10s', found: JSON.stringify(rule.per) })
    if (typeof rule.name === 'string') {
      const earlier = names.get(rule.name)
      if (earlier !== undefined) problems.push({ key: `${at}.name`, expected: `a name no other rule has (limits.rate[${earlier}] has it)`, found: JSON.stringify(rule.name) })
      else names.set(rule.name, index)
    }
  })
  return problems
}
