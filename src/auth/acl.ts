// docker_auth-style access rules: which actions a caller may take on a scope, first matching rule wins, default deny.
import { createAddressList, parseCidr, type AddressList } from '../net/addresses.js'
import type { AclAction, AclRule, AuthConfig } from './section.js'
import type { Action, Scope } from '../registry/classify.js'
import { compileGlob, escapeRegExp, globProblem, globSource } from '../lib/glob.js'
import { isRecord } from '../lib/is-record.js'
import { BoundedCache } from '../lib/bounded-cache.js'

/** Who asks. Anonymous callers (or an empty user) have no account and belong to no group. */
export interface Caller {
  user: string
  anonymous: boolean
  /**
   * Groups the credential's source vouches for (a directory's or an identity provider's groups), on top
   * of the members listed in auth.groups. A rule's `match.group` still names a group of auth.groups
   * (an entry with no members stands for a group that only a source fills).
   */
  groups?: readonly string[]
  /**
   * An access token's scopes (repository names are globs): at most these actions, whatever the rules
   * grant the account. Absent: no limit beyond the rules.
   */
  limit?: readonly Scope[]
  /** A robot account: granted exactly its `limit`; the rules are not consulted. */
  robot?: boolean
}

export type AllowResult = { ok: true } | { ok: false; missing: Scope[] }

export interface Acl {
  /** The requested actions of `scope` the caller may take (a requested `*` only when a rule grants `*`). */
  granted(who: Caller, scope: Scope, clientIp: string): Action[]
  /** Whether every requested action is granted; `missing` lists each short scope with only its missing actions. */
  allows(who: Caller, scopes: Scope[], clientIp: string): AllowResult
  /** Whether the caller may pull `repository`: the filter for catalog responses. */
  canPull(who: Caller, repository: string, clientIp: string): boolean
  /** Why the caller may (or may not) pull, push and delete `repository`: each action with the rules and grants that give it. */
  explain(who: Caller, repository: string, clientIp: string): Explanation[]
  /** Whether `user` is in `group` as the rules see it: through auth.groups, the credential's source (`vouched`) or the web UI's groups. */
  inGroup(group: string, user: string, vouched?: readonly string[]): boolean
}

/** The actions a store grant gives (no `*`: a grant never reaches the catalog or registry scopes). */
export type GrantAction = 'pull' | 'push' | 'delete'
export const grantActions: readonly GrantAction[] = ['pull', 'push', 'delete']

/** Groups and grants kept in the store (made in the web UI): they add to auth.acl, never take away. */
export interface GrantSet {
  groups: ReadonlyArray<{ name: string; members: readonly string[] }>
  grants: ReadonlyArray<{ id: number; kind: 'user' | 'group'; subject: string; repository: string; actions: readonly GrantAction[] }>
}

/** One action on a repository and what gives it: `via` names each rule or grant ("group ci, grant 3 (UI)"). */
export interface Explanation {
  action: GrantAction
  granted: boolean
  via: string[]
  /** When nothing gives it: why (the first matching rule does not list it, or no rule matches). */
  reason?: string
}

export interface AclOptions {
  /** The store's groups and grants as they are now (read on every check; a new object when they change). */
  grants?: () => GrantSet
}

/** A config problem in auth.acl or auth.groups, keyed by path like `auth.acl[2].match.ip`. */
export interface AclProblem {
  key: string
  expected: string
  found: string
}

export const aclActions: readonly AclAction[] = ['pull', 'push', 'delete', '*']
const PLACEHOLDER = '${account}'
const nameGlobExpect =
  'a repository glob: lowercase name characters (a-z 0-9 . _ - /) with * (within a path component), ' +
  '** (across components), ? (one character) and the ${account} placeholder'

/** Rules used when auth.acl is empty: today's behaviour, where whoever gets through authentication may do anything. */
export function defaultRules(mode: string): AclRule[] {
  // With auth.mode none nobody authenticates, so "authenticated" would be nobody: open access stays open.
  return mode === 'none' ? [{ match: { account: '' }, actions: ['*'] }] : [{ match: {}, actions: ['*'] }]
}

