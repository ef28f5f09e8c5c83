// Loads YAML config, applies PORTIER_* environment overrides and validates against the schema.
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import yaml from 'js-yaml'
import { parseCidr } from '../net/addresses.js'
import { aclProblems } from '../auth/acl.js'
import { acmeProblems } from '../tls/acme/config.js'
import { routingProblems } from '../routing/config.js'
import { type Config, type Field, type Section, schema } from './schema.js'
import { parseDuration, parseSize } from './units.js'

export interface ConfigProblem {
  /** Where the value came from: a file path, "environment PORTIER_X" or "defaults". */
  source: string
  key: string
  expected: string
  found: string
}

export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'))
    this.problems = problems
  }
}

export function formatProblem(problem: ConfigProblem): string {
  return `${problem.source}: ${problem.key}: expected ${problem.expected}, found ${problem.found}`
}

type Plain = string | number | boolean | null | undefined | Plain[] | { [key: string]: Plain }
type Tree = { [key: string]: Plain }

function describe(value: unknown): string {
  if (value === undefined) return 'nothing'
  if (value === null) return 'null'
  if (Array.isArray(value)) return `a list (${JSON.stringify(value).slice(0, 80)})`
  if (typeof value === 'object') return `a mapping (${JSON.stringify(value).slice(0, 80)})`
  return JSON.stringify(value)
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Environment variable name for a key path, as registry:2 does for REGISTRY_*. */
export function envName(path: string[]): string {
  return `PORTIER_${path.join('_').toUpperCase()}`
}

/** Every settable key path with its field: sections are walked, lists and scalars are leaves. */
export function leafPaths(section: Section = schema, prefix: string[] = []): Array<{ path: string[]; field: Field }> {
  const out: Array<{ path: string[]; field: Field }> = []
  for (const [name, field] of Object.entries(section.fields)) {
    const path = [...prefix, name]
    if (field.kind === 'section') out.push(...leafPaths(field, path))
    else out.push({ path, field })
  }
  return out
}

const MAX_TIMER_MS = 2 ** 31 - 1

/** Variables that configure the CLI itself rather than a config key. */
const reservedEnv = new Set(['PORTIER_CONFIG'])

function envValue(field: Field, text: string): Plain {
  if (field.kind === 'list' || field.kind === 'strings') {
    if (field.kind === 'strings' && !/^\s*\[/.test(text)) return text.split(',').map((s) => s.trim()).filter(Boolean)
    try {
      return yaml.load(text) as Plain
    } catch {
      return text
    }
  }
  if (field.kind === 'bool') {
    const lower = text.trim().toLowerCase()
    if (['true', '1', 'yes', 'on'].includes(lower)) return true
    if (['false', '0', 'no', 'off'].includes(lower)) return false
    return text
  }
  if (field.kind === 'int') return /^-?\d+$/.test(text.trim()) ? Number(text) : text
  return text
}

function setPath(tree: Tree, path: string[], value: Plain): void {
  let node: Tree = tree
  for (const part of path.slice(0, -1)) {
    const next = node[part]
    if (!isTree(next)) node[part] = {}
    node = node[part] as Tree
  }
  node[path[path.length - 1] as string] = value
}

interface Origin {
  file: string
  envKeys: Map<string, string>
}

function sourceOf(origin: Origin, key: string): string {
  for (const [prefix, variable] of origin.envKeys) {
    if (key === prefix || key.startsWith(`${prefix}.`) || key.startsWith(`${prefix}[`)) return `environment ${variable}`
  }
  return origin.file
}

function validateField(field: Field, value: unknown, key: string, origin: Origin, problems: ConfigProblem[]): unknown {
  const problem = (expected: string): undefined => {
    problems.push({ source: sourceOf(origin, key), key, expected, found: describe(value) })
    return undefined
  }
  if (value === undefined || value === null) {
    if (field.kind === 'section') return validateSection(field, {}, key, origin, problems)
    if (field.kind === 'list') return []
    if ('default' in field && field.default !== undefined) return field.default
    if (field.optional) return undefined
    return problem(`a value for this required key (${field.kind})`)
  }
  switch (field.kind) {
    case 'section':
      if (!isTree(value)) return problem('a mapping of keys')
      return validateSection(field, value, key, origin, problems)
    case 'list': {
      if (!Array.isArray(value)) return problem('a list')
      return value.map((item, index) => validateField(field.of, item, `${key}[${index}]`, origin, problems))
    }
    case 'strings':
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) return problem('a list of strings')
      return value
    case 'string': {
      if (typeof value !== 'string') return problem(field.expect ?? 'a string')
      if (field.oneOf && !field.oneOf.includes(value)) return problem(`one of ${field.oneOf.map((v) => JSON.stringify(v)).join(', ')}`)
      if (field.pattern && !field.pattern.test(value)) return problem(field.expect ?? `a string matching ${field.pattern}`)
      return value
    }
    case 'bool':
      if (typeof value !== 'boolean') return problem('true or false')
      return value
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value)) return problem('a whole number')
      if (field.min !== undefined && value < field.min) return problem(`a whole number ≥ ${field.min}`)
      if (field.max !== undefined && value > field.max) return problem(`a whole number ≤ ${field.max}`)
      return value
    case 'size': {
      const bytes = parseSize(value)
      if (bytes === undefined) return problem('a size like 4096, 512MiB or 10GB (0 means no limit)')
      return bytes
    }
    case 'duration': {
      const ms = parseDuration(value)
      if (ms === undefined) return problem('a duration like 30s, 5m, 250ms or 1h30m (a bare number is seconds)')
      // Node timers cannot wait longer: a larger value fires after 1 ms instead (TimeoutOverflowWarning).
      if (field.max !== undefined) {
        if (ms > field.max) return problem(`a duration of at most ${Math.floor(field.max / 86_400_000)}d`)
      } else if (ms > MAX_TIMER_MS) return problem('a duration of at most 24d (2147483647ms), the longest a timer can wait')
      return ms
    }
  }
}

