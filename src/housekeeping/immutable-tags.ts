// Immutable-tag rules (immutable_tags): which repository:tag pairs keep their digest once pushed and may not be deleted.
import { compileGlob } from '../lib/glob.js'
import type { ImmutableTagRule } from './retention-section.js'
import { compileTagPattern, matchesAny } from './tag-patterns.js'

/** The rule that makes a tag immutable, as error messages and logs name it. */
export interface MatchedRule {
  /** Its position in immutable_tags. */
  index: number
  repositories: string
  tags: readonly string[]
}

interface CompiledRule extends MatchedRule {
  repository: RegExp
  patterns: RegExp[]
}

export class ImmutableTags {
  private readonly rules: CompiledRule[]

  constructor(rules: readonly ImmutableTagRule[]) {
    this.rules = rules.map((rule, index) => ({
      index,
      repositories: rule.repositories,
      tags: rule.tags,
      repository: compileGlob(rule.repositories),
      patterns: rule.tags.map(compileTagPattern),
    }))
  }

  /** No rules: nothing to check, and the pipeline step is left out. */
  get empty(): boolean {
    return this.rules.length === 0
  }

  /** The first rule making `repository:tag` immutable, or undefined. */
  ruleFor(repository: string, tag: string): MatchedRule | undefined {
    const rule = this.rules.find((candidate) => candidate.repository.test(repository) && matchesAny(candidate.patterns, tag))
    return rule ? { index: rule.index, repositories: rule.repositories, tags: rule.tags } : undefined
  }

  isImmutable(repository: string, tag: string): boolean {
    return this.ruleFor(repository, tag) !== undefined
  }

  /** Whether any rule covers the repository (a delete by digest there needs its tags checked). */
  coversRepository(repository: string): boolean {
    return this.rules.some((rule) => rule.repository.test(repository))
  }
}

/** How a rule reads in messages: `immutable_tags[0] (prod/** v*)`. */
export function describeRule(rule: MatchedRule): string {
  return `immutable_tags[${rule.index}] (${rule.repositories} ${rule.tags.join(',')})`
}
