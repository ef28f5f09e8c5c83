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
}

export type AllowResult = { ok: true } | { ok: false; missing: Scope[] }

export interface Acl {
  /** The requested actions of `scope` the caller may take (a requested `*` only when a rule grants `*`). */
  granted(who: Caller, scope: Scope, clientIp: string): Action[]
  /** Whether every requested action is granted; `missing` lists each short scope with only its missing actions. */
  allows(who: Caller, scopes: Scope[], clientIp: string): AllowResult
  /** Whether the caller may pull `repository`: the filter for catalog responses. */
  canPull(who: Caller, repository: string, clientIp: string): boolean
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
function nameGlobProblem(glob: string): string | undefined {
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

/** Provisions the ACL once: validates, compiles globs and CIDRs. Throws on problems (loadConfig reports them first). */
export function createAcl(config: Pick<AuthConfig, 'mode' | 'acl' | 'groups'>): Acl {
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

  const matches = (rule: CompiledRule, account: string | undefined, scope: Scope, ip: string): boolean => {
    if (rule.account === '') {
      if (account !== undefined) return false
    } else {
      // Every rule not written for anonymous callers is for authenticated ones only.
      if (account === undefined) return false
      if (rule.account && !rule.account.test(account)) return false
    }
    if (rule.group !== undefined && !(account !== undefined && groupsOf.get(account)?.has(rule.group))) return false
    if (rule.type !== undefined && rule.type !== scope.type) return false
    if (rule.name && !rule.name(scope.name, account)) return false
    if (rule.ips && !rule.ips.has(ip)) return false
    return true
  }

  const granted = (who: Caller, scope: Scope, clientIp: string): Action[] => {
    if (scope.type !== 'repository' && scope.type !== 'registry') return []
    const account = who.anonymous || who.user === '' ? undefined : who.user
    const rule = rules.find((candidate) => matches(candidate, account, scope, clientIp))
    if (!rule) return []
    const requested = [...new Set(scope.actions)]
    return rule.all ? requested : requested.filter((action) => action !== '*' && rule.actions.has(action))
  }

  return {
    granted,
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
  }
}