function accountGlobSource(glob: string): string {
  return [...glob].map((char) => (char === '*' ? '.*' : char === '?' ? '.' : escapeRegExp(char))).join('')
}

/** Why a repository glob is unusable, or undefined when it is fine. */
export function nameGlobProblem(glob: string): string | undefined {
  if (glob === '') return 'an empty glob'
  const rest = glob.split(PLACEHOLDER).join('')
  if (rest.includes('$')) return 'a placeholder other than ${account}'
  return rest === '' ? undefined : globProblem(rest)
}

/**
 * Everything wrong with auth.acl and auth.groups. Accepts a partly invalid tree (config loading
 * runs this after the schema pass), so it checks shapes before use.
 */
export function aclProblems(auth: unknown): AclProblem[] {
  const problems: AclProblem[] = []
  if (!isRecord(auth)) return problems
  const groupNames = new Set<string>()
  const groups = Array.isArray(auth.groups) ? auth.groups : []
  groups.forEach((group: unknown, index) => {
    if (!isRecord(group) || typeof group.name !== 'string') return
    const key = `auth.groups[${index}].name`
    if (group.name === '') problems.push({ key, expected: 'a group name', found: '""' })
    else if (groupNames.has(group.name)) problems.push({ key, expected: 'a name no other group has', found: JSON.stringify(group.name) })
    groupNames.add(group.name)
  })
  const rules = Array.isArray(auth.acl) ? auth.acl : []
  rules.forEach((rule: unknown, index) => {
    if (!isRecord(rule)) return
    const at = `auth.acl[${index}]`
    const match = isRecord(rule.match) ? rule.match : {}
    const { account, group, name, ip } = match
    if (typeof account === 'string' && account.includes('${')) {
      problems.push({ key: `${at}.match.account`, expected: 'an account name or glob (* and ?) without placeholders, or "" for anonymous callers', found: JSON.stringify(account) })
    }
    if (typeof group === 'string') {
      if (account === '') {
        problems.push({ key: `${at}.match.group`, expected: 'no group in a rule for anonymous callers (account ""): they belong to no group', found: JSON.stringify(group) })
      } else if (!groupNames.has(group)) {
        problems.push({ key: `${at}.match.group`, expected: `a group defined in auth.groups${groupNames.size > 0 ? ` (${[...groupNames].join(', ')})` : ' (none are)'}`, found: JSON.stringify(group) })
      }
    }
    if (typeof name === 'string') {
      const reason = nameGlobProblem(name)
      if (reason) problems.push({ key: `${at}.match.name`, expected: nameGlobExpect, found: `${JSON.stringify(name)} (${reason})` })
      else if (account === '' && name.includes(PLACEHOLDER)) {
        problems.push({ key: `${at}.match.name`, expected: 'no ${account} in a rule for anonymous callers (account ""): they have no account', found: JSON.stringify(name) })
      }
    }
    if (typeof ip === 'string' && !parseCidr(ip)) {
      problems.push({ key: `${at}.match.ip`, expected: 'an IP address or CIDR like 10.0.0.0/8 or fd00::/8', found: JSON.stringify(ip) })
    }
    const actions = Array.isArray(rule.actions) ? rule.actions : []
    actions.forEach((action: unknown, actionIndex) => {
      if (typeof action === 'string' && !(aclActions as readonly string[]).includes(action)) {
        problems.push({ key: `${at}.actions[${actionIndex}]`, expected: 'one of "pull", "push", "delete", "*"', found: JSON.stringify(action) })
      }
    })
  })
  return problems
}

type NameMatcher = (name: string, account: string | undefined) => boolean

const PER_RULE_ACCOUNT_CACHE = 256