function validateSection(section: Section, tree: Tree, prefix: string, origin: Origin, problems: ConfigProblem[]): Tree {
  const out: Tree = {}
  for (const name of Object.keys(tree)) {
    // Own keys only: `toString` or `constructor` are not configuration keys.
    if (!Object.hasOwn(section.fields, name)) {
      const key = prefix ? `${prefix}.${name}` : name
      problems.push({
        source: sourceOf(origin, key),
        key,
        expected: `one of the known keys${prefix ? ` of ${prefix}` : ''} (${Object.keys(section.fields).join(', ')})`,
        found: 'an unknown key',
      })
    }
  }
  for (const [name, field] of Object.entries(section.fields)) {
    const key = prefix ? `${prefix}.${name}` : name
    const value = validateField(field, tree[name], key, origin, problems)
    if (value !== undefined) out[name] = value as Plain
  }
  return out
}

export interface LoadOptions {
  /** YAML file; when absent only defaults and the environment apply. */
  file?: string
  env?: NodeJS.ProcessEnv
}

export interface LoadedConfig {
  config: Config
  /** Human description of where settings came from, for the start-up log. */
  sources: string[]
}

/** Loads and validates; throws ConfigError listing every problem found. */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env
  const problems: ConfigProblem[] = []
  const sources: string[] = []
  let tree: Tree = {}
  const fileLabel = options.file ?? 'defaults'

  if (options.file) {
    let text: string
    try {
      text = readFileSync(options.file, 'utf8')
    } catch (error) {
      throw new ConfigError([{ source: options.file, key: '(file)', expected: 'a readable YAML file', found: (error as NodeJS.ErrnoException).code ?? String(error) }])
    }
    let parsed: unknown
    try {
      parsed = yaml.load(text, { filename: options.file })
    } catch (error) {
      const message = error instanceof Error ? error.message.split('\n')[0] : String(error)
      throw new ConfigError([{ source: options.file, key: '(file)', expected: 'valid YAML', found: `a syntax error: ${message}` }])
    }
    if (parsed !== undefined && parsed !== null) {
      if (!isTree(parsed)) {
        throw new ConfigError([{ source: options.file, key: '(top level)', expected: 'a mapping of keys', found: describe(parsed) }])
      }
      tree = parsed
    }
    sources.push(options.file)
  }

  const origin: Origin = { file: fileLabel, envKeys: new Map() }
  const byEnvName = new Map(leafPaths().map((leaf) => [envName(leaf.path), leaf]))
  for (const [variable, text] of Object.entries(env)) {
    if (!variable.startsWith('PORTIER_') || reservedEnv.has(variable) || text === undefined) continue
    const leaf = byEnvName.get(variable)
    if (!leaf) {
      problems.push({ source: `environment ${variable}`, key: variable, expected: 'a PORTIER_* variable naming a known key (e.g. PORTIER_LIMITS_BLOB_MAX_BYTES)', found: 'an unknown variable' })
      continue
    }
    setPath(tree, leaf.path, envValue(leaf.field, text))
    origin.envKeys.set(leaf.path.join('.'), variable)
    sources.push(`environment ${variable}`)
  }

  const config = validateSection(schema, tree, '', origin, problems) as unknown as Config
  problems.push(...crossChecks(config, origin))
  if (problems.length > 0) throw new ConfigError(problems)
  return { config, sources }
}

