// Request rate limits (limits.rate): the limit stage counts each request in its caller's token bucket and answers 429 past the rate.
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import type { Logger } from '../observe/log.js'
import { BoundedCache } from '../lib/bounded-cache.js'
import type { Counters } from '../shared/index.js'
import { compileRateRule, type CompiledRateRule, type RateCaller } from './rules.js'
import type { RateLimitsConfig } from './section.js'

export { rateLimitsSection, rateLimitProblems, type RateLimitsConfig, type RateLimitRule } from './section.js'
export { actionOf, compileRateRule, type RateCaller } from './rules.js'

export interface RateLimitDeps {
  /** Where buckets live: the shared engine's counters (shared.redis), else this process's. */
  counters: Counters
  /** This process's counters: used while `counters` cannot be reached (fail open to per-instance limits). Same as `counters` without Redis. */
  fallback: Counters
  /** Whether `user` is in `group` (auth.groups, the web UI's groups; those the credential's source vouches for come with the caller). */
  memberOf: (group: string, user: string) => boolean
  log: Logger
  /** A request refused: the metric. */
  onLimited?: (rule: string, by: 'user' | 'address') => void
  /** Milliseconds since the epoch; tests pass their own clock. */
  now?: () => number
}

export interface RateLimiter {
  /** Counts the request in the bucket of the first rule that fits it; throws 429 TOOMANYREQUESTS with Retry-After when that bucket is empty. */
  admit(request: RegistryRequest, caller: RateCaller): Promise<void>
  /** For /readyz: the rules, and where they are counted now. */
  status(): RateLimitStatus
}

export interface RateLimitStatus {
  rules: number
  /** shared: in the shared engine; here: by this instance alone (no shared engine, or it is unreachable now). */
  counted: 'shared' | 'here'
  reason?: string
}

/** Refusals logged: one line per bucket per rule period, not one per request. */
const LOGGED_BUCKETS = 10_000

/** Undefined when limits.rate is empty: the stage is skipped and nothing changes. */
export function createRateLimiter(config: RateLimitsConfig, deps: RateLimitDeps): RateLimiter | undefined {
  if (config.length === 0) return undefined
  const rules: CompiledRateRule[] = config.map((rule, index) => compileRateRule(rule, index, deps.memberOf))
  const now = deps.now ?? Date.now
  const shared = deps.counters !== deps.fallback
  const logged = new BoundedCache<string, number>({ max: LOGGED_BUCKETS })
  let unreachable: string | undefined

  const take = async (key: string, rule: CompiledRateRule): Promise<number> => {
    if (!shared) return deps.fallback.take(key, rule.bucket)
    try {
      const wait = await deps.counters.take(key, rule.bucket)
      if (unreachable !== undefined) {
        unreachable = undefined
        deps.log.info('rate limits: the shared counters are reachable again; limits hold across instances')
      }
      return wait
    } catch (error) {
      // Fail open to this instance's own buckets: a Redis outage never refuses requests, each instance limits alone.
      if (unreachable === undefined) {
        unreachable = error instanceof Error ? error.message || error.name : String(error)
        deps.log.warn({ err: unreachable }, 'rate limits: the shared counters are unreachable; each instance counts alone until they are back')
      }
      return deps.fallback.take(key, rule.bucket)
    }
  }

  return {
    async admit(request, caller) {
      const rule = rules.find((candidate) => candidate.fits(request, caller))
      if (!rule) return
      const bucket = rule.bucketOf(caller)
      const waitMs = await take(bucket.key, rule)
      if (waitMs <= 0) return
      deps.onLimited?.(rule.name, bucket.by)
      const retryAfter = Math.max(1, Math.ceil(waitMs / 1000))
      const who = caller.user !== undefined ? `user ${caller.user}` : `address ${caller.address}`
      const at = now()
      if ((logged.get(bucket.key) ?? 0) <= at) {
        logged.set(bucket.key, at + rule.perMs)
        deps.log.warn(
          { rule: rule.name, user: caller.user, client: caller.address, op: request.op, repository: request.repository, requests: rule.requests, per_ms: rule.perMs, retry_after: retryAfter },
          `rate limit reached (${rule.key}): further requests of this caller are refused with 429 until it has slowed down; logged once per period`,
        )
      }
      throw new RegistryError(
        'TOOMANYREQUESTS',
        { limit: 'rate', rule: rule.name, requests: rule.requests, per_seconds: rule.perMs / 1000, retry_after_seconds: retryAfter },
        { 'Retry-After': String(retryAfter) },
        `${who} is over ${rule.requests} requests per ${formatPeriod(rule.perMs)} (${rule.key}); retry in ${retryAfter}s`,
      )
    },
    status() {
      return { rules: rules.length, counted: shared && unreachable === undefined ? 'shared' : 'here', ...(unreachable !== undefined ? { reason: `shared counters unreachable (${unreachable}): each instance counts alone` } : {}) }
    },
  }
}

function formatPeriod(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}
