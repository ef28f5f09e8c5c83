// The kinds of value a config key holds, as zod schemas whose errors say what was expected in an operator's words.
import { z } from 'zod'
import { parseDuration, parseSize } from './units.js'

/** Node timers cannot wait longer: a larger value fires after 1 ms instead (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1

/** The expectation for a key with no default and no value. */
function required(kind: string): string {
  return `a value for this required key (${kind})`
}

/** An error map: `expected` for a wrong value, the required-key message when there is none. */
function expecting(kind: string, expected: string): (issue: { input?: unknown }) => string {
  return (issue) => (issue.input === undefined ? required(kind) : expected)
}

/** A string, optionally matching `pattern`; `expect` describes the accepted form. */
export function text(options: { pattern?: RegExp; expect?: string } = {}) {
  const base = z.string({ error: expecting('string', options.expect ?? 'a string') })
  if (!options.pattern) return base
  return base.regex(options.pattern, { error: options.expect ?? `a string matching ${options.pattern}` })
}

/** One of a fixed set of strings; the inferred type is their union. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  const listed = `one of ${values.map((value) => JSON.stringify(value)).join(', ')}`
  return z.enum(values, {
    error: (issue) => (issue.input === undefined ? required('string') : typeof issue.input === 'string' ? listed : 'a string'),
  })
}

export function flag() {
  return z.boolean({ error: expecting('bool', 'true or false') })
}

/** A whole number within optional bounds. */
export function whole(bounds: { min?: number; max?: number } = {}) {
  let base = z.number({ error: expecting('int', 'a whole number') }).int({ error: 'a whole number' })
  if (bounds.min !== undefined) base = base.min(bounds.min, { error: `a whole number ≥ ${bounds.min}` })
  if (bounds.max !== undefined) base = base.max(bounds.max, { error: `a whole number ≤ ${bounds.max}` })
  return base
}

/** Bytes, written as 4096, "512MiB" or "10GB". */
export function size() {
  return z.unknown().transform((value, context): number => {
    const bytes = value === undefined ? undefined : parseSize(value)
    if (bytes !== undefined) return bytes
    context.issues.push({
      code: 'custom',
      input: value,
      message: value === undefined ? required('size') : 'a size like 4096, 512MiB or 10GB (0 means no limit)',
    })
    return z.NEVER
  })
}

/**
 * Milliseconds, written as "30s", "5m", "250ms" or "1h30m" (a bare number is seconds). At most what a timer
 * can wait, unless `max` says otherwise (a value never used as a timer may be longer).
 */
export function duration(max?: number) {
  return z.unknown().transform((value, context): number => {
    const ms = value === undefined ? undefined : parseDuration(value)
    let expected: string | undefined
    if (ms === undefined) expected = value === undefined ? required('duration') : 'a duration like 30s, 5m, 250ms or 1h30m (a bare number is seconds)'
    else if (max !== undefined) {
      if (ms > max) expected = `a duration of at most ${Math.floor(max / 86_400_000)}d`
    } else if (ms > MAX_TIMER_MS) expected = 'a duration of at most 24d (2147483647ms), the longest a timer can wait'
    if (expected === undefined && ms !== undefined) return ms
    context.issues.push({ code: 'custom', input: value, message: expected ?? required('duration') })
    return z.NEVER
  })
}

/**
 * A list of strings (in PORTIER_* variables: comma-separated). `each` returns what an entry should have
 * been when it is wrong; the problem is keyed by the entry's index.
 */
export function strings(each?: (entry: string) => string | undefined) {
  const list = z.custom<string[]>((value) => Array.isArray(value) && value.every((item) => typeof item === 'string'), {
    error: expecting('strings', 'a list of strings'),
  })
  if (!each) return list
  return list.superRefine((entries, context) => {
    entries.forEach((entry, index) => {
      const expected = each(entry)
      if (expected !== undefined) context.addIssue({ code: 'custom', path: [index], input: entry, message: expected })
    })
  })
}

/** A list of items (in PORTIER_* variables: YAML or JSON flow syntax). */
export function list<T extends z.ZodType>(item: T) {
  return z.array(item, { error: expecting('list', 'a list') })
}

/**
 * A mapping of known keys; any other key is a problem. The error for unknown keys carries the known ones,
 * which the loader words as "one of the known keys of <section> (...)".
 */
export function section<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape).join(', ')
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? known : issue.input === undefined ? required('section') : 'a mapping of keys'),
  })
}

/** A problem a rule spanning several keys found; `key` is its path like `upstreams[1].name`. */
export interface KeyProblem {
  key: string
  expected: string
  found: string
}