function compileName(glob: string): NameMatcher {
  if (!glob.includes(PLACEHOLDER)) {
    const pattern = compileGlob(glob)
    return (name) => pattern.test(name)
  }
  const parts = glob.split(PLACEHOLDER).map((part, index) => globSource(part, index === 0))
  // One regex per account, built on first use: the account is spliced in escaped, so its own
  // * . ( or $ are literal characters, never glob or regex syntax.
  const byAccount = new BoundedCache<string, RegExp>({ max: PER_RULE_ACCOUNT_CACHE })
  return (name, account) => {
    if (account === undefined) return false
    let pattern = byAccount.get(account)
    if (!pattern) {
      pattern = new RegExp(`^${parts.join(escapeRegExp(account))}$`)
      byAccount.set(account, pattern)
    }
    return pattern.test(name)
  }
}

interface CompiledRule {
  /** undefined means every authenticated caller; '' means anonymous callers only; otherwise a glob on the account. */
  account: RegExp | '' | undefined
  group: string | undefined
  name: NameMatcher | undefined
  type: 'repository' | 'registry' | undefined
  ips: AddressList | undefined
  all: boolean
  actions: Set<AclAction>
}

function compileRule(rule: AclRule): CompiledRule {
  const { account, group, name, ip } = rule.match
  const ips = ip === undefined ? undefined : createAddressList([ip])
  return {
    account: account === undefined ? undefined : account === '' ? '' : new RegExp(`^${accountGlobSource(account)}$`),
    group,
    name: name === undefined ? undefined : compileName(name),
    // A name glob speaks of repositories, so a rule with a name and no type does not shadow the catalog.
    type: rule.match.type ?? (name !== undefined ? 'repository' : undefined),
    ips,
    all: rule.actions.includes('*'),
    actions: new Set(rule.actions),
  }
}

const limitGlobs = new BoundedCache<string, RegExp>({ max: 1024 })

/**
 * The actions of `actions` that a token's `limit` allows on `scope`: the actions of every limit entry
 * of the same type whose name glob matches (a `*` there allows any action; asking for `*` needs `*`).
 */
export function withinLimit(limit: readonly Scope[], scope: Scope, actions: readonly Action[]): Action[] {
  const allowed = new Set<Action>()
  for (const entry of limit) {
    if (entry.type !== scope.type) continue
    let pattern = limitGlobs.get(entry.name)
    if (!pattern) {
      pattern = compileGlob(entry.name)
      limitGlobs.set(entry.name, pattern)
    }
    if (pattern.test(scope.name)) for (const action of entry.actions) allowed.add(action)
  }
  return actions.filter((action) => allowed.has('*') || (action !== '*' && allowed.has(action)))
}

