// Which limits.rate rule counts a request, and the bucket it counts in: per user, or per client address for anonymous callers.
import { createHash } from 'node:crypto'
import type { Action, RegistryRequest } from '../registry/classify.js'
import { compileGlob, escapeRegExp } from '../lib/glob.js'
import { addressKey, createAddressList, type AddressList } from '../net/addresses.js'
import type { RateRule } from '../shared/index.js'
import type { RateLimitRule } from './section.js'

/** Who makes the request, as the limits see them. */
export interface RateCaller {
  /** The authenticated user (a token's subject, a robot's name); undefined for anonymous callers. */
  user: string | undefined
  /** Groups the credential's source vouches for (as the ACL reads them). */
  groups?: readonly string[]
  /** The client's address (after trusted proxies). */
  address: string
}

export interface CompiledRateRule {
  /** The name in the metric and the log: the configured one, else rate[index]. */
  name: string
  /** Where the rule is configured, for messages. */
  key: string
  requests: number
  perMs: number
  bucket: RateRule
  fits(request: RegistryRequest, caller: RateCaller): boolean
  /** The bucket of this caller under this rule: a hash, so user names and addresses never reach Redis as they are. */
  bucketOf(caller: RateCaller): { key: string; by: 'user' | 'address' }
}

/** The action a request stands for: the strongest of its repository scope (a push asks pull+push); undefined for /v2/ and the catalog. */
export function actionOf(request: RegistryRequest): Action | undefined {
  const scope = request.scopes.find((candidate) => candidate.type === 'repository' && candidate.name === request.repository)
  if (!scope) return undefined
  if (scope.actions.includes('delete')) return 'delete'
  if (scope.actions.includes('push')) return 'push'
  return 'pull'
}

function accountPattern(glob: string): RegExp {
  return new RegExp(`^${[...glob].map((char) => (char === '*' ? '.*' : char === '?' ? '.' : escapeRegExp(char))).join('')}$`)
}

/** `memberOf`: whether the user is in the group as the ACL sees it (groups a source vouches for come with the caller). */
export function compileRateRule(rule: RateLimitRule, index: number, memberOf: (group: string, user: string) => boolean): CompiledRateRule {
  const { account, group, name, ip } = rule.match
  const accounts = account === undefined || account === '' ? undefined : accountPattern(account)
  const repositories = name === undefined ? undefined : compileGlob(name)
  const addresses: AddressList | undefined = ip === undefined ? undefined : createAddressList([ip])
  const every = rule.actions.includes('*')
  const actions = new Set<Action>(rule.actions)
  const burst = rule.burst ?? rule.requests
  // Part of every bucket key: instances configured alike share buckets, a changed rule starts afresh.
  const identity = createHash('sha256').update(JSON.stringify([rule.match, rule.actions, rule.count, rule.requests, rule.per, burst])).digest('base64url').slice(0, 12)
  return {
    name: rule.name ?? `rate[${index}]`,
    key: `limits.rate[${index}]`,
    requests: rule.requests,
    perMs: rule.per,
    bucket: { intervalMs: rule.per / rule.requests, burst },
    fits(request, caller) {
      // As in auth.acl: account "" is for anonymous callers only, every other rule for authenticated ones.
      if (account === '' ? caller.user !== undefined : caller.user === undefined) return false
      const user = caller.user
      if (accounts && (user === undefined || !accounts.test(user))) return false
      if (group !== undefined && (user === undefined || !(memberOf(group, user) || caller.groups?.includes(group) === true))) return false
      if (addresses && !addresses.has(caller.address)) return false
      if (rule.count === 'manifests' && !request.op.startsWith('manifest.')) return false
      if (repositories && (request.repository === undefined || !repositories.test(request.repository))) return false
      if (every) return true
      const action = actionOf(request)
      return action !== undefined && actions.has(action)
    },
    bucketOf(caller) {
      const who = caller.user !== undefined ? `u:${caller.user}` : `a:${addressKey(caller.address)}`
      return { key: `rate:${identity}:${createHash('sha256').update(who).digest('base64url')}`, by: caller.user !== undefined ? 'user' : 'address' }
    },
  }
}
