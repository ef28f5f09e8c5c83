// The retention policy engine: a pure function from tags (with push/pull times), rules and `now` to decisions with reasons; nothing here talks to a registry.
import { compileGlob } from '../lib/glob.js'
import type { RetentionRule } from './retention-section.js'
import { compileTagPattern } from './tag-patterns.js'

/** What retention knows of one tag. Times are epoch milliseconds; undefined when never seen. */
export interface TagState {
  tag: string
  /** The manifest digest the tag points to now. */
  digest: string
  /** When a push of this tag through Portier was last seen. */
  pushedAt?: number
  /** When a pull of this tag (a manifest GET by tag) was last seen. */
  pulledAt?: number
  /** When Portier first saw the tag (tags pushed before Portier was installed: the first scan). */
  firstSeenAt?: number
}

/** A manifest in the repository that no tag points to (only ones Portier knows of). */
export interface UntaggedManifest {
  digest: string
  pushedAt?: number
  /** Digests that must stay whatever the rules say: children of a tagged index, a referrer of a kept manifest. */
  referenced?: boolean
}

export interface RepositoryState {
  repository: string
  tags: TagState[]
  untagged?: UntaggedManifest[]
}

export type Verdict = 'keep' | 'delete'

export interface TagDecision {
  repository: string
  tag: string
  digest: string
  verdict: Verdict
  /** Why, in words: "kept: among the last 5 pushed", "deleted: pushed 40d ago (older than 30d), not pulled within 7d". */
  reason: string
  /** The push time the decision used (pushedAt, else firstSeenAt). */
  pushedAt?: number
  pulledAt?: number
}

export interface ManifestDecision {
  repository: string
  digest: string
  /** The tags that go with it (registry 2.8 deletes a manifest with every tag pointing to it). */
  tags: string[]
  reason: string
}

export interface RepositoryPlan {
  repository: string
  /** Index of the governing rule in retention.rules; undefined when no rule matches (nothing is touched). */
  rule?: number
  tags: TagDecision[]
  /** What would be deleted: one DELETE by digest each. */
  deletions: ManifestDecision[]
}

export interface RetentionInput {
  rules: readonly RetentionRule[]
  now: number
  /** Tags that immutable_tags protects: never deleted by retention. */
  isImmutable?: (repository: string, tag: string) => boolean
}

interface CompiledRule {
  index: number
  rule: RetentionRule
  repository: RegExp
  keepPatterns: Array<{ text: string; pattern: RegExp }>
}

const DAY = 86_400_000
const HOUR = 3_600_000
const MINUTE = 60_000

/** An age or duration the way reasons print it: 40d, 3h, 12m, 0m; days with one decimal below 10. */
export function formatAge(ms: number): string {
  if (ms >= DAY) {
    const days = ms / DAY
    if (days >= 10) return `${Math.floor(days)}d`
    // Below ten days a tenth matters (1.5d); a run a few seconds after a whole day still reads 2d.
    const tenths = Math.floor(days * 10) / 10
    return Number.isInteger(tenths) ? `${tenths}d` : `${tenths.toFixed(1)}d`
  }
  if (ms >= HOUR) return `${Math.floor(ms / HOUR)}h`
  return `${Math.floor(Math.max(0, ms) / MINUTE)}m`
}

/** The rules compiled once; `planFor` applies them to one repository at a time. */
export class RetentionPolicy {
  private readonly compiled: CompiledRule[]

  constructor(private readonly input: RetentionInput) {
    this.compiled = input.rules.map((rule, index) => ({
      index,
      rule,
      repository: compileGlob(rule.repositories),
      keepPatterns: rule.keep_tags.map((text) => ({ text, pattern: compileTagPattern(text) })),
    }))
  }

  /** The rule governing a repository: the first whose glob matches it. */
  ruleFor(repository: string): { index: number; rule: RetentionRule } | undefined {
    const found = this.compiled.find((candidate) => candidate.repository.test(repository))
    return found ? { index: found.index, rule: found.rule } : undefined
  }

  planFor(state: RepositoryState): RepositoryPlan {
    const { repository } = state
    const governing = this.compiled.find((candidate) => candidate.repository.test(repository))
    if (!governing) {
      return {
        repository,
        tags: state.tags.map((tag) => decision(repository, tag, 'keep', 'kept: no retention rule matches the repository')),
        deletions: [],
      }
    }
    const tags = this.decideTags(repository, state.tags, governing)
    const deletions = byDigest(repository, tags)
    if (governing.rule.delete_untagged) deletions.push(...this.untagged(repository, state, tags))
    return { repository, rule: governing.index, tags, deletions }
  }