/** Provisions the ACL once: validates, compiles globs and CIDRs. Throws on problems (loadConfig reports them first). */
export function createAcl(config: Pick<AuthConfig, 'mode' | 'acl' | 'groups'>, options: AclOptions = {}): Acl {
  const problems = aclProblems(config)
  if (problems.length > 0) throw new Error(problems.map((p) => `${p.key}: expected ${p.expected}, found ${p.found}`).join('\n'))
  const configured = config.acl ?? []
  const rules = (configured.length > 0 ? configured : defaultRules(config.mode)).map(compileRule)
  const groupsOf = new Map<string, Set<string>>()
  for (const group of config.groups ?? []) {
    for (const member of group.members) {
      const set = groupsOf.get(member) ?? new Set<string>()
      set.add(group.name)
      groupsOf.set(member, set)
    }
  }

  const emptyGrants: CompiledGrants = { memberOf: new Map(), grants: [] }
  const compiledGrants = new WeakMap<GrantSet, CompiledGrants>()
  /** The store's grants, compiled once per set (the store hands out a new set when they change). */
  const storeGrants = (): CompiledGrants => {
    const set = options.grants?.()
    if (!set) return emptyGrants
    let compiled = compiledGrants.get(set)
    if (!compiled) {
      compiled = compileGrants(set)
      compiledGrants.set(set, compiled)
    }
    return compiled
  }

  /** Where the caller's membership of `group` comes from: auth.groups, the credential's source, the UI; undefined when not a member. */
  const membership = (group: string, account: string | undefined, vouched: readonly string[] | undefined, stored: CompiledGrants): string | undefined => {
    if (account === undefined) return undefined
    if (groupsOf.get(account)?.has(group) === true) return 'auth.groups'
    if (vouched?.includes(group) === true) return 'directory'
    if (stored.memberOf.get(account)?.has(group) === true) return 'UI'
    return undefined
  }
  const inGroup = (group: string, account: string | undefined, vouched: readonly string[] | undefined): boolean =>
    membership(group, account, vouched, storeGrants()) !== undefined

  const matches = (rule: CompiledRule, account: string | undefined, vouched: readonly string[] | undefined, scope: Scope, ip: string): boolean => {
    if (rule.account === '') {
      if (account !== undefined) return false
    } else {
      // Every rule not written for anonymous callers is for authenticated ones only.
      if (account === undefined) return false
      if (rule.account && !rule.account.test(account)) return false
    }
    if (rule.group !== undefined && !inGroup(rule.group, account, vouched)) return false
    if (rule.type !== undefined && rule.type !== scope.type) return false
    if (rule.name && !rule.name(scope.name, account)) return false
    if (rule.ips && !rule.ips.has(ip)) return false
    return true
  }

  const byRules = (who: Caller, scope: Scope, clientIp: string): Action[] => {
    const account = who.anonymous || who.user === '' ? undefined : who.user
    const rule = rules.find((candidate) => matches(candidate, account, who.groups, scope, clientIp))
    if (!rule) return []
    const requested = [...new Set(scope.actions)]
    return rule.all ? requested : requested.filter((action) => action !== '*' && rule.actions.has(action))
  }

  /** The grants that give `account` an action on `repository`, each with the group it came through (undefined: granted to the user). */
  const grantsFor = (account: string, vouched: readonly string[] | undefined, repository: string): Array<{ grant: CompiledGrant; group?: string }> => {
    const stored = storeGrants()
    const found: Array<{ grant: CompiledGrant; group?: string }> = []
    for (const grant of stored.grants) {
      if (!grant.name(repository, account)) continue
      if (grant.kind === 'user') {
        if (grant.subject === account) found.push({ grant })
      } else if (membership(grant.subject, account, vouched, stored) !== undefined) found.push({ grant, group: grant.subject })
    }
    return found
  }

  /** Store grants add to what the rules give (a union): they speak of repositories, and of signed-in users only. */
  const byGrants = (who: Caller, scope: Scope): Action[] => {
    if (scope.type !== 'repository' || who.anonymous || who.user === '') return []
    const requested = [...new Set(scope.actions)].filter((action): action is GrantAction => action !== '*')
    if (requested.length === 0) return []
    const given = new Set<GrantAction>()
    for (const { grant } of grantsFor(who.user, who.groups, scope.name)) for (const action of grant.actions) given.add(action)
    return requested.filter((action) => given.has(action))
  }

  const granted = (who: Caller, scope: Scope, clientIp: string): Action[] => {
    if (scope.type !== 'repository' && scope.type !== 'registry') return []
    if (who.robot) return who.limit ? withinLimit(who.limit, scope, [...new Set(scope.actions)]) : []
    const ruled = byRules(who, scope, clientIp)
    const extra = byGrants(who, scope).filter((action) => !ruled.includes(action))
    const actions = extra.length > 0 ? [...ruled, ...extra] : ruled
    return who.limit ? withinLimit(who.limit, scope, actions) : actions
  }

  const explain = (who: Caller, repository: string, clientIp: string): Explanation[] => {
    const account = who.anonymous || who.user === '' ? undefined : who.user
    const scope: Scope = { type: 'repository', name: repository, actions: [...grantActions] }
    const index = rules.findIndex((candidate) => matches(candidate, account, who.groups, scope, clientIp))
    const rule = rules[index]
    const stored = storeGrants()
    const found = account === undefined ? [] : grantsFor(account, who.groups, repository)
    return grantActions.map((action): Explanation => {
      const via: string[] = []
      if (rule && (rule.all || rule.actions.has(action))) via.push(ruleText(index, rule, configured.length === 0, account, who.groups, stored))
      for (const { grant, group } of found) {
        if (!grant.actions.includes(action)) continue
        via.push(group === undefined ? `user ${grant.subject}, grant ${grant.id} (UI)` : `group ${group}${groupSource(group, account, who.groups, stored)}, grant ${grant.id} (UI)`)
      }
      if (via.length > 0) return { action, granted: true, via }
      const reason = rule
        ? `${ruleName(index, configured.length === 0)} matches first and does not give ${action}, and no grant does`
        : 'no rule of auth.acl matches and no grant gives it'
      return { action, granted: false, via, reason }
    })
  }

  /** ", member through auth.groups" and the like, when the membership is not the UI's own (whose grant says UI already). */
  const groupSource = (group: string, account: string | undefined, vouched: readonly string[] | undefined, stored: CompiledGrants): string => {
    const source = membership(group, account, vouched, stored)
    return source === undefined || source === 'UI' ? '' : ` (member through ${source})`
  }
  const ruleName = (index: number, isDefault: boolean): string => (isDefault ? 'the default rule (auth.acl is empty)' : `rule ${index + 1} (auth.acl[${index}])`)
  const ruleText = (index: number, rule: CompiledRule, isDefault: boolean, account: string | undefined, vouched: readonly string[] | undefined, stored: CompiledGrants): string =>
    rule.group === undefined ? ruleName(index, isDefault) : `group ${rule.group}${groupSource(rule.group, account, vouched, stored)}, ${ruleName(index, isDefault)}`

  return {
    granted,
    inGroup: (group, user, vouched) => inGroup(group, user, vouched),
    allows(who, scopes, clientIp) {
      const missing: Scope[] = []
      for (const scope of scopes) {
        const allowed = new Set(granted(who, scope, clientIp))
        const short = [...new Set(scope.actions)].filter((action) => !allowed.has(action))
        if (short.length > 0) missing.push({ type: scope.type, name: scope.name, actions: short })
      }
      return missing.length === 0 ? { ok: true } : { ok: false, missing }
    },
    canPull(who, repository, clientIp) {
      return granted(who, { type: 'repository', name: repository, actions: ['pull'] }, clientIp).length > 0
    },
    explain,
  }
}

