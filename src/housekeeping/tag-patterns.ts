// Tag patterns for immutable tags and retention: * any run of tag characters, ? exactly one; everything else literal.
import { escapeRegExp } from '../lib/glob.js'

/** Characters a tag may hold (distribution: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}), plus the two wildcards. */
const usable = /^[A-Za-z0-9._\-*?]+$/

/** Why `pattern` cannot match tags, or undefined when it is fine (config schemas use it). */
export function tagPatternProblem(pattern: string): string | undefined {
  if (pattern === '') return 'a tag pattern (an empty one matches no tag)'
  if (!usable.test(pattern)) return 'a tag pattern: tag characters (A-Z a-z 0-9 . _ -) with * (any run) and ? (one character)'
  return undefined
}

/** A regular expression matching whole tags against `pattern` (tags have no slashes, so * matches any run). */
export function compileTagPattern(pattern: string): RegExp {
  let source = ''
  for (const char of pattern) {
    if (char === '*') source += '.*'
    else if (char === '?') source += '.'
    else source += escapeRegExp(char)
  }
  return new RegExp(`^${source}$`)
}

/** Whether `tag` matches any of the compiled patterns. */
export function matchesAny(patterns: readonly RegExp[], tag: string): boolean {
  return patterns.some((pattern) => pattern.test(tag))
}