  private decideTags(repository: string, tags: TagState[], governing: CompiledRule): TagDecision[] {
    const { rule, keepPatterns } = governing
    const now = this.input.now
    const governsTags = rule.keep_last > 0 || keepPatterns.length > 0 || rule.delete_older_than > 0 || rule.keep_pulled_within > 0
    // The most recently pushed first, equal times by name (the order never depends on the registry's listing); tags
    // without a known push time rank last, so they never take a place from a tag whose time is known (they are kept anyway).
    const ranked = [...tags].sort((a, b) => (pushTime(b) ?? -Infinity) - (pushTime(a) ?? -Infinity) || a.tag.localeCompare(b.tag))
    const rank = new Map(ranked.map((tag, index) => [tag.tag, index]))
    const decided = tags.map((tag): TagDecision => {
      const pushed = pushTime(tag)
      if (this.input.isImmutable?.(repository, tag.tag)) return decision(repository, tag, 'keep', 'kept: immutable tag (immutable_tags)')
      if (!governsTags) return decision(repository, tag, 'keep', `kept: rule ${governing.index} sets no tag conditions`)
      const keptBy = keepPatterns.find(({ pattern }) => pattern.test(tag.tag))
      if (keptBy) return decision(repository, tag, 'keep', `kept: matches keep_tags "${keptBy.text}"`)
      const position = rank.get(tag.tag) ?? Infinity
      if (position < rule.keep_last) return decision(repository, tag, 'keep', `kept: among the last ${rule.keep_last} pushed`)
      if (rule.keep_pulled_within > 0 && tag.pulledAt !== undefined && now - tag.pulledAt <= rule.keep_pulled_within) {
        return decision(repository, tag, 'keep', `kept: pulled ${formatAge(now - tag.pulledAt)} ago (within ${formatAge(rule.keep_pulled_within)})`)
      }
      if (pushed === undefined) return decision(repository, tag, 'keep', 'kept: push time unknown (not yet seen by Portier)')
      if (rule.delete_older_than > 0 && now - pushed <= rule.delete_older_than) {
        return decision(repository, tag, 'keep', `kept: pushed ${formatAge(now - pushed)} ago (not older than ${formatAge(rule.delete_older_than)})`)
      }
      const why: string[] = [rule.delete_older_than > 0 ? `pushed ${formatAge(now - pushed)} ago (older than ${formatAge(rule.delete_older_than)})` : `pushed ${formatAge(now - pushed)} ago`]
      if (rule.keep_pulled_within > 0) why.push(tag.pulledAt === undefined ? 'never pulled' : `not pulled within ${formatAge(rule.keep_pulled_within)}`)
      if (rule.keep_last > 0) why.push(`not among the last ${rule.keep_last} pushed`)
      if (keepPatterns.length > 0) why.push('matches no keep_tags')
      return decision(repository, tag, 'delete', `deleted: ${why.join(', ')}`)
    })
    // Registry 2.8 deletes a manifest with every tag pointing to it: a digest a kept tag points to stays, with all its tags.
    const keptDigests = new Map<string, string>()
    for (const entry of decided) if (entry.verdict === 'keep' && !keptDigests.has(entry.digest)) keptDigests.set(entry.digest, entry.tag)
    return decided.map((entry) => {
      const keeper = entry.verdict === 'delete' ? keptDigests.get(entry.digest) : undefined
      return keeper === undefined ? entry : { ...entry, verdict: 'keep', reason: `kept: its manifest is also tagged ${keeper}, which is kept (${entry.reason})` }
    })
  }

  private untagged(repository: string, state: RepositoryState, tags: TagDecision[]): ManifestDecision[] {
    const tagged = new Set(tags.map((tag) => tag.digest))
    return (state.untagged ?? [])
      .filter((manifest) => !manifest.referenced && !tagged.has(manifest.digest))
      .map((manifest) => ({ repository, digest: manifest.digest, tags: [], reason: 'deleted: untagged (delete_untagged)' }))
  }
}

/** The push time a tag is judged by: its last push through Portier, else when Portier first saw it. */
function pushTime(tag: TagState): number | undefined {
  return tag.pushedAt ?? tag.firstSeenAt
}

function decision(repository: string, tag: TagState, verdict: Verdict, reason: string): TagDecision {
  const pushed = pushTime(tag)
  return {
    repository, tag: tag.tag, digest: tag.digest, verdict, reason,
    ...(pushed !== undefined ? { pushedAt: pushed } : {}),
    ...(tag.pulledAt !== undefined ? { pulledAt: tag.pulledAt } : {}),
  }
}

/** One deletion per digest whose every tag goes; tags in the order listed. */
function byDigest(repository: string, tags: TagDecision[]): ManifestDecision[] {
  const groups = new Map<string, TagDecision[]>()
  for (const tag of tags) {
    if (tag.verdict !== 'delete') continue
    const group = groups.get(tag.digest) ?? []
    group.push(tag)
    groups.set(tag.digest, group)
  }
  return [...groups].map(([digest, group]) => ({
    repository, digest, tags: group.map((tag) => tag.tag),
    reason: group.length === 1 ? (group[0] as TagDecision).reason : `${group.map((tag) => tag.tag).join(', ')}: ${(group[0] as TagDecision).reason}`,
  }))
}