interface CompiledGrant {
  id: number
  kind: 'user' | 'group'
  subject: string
  name: NameMatcher
  actions: readonly GrantAction[]
}

interface CompiledGrants {
  /** member → the store's groups they are in. */
  memberOf: Map<string, Set<string>>
  grants: CompiledGrant[]
}

function compileGrants(set: GrantSet): CompiledGrants {
  const memberOf = new Map<string, Set<string>>()
  for (const group of set.groups) {
    for (const member of group.members) {
      const groups = memberOf.get(member) ?? new Set<string>()
      groups.add(group.name)
      memberOf.set(member, groups)
    }
  }
  const grants: CompiledGrant[] = []
  for (const grant of set.grants) {
    // A glob the store should never have taken grants nothing rather than failing every check.
    if (nameGlobProblem(grant.repository) !== undefined) continue
    grants.push({ id: grant.id, kind: grant.kind, subject: grant.subject, name: compileName(grant.repository), actions: grant.actions })
  }
  return { memberOf, grants }
}

/** A rule of auth.acl in words, for the read-only list in the web UI: its match keys and actions. */
export function describeRule(rule: AclRule): string {
  const { account, group, name, type, ip } = rule.match
  const parts: string[] = []
  if (account !== undefined) parts.push(account === '' ? 'anonymous callers' : `account ${account}`)
  if (group !== undefined) parts.push(`group ${group}`)
  if (name !== undefined) parts.push(`repositories ${name}`)
  if (type !== undefined) parts.push(`type ${type}`)
  if (ip !== undefined) parts.push(`from ${ip}`)
  return parts.length === 0 ? 'every signed-in caller' : parts.join(', ')
}