/** Rules that span several keys. Runs on a partly invalid tree too, so it checks shapes before use. */
function crossChecks(config: Config, origin: Origin): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const token = config.auth?.token
  if (config.auth?.mode === 'token' && token?.external?.enabled) {
    const need = (key: string, ok: boolean, expected: string): void => {
      if (!ok) problems.push({ source: sourceOf(origin, key), key, expected, found: 'nothing' })
    }
    need('auth.token.external.issuer', Boolean(token.external.issuer), "the external token server's issuer (iss) name")
    need('auth.token.realm', Boolean(token.realm), 'the external token server URL clients are sent to')
    need('auth.token.external.rootcertbundle', Boolean(token.external.rootcertbundle || token.external.jwks), 'a PEM bundle of its certificates or public keys (or auth.token.external.jwks)')
  }
  const names = new Set<string>()
  const upstreams = Array.isArray(config.upstreams) ? config.upstreams : []
  upstreams.forEach((upstream, index) => {
    // An item or url already reported as invalid has nothing more to check.
    if (!isTree(upstream) || typeof upstream.url !== 'string') return
    let host: string
    try {
      host = new URL(upstream.url).host
    } catch {
      const key = `upstreams[${index}].url`
      problems.push({ source: sourceOf(origin, key), key, expected: 'a registry origin like "http://registry:5000"', found: JSON.stringify(upstream.url) })
      return
    }
    if (!upstream.name) upstream.name = host
    if (names.has(upstream.name)) {
      const key = `upstreams[${index}].name`
      problems.push({ source: sourceOf(origin, key), key, expected: 'a name no other upstream has', found: JSON.stringify(upstream.name) })
    }
    names.add(upstream.name)
  })
  const server = isTree(config.server) ? config.server : undefined
  if (typeof server?.public_url === 'string' && server.public_url.endsWith('/')) server.public_url = server.public_url.slice(0, -1)
  const problem = (key: string, expected: string, found: string): void => {
    problems.push({ source: sourceOf(origin, key), key, expected, found })
  }
  for (const name of ['listen', 'http_redirect_listen'] as const) {
    const address = server?.[name]
    const port = typeof address === 'string' ? /:(\d+)$/.exec(address)?.[1] : undefined
    if (port !== undefined && Number(port) > 65535) problem(`server.${name}`, 'a port from 0 to 65535', JSON.stringify(address))
  }
  if (typeof server?.http_redirect_listen === 'string' && server.http_redirect_listen !== '') {
    // Port 0 means "any free port": two of those never collide.
    if (server.http_redirect_listen === server.listen && !server.listen.endsWith(':0')) {
      problem('server.http_redirect_listen', 'an address other than server.listen', JSON.stringify(server.http_redirect_listen))
    }
    const tls = isTree(config.tls) ? config.tls : undefined
    if (tls?.enabled === false && !String(server.public_url ?? '').startsWith('https://')) {
      problem(
        'server.http_redirect_listen',
        'tls.enabled: true, or an https:// server.public_url (it redirects to HTTPS, which this gateway does not serve with TLS off)',
        JSON.stringify(server.http_redirect_listen),
      )
    }
  }
  const admin = isTree(config.admin) ? config.admin : undefined
  for (const [listKey, entries] of [
    ['server.trusted_proxies', server?.trusted_proxies],
    ['admin.allow', admin?.allow],
  ] as const) {
    for (const [index, entry] of (Array.isArray(entries) ? entries : []).entries()) {
      if (parseCidr(String(entry)) === undefined) {
        const key = `${listKey}[${index}]`
        problems.push({ source: sourceOf(origin, key), key, expected: 'an IP address or CIDR like 10.0.0.0/8', found: JSON.stringify(entry) })
      }
    }
  }
  for (const [index, entry] of (Array.isArray(server?.hosts) ? server.hosts : []).entries()) {
    if (!/^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(String(entry)) && isIP(String(entry)) === 0) {
      problem(`server.hosts[${index}]`, 'a host name like "registry.example.com", "*.example.com" or an IP address (no scheme, port or path)', JSON.stringify(entry))
    }
  }
  if (typeof admin?.listen === 'string' && admin.listen !== '' && admin.listen === server?.listen && !admin.listen.endsWith(':0')) {
    problem('admin.listen', 'an address other than server.listen (or admin.on_main_listener: true to serve the admin paths there)', JSON.stringify(admin.listen))
  }
  for (const found of acmeProblems(config.tls, server)) problem(found.key, found.expected, found.found)
  for (const found of routingProblems(config.upstreams, config.routing)) problem(found.key, found.expected, found.found)
  const auth = isTree(config.auth) ? config.auth : undefined
  for (const found of aclProblems(auth)) problem(found.key, found.expected, found.found)
  const throttle = isTree(auth?.throttle) ? auth.throttle : undefined
  if (typeof throttle?.max_failures === 'number' && throttle.max_failures > 0) {
    for (const name of ['window', 'lockout'] as const) {
      if (throttle[name] === 0) problem(`auth.throttle.${name}`, 'a duration above 0 (set auth.throttle.max_failures: 0 to turn throttling off)', '0')
    }
  }
  return problems
}
