// Token scopes as data: parsing `repository:name:pull,push`, intersecting and covering them, Bearer challenges and
// the Bearer header (no JWT library here: the gateway loads this module in every auth mode).
import type { Action, Scope } from '../../registry/classify.js'
import { isValidRepository } from '../../registry/names.js'

export type { Action, Scope } from '../../registry/classify.js'

const knownActions: ReadonlySet<string> = new Set<Action>(['pull', 'push', 'delete', '*'])

// A domain before the repository path, as in `localhost:5000/team/app` or `registry.example.com/app`.
const domainPattern = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$/

/** A repository name, optionally prefixed by a `host[:port]/` domain (which is why scopes are not split on every `:`). */
function isScopeRepositoryName(name: string): boolean {
  if (isValidRepository(name)) return true
  const slash = name.indexOf('/')
  if (slash <= 0) return false
  const domain = name.slice(0, slash)
  const looksLikeDomain = domain.includes('.') || domain.includes(':') || domain === 'localhost'
  return looksLikeDomain && domainPattern.test(domain) && isValidRepository(name.slice(slash + 1))
}

/** `repository(plugin)` is `repository`: the class in parentheses does not change what is granted. */
export function scopeType(text: string): Scope['type'] | undefined {
  const type = text.replace(/\([a-z0-9]+\)$/i, '')
  return type === 'repository' || type === 'registry' ? type : undefined
}

/** Known actions in their first order, without repeats; anything else is dropped. */
export function normalizeActions(actions: readonly string[]): Action[] {
  const result: Action[] = []
  for (const action of actions) {
    if (knownActions.has(action) && !result.includes(action as Action)) result.push(action as Action)
  }
  return result
}

/**
 * One scope (`type:name:actions`), or undefined when it grants nothing: an unknown type, an invalid
 * name, or no known action. The type ends at the first `:` and the actions start after the last one,
 * so names with `host:port` survive.
 */
export function parseScope(text: string): Scope | undefined {
  const first = text.indexOf(':')
  const last = text.lastIndexOf(':')
  if (first <= 0 || last === first) return undefined
  const type = scopeType(text.slice(0, first))
  const name = text.slice(first + 1, last)
  const actions = normalizeActions(text.slice(last + 1).split(','))
  if (type === undefined || actions.length === 0) return undefined
  if (type === 'repository' ? !isScopeRepositoryName(name) : !/^[a-z0-9_-]+$/.test(name)) return undefined
  return { type, name, actions }
}

/** Adds scopes into a list, merging the actions of entries with the same type and name. */
function mergeInto(list: Scope[], scope: Scope): void {
  const existing = list.find((entry) => entry.type === scope.type && entry.name === scope.name)
  if (existing) existing.actions = normalizeActions([...existing.actions, ...scope.actions])
  else list.push({ type: scope.type, name: scope.name, actions: [...scope.actions] })
}

/**
 * Scopes from one or more `scope` values (each may hold several, space-separated). Scopes that grant
 * nothing (unknown types such as `plugin:x:y`, invalid names, no known action) are dropped, not
 * errors: the caller still gets a token, with fewer actions. Repeated names are merged.
 */
export function parseScopes(text: string | readonly string[]): Scope[] {
  const values = typeof text === 'string' ? [text] : text
  const scopes: Scope[] = []
  for (const value of values) {
    for (const part of value.split(/\s+/)) {
      if (part === '') continue
      const scope = parseScope(part)
      if (scope) mergeInto(scopes, scope)
    }
  }
  return scopes
}

export function formatScope(scope: Scope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`
}

/** Whether granted actions allow `action`: `*` allows any action; asking for `*` needs `*`. */
function allows(granted: readonly Action[], action: Action): boolean {
  return granted.includes(action) || granted.includes('*')
}

function actionsFor(list: readonly Scope[], type: Scope['type'], name: string): Action[] {
  const actions: Action[] = []
  for (const entry of list) if (entry.type === type && entry.name === name) actions.push(...entry.actions)
  return actions
}

/**
 * What may be granted: each requested scope keeps only the actions `allowed` permits (an allowed `*`
 * keeps every requested action as asked). Scopes left without actions are dropped.
 */
export function intersectScopes(requested: readonly Scope[], allowed: readonly Scope[]): Scope[] {
  const result: Scope[] = []
  for (const scope of requested) {
    const permitted = actionsFor(allowed, scope.type, scope.name)
    const actions = scope.actions.filter((action) => allows(permitted, action))
    if (actions.length > 0) mergeInto(result, { type: scope.type, name: scope.name, actions })
  }
  return result
}

/**
 * The needed scopes that `access` does not fully cover, each as needed (so the list can go straight
 * into an `insufficient_scope` challenge and the client asks for all it needs). Empty when covered.
 */
export function covers(access: readonly Scope[], needed: readonly Scope[]): Scope[] {
  return needed.filter((scope) => {
    const granted = actionsFor(access, scope.type, scope.name)
    return !scope.actions.every((action) => allows(granted, action))
  })
}

export type ChallengeError = 'insufficient_scope' | 'invalid_token' | 'invalid_request'

function quoted(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`
}

/**
 * `Bearer realm="…",service="…",scope="repository:a/b:pull,push repository:c:pull"` (scopes
 * space-separated in one parameter, as registry:2 sends them), plus `error="…"` when given.
 */
export function challengeFor(scopes: readonly Scope[], realm: string, service: string, error?: ChallengeError): string {
  let challenge = `Bearer realm=${quoted(realm)},service=${quoted(service)}`
  if (scopes.length > 0) challenge += `,scope=${quoted(scopes.map(formatScope).join(' '))}`
  if (error !== undefined) challenge += `,error=${quoted(error)}`
  return challenge
}

/** `Authorization: Bearer <token>` → the token, else undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header ? /^Bearer\s+([A-Za-z0-9._~+/=-]+)\s*$/i.exec(header) : null
  return match ? match[1] : undefined
}
