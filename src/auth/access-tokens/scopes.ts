// An access token's scopes: `repository:team/*:pull,push` (a repository glob) or `registry:catalog:*`, parsed and checked at creation.
import type { Action, Scope } from '../../registry/classify.js'
import { globProblem } from '../../lib/glob.js'

const ACTIONS: readonly Action[] = ['pull', 'push', 'delete', '*']

/** One scope of a token, or what is wrong with it. Repository names are globs (the ACL's dialect). */
export function parseTokenScope(text: string): Scope | { problem: string } {
  const first = text.indexOf(':')
  const last = text.lastIndexOf(':')
  if (first <= 0 || last === first) return { problem: `${JSON.stringify(text)}: expected TYPE:NAME:ACTIONS, e.g. repository:team/*:pull,push` }
  const type = text.slice(0, first)
  const name = text.slice(first + 1, last)
  const actions = text.slice(last + 1).split(',').filter((action) => action !== '')
  if (type !== 'repository' && type !== 'registry') return { problem: `${JSON.stringify(text)}: the type must be repository or registry` }
  if (type === 'registry' && name !== 'catalog') return { problem: `${JSON.stringify(text)}: the only registry scope is registry:catalog:*` }
  if (type === 'repository') {
    const reason = globProblem(name)
    if (reason) return { problem: `${JSON.stringify(text)}: the name must be a repository glob (${reason})` }
  }
  const unknown = actions.filter((action) => !(ACTIONS as readonly string[]).includes(action))
  if (actions.length === 0 || unknown.length > 0) return { problem: `${JSON.stringify(text)}: actions are pull, push, delete or * (comma-separated)` }
  return { type, name, actions: [...new Set(actions as Action[])] }
}

/** Scopes from several values, each one or more space-separated scopes; the first problem is thrown as a RangeError. */
export function parseTokenScopes(values: readonly string[]): Scope[] {
  const scopes: Scope[] = []
  for (const value of values) {
    for (const part of value.split(/\s+/)) {
      if (part === '') continue
      const parsed = parseTokenScope(part)
      if ('problem' in parsed) throw new RangeError(parsed.problem)
      scopes.push(parsed)
    }
  }
  if (scopes.length === 0) throw new RangeError('a token needs at least one scope, e.g. repository:team/*:pull')
  if (scopes.length > 50) throw new RangeError('a token has at most 50 scopes')
  return scopes
}

export function formatTokenScope(scope: Scope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`
}
