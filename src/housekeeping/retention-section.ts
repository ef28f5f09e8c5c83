// The `immutable_tags` and `retention` config sections: which tags may never move or go, and which tags retention deletes.
import { z } from 'zod'
import { duration, flag, list, section, strings, text, whole, type KeyProblem } from '../config/fields.js'
import { isRecord } from '../lib/is-record.js'
import { parseSchedule } from './gc-schedule.js'
import { repositoryGlobExpected, repositoryGlobPattern } from '../lib/glob.js'
import { tagPatternProblem } from './tag-patterns.js'

/** Retention ages are compared with dates, never waited for: up to ten years. */
const TEN_YEARS_MS = 10 * 365 * 86_400_000

const repositories = () => text({ pattern: repositoryGlobPattern, expect: repositoryGlobExpected })
const tagPatterns = () => strings(tagPatternProblem)

const immutableRule = section({
  repositories: repositories(),
  tags: tagPatterns(),
})

/** Rules for tags that, once pushed, keep their digest and cannot be deleted (release tags in regulated setups). */
export const immutableTagsSection = list(immutableRule).default(() => [])

const retentionRule = section({
  repositories: repositories(),
  /** Keep the N most recently pushed tags (0: this keep rule keeps nothing). */
  keep_last: whole({ min: 0 }).default(0),
  /** Keep tags matching any of these patterns. */
  keep_tags: tagPatterns().default(() => []),
  /** Only tags pushed longer ago than this may go (0: no age limit). */
  delete_older_than: duration(TEN_YEARS_MS).default(0),
  /** Keep tags pulled within this long (0: pulls keep nothing). */
  keep_pulled_within: duration(TEN_YEARS_MS).default(0),
  /** Also delete manifests no tag points to (registry 2.8: only those Portier has seen, see the README). */
  delete_untagged: flag().default(false),
})

export const retentionSection = section({
  /** When retention runs by itself, as gc.schedule: "" (only when asked, `portier retention`), an interval ("24h"), a daily UTC time ("03:30"). */
  schedule: text()
    .refine((value) => parseSchedule(value) !== undefined, {
      error: 'an interval like "24h" or "12h30m" (at least 10s), a daily UTC time like "03:30", or "" for no schedule',
    })
    .default(''),
  /** Each repository is governed by the first rule whose glob matches it; repositories no rule matches are left alone. */
  rules: list(retentionRule).default(() => []),
  /** Upper bound of tags looked at per repository in one run (bounds the registry calls). */
  max_tags_per_repository: whole({ min: 1 }).default(10_000),
}).prefault({})

export type ImmutableTagRule = z.output<typeof immutableRule>
export type RetentionRule = z.output<typeof retentionRule>
export type RetentionConfig = z.output<typeof retentionSection>

/**
 * A rule no repository can reach: each repository follows the first rule whose glob matches it, so a
 * rule after a catch-all ("**") or after one with the same glob never applies (and would silently keep
 * or delete nothing).
 */
export function retentionProblems(retention: unknown): KeyProblem[] {
  if (!isRecord(retention) || !Array.isArray(retention.rules)) return []
  const problems: KeyProblem[] = []
  const seen: string[] = []
  retention.rules.forEach((rule: unknown, index) => {
    const glob = isRecord(rule) && typeof rule.repositories === 'string' ? rule.repositories : undefined
    if (glob === undefined) return
    const earlier = seen.findIndex((before) => before === '**' || before === glob)
    if (earlier >= 0) {
      problems.push({
        key: `retention.rules[${index}].repositories`,
        expected: `a glob an earlier rule does not already cover (each repository follows the first matching rule; retention.rules[${earlier}] "${seen[earlier] as string}" matches every repository this one does): put the more specific rule first`,
        found: JSON.stringify(glob),
      })
    }
    seen.push(glob)
  })
  return problems
}
