// LDAP search filters from the operator's templates: {user} and {dn} filled in escaped (RFC 4515), so a user name is only ever a value.
import { ldapts } from './ldapts.js'

/**
 * A value escaped for an RFC 4515 filter: the characters that would end the value or change its meaning
 * (`*` a wildcard, `(` `)` nesting, `\` an escape, NUL) become \XX hex escapes.
 */
export function escapeFilterValue(value: string): string {
  return value.replace(/[\\*()\0]/g, (char) => `\\${char.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

export type Placeholders = Partial<Record<'user' | 'dn', string>>

/** The template with each {user} and {dn} replaced by the escaped value; other text is kept as written. */
export function fillFilter(template: string, values: Placeholders): string {
  return template.replace(/\{(user|dn)\}/g, (whole, name: 'user' | 'dn') => {
    const value = values[name]
    return value === undefined ? whole : escapeFilterValue(value)
  })
}

/** Why a filter template is unusable (unbalanced parentheses, a bad item), or undefined when it parses. */
export function filterProblem(template: string): string | undefined {
  const trimmed = template.trim()
  if (!trimmed.startsWith('(') || !trimmed.endsWith(')')) return 'a filter in parentheses'
  // In a filter every ( and ) is structure (a value's own are \28 and \29); the parser forgives a missing last one.
  let depth = 0
  for (const char of trimmed) {
    depth += char === '(' ? 1 : char === ')' ? -1 : 0
    if (depth < 0) return 'balanced parentheses (a ")" closes nothing)'
  }
  if (depth !== 0) return `balanced parentheses (${depth} "(" not closed)`
  try {
    ldapts().FilterParser.parseString(fillFilter(trimmed, { user: 'user', dn: 'cn=user,dc=example,dc=org' }))
    return undefined
  } catch (error) {
    return error instanceof Error ? error.message : String(error)
  }
}
