// Loads YAML config, applies PORTIER_* environment overrides and validates against the sections the application registered.
import { readFileSync } from 'node:fs'
import yaml from 'js-yaml'
import { z } from 'zod'
import type { KeyProblem } from './fields.js'

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

/**
 * A rule spanning keys (e.g. upstreams and routing, or ACL rules and groups). It sees each top-level section
 * parsed when the section is valid and as written when it is not, so it checks shapes before use.
 */
export type CrossCheck = (sections: Readonly<Record<string, unknown>>) => KeyProblem[]

/** The whole configuration: top-level sections, each registered by the module that owns it, and the rules between them. */
export interface ConfigSpec<Schema extends z.ZodObject> {
  schema: Schema
  checks: readonly CrossCheck[]
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

/** How a PORTIER_* variable's text becomes a value, by the kind of key it sets. */
export type LeafKind = 'text' | 'bool' | 'int' | 'strings' | 'list'

/** The schema under defaults, optional markers and transforms: what decides how a value is read. */
function inner(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema
  for (;;) {
    if (current instanceof z.ZodDefault || current instanceof z.ZodPrefault || current instanceof z.ZodOptional) current = current.unwrap()
    else if (current instanceof z.ZodPipe) current = current.in
    else return current
  }
}

function leafKind(schema: z.core.$ZodType): LeafKind {
  if (schema instanceof z.ZodBoolean) return 'bool'
  if (schema instanceof z.ZodNumber) return 'int'
  if (schema instanceof z.ZodArray) return 'list'
  // fields.ts's strings() is the only custom schema: a list of strings.
  if (schema instanceof z.ZodCustom) return 'strings'
  return 'text'
}

/** Every settable key path with its kind: sections are walked, lists and scalars are leaves. */
export function leafPaths(schema: z.ZodObject, prefix: string[] = []): Array<{ path: string[]; kind: LeafKind }> {
  const out: Array<{ path: string[]; kind: LeafKind }> = []
  for (const [name, field] of Object.entries(schema.shape)) {
    const path = [...prefix, name]
    const core = inner(field)
    if (core instanceof z.ZodObject) out.push(...leafPaths(core, path))
    else out.push({ path, kind: leafKind(core) })
  }
  return out
}

/**
 * Variables that configure the CLI itself rather than a config key (the admin commands' credentials:
 * src/cli/admin-client.ts; PORTIER_WORKER: set by the primary for its worker processes, server.workers).
 */
const reservedEnv = new Set(['PORTIER_CONFIG', 'PORTIER_ADMIN_USER', 'PORTIER_ADMIN_PASSWORD', 'PORTIER_WORKER'])

function envValue(kind: LeafKind, text: string): Plain {
  if (kind === 'list' || kind === 'strings') {
    if (kind === 'strings' && !/^\s*\[/.test(text)) return text.split(',').map((s) => s.trim()).filter(Boolean)
    try {
      return yaml.load(text) as Plain
    } catch {
      return text
    }
  }
  if (kind === 'bool') {
    const lower = text.trim().toLowerCase()
    if (['true', '1', 'yes', 'on'].includes(lower)) return true
    if (['false', '0', 'no', 'off'].includes(lower)) return false
    return text
  }
  if (kind === 'int') return /^-?\d+$/.test(text.trim()) ? Number(text) : text
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

/** YAML's `key:` with nothing after it is null: the same as leaving the key out (its default applies). */
function withoutNulls(value: Plain): Plain {
  if (Array.isArray(value)) return value.map(withoutNulls)
  if (!isTree(value)) return value
  const out: Tree = {}
  for (const [name, item] of Object.entries(value)) {
    if (item !== null) out[name] = withoutNulls(item)
  }
  return out
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

/** A zod path as the config's own key syntax: `upstreams[0].url`. */
function keyOf(path: readonly PropertyKey[]): string {
  let key = ''
  for (const part of path) key += typeof part === 'number' ? `[${part}]` : key === '' ? String(part) : `.${String(part)}`
  return key
}

/** One problem per key (the first thing wrong with it), one per unknown key. */
function problemsOf(issues: readonly z.core.$ZodIssue[], origin: Origin): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  for (const issue of issues) {
    const at = keyOf(issue.path)
    if (issue.code === 'unrecognized_keys') {
      for (const name of issue.keys) {
        const key = at === '' ? name : `${at}.${name}`
        problems.push({ source: sourceOf(origin, key), key, expected: `one of the known keys${at ? ` of ${at}` : ''} (${issue.message})`, found: 'an unknown key' })
      }
      continue
    }
    const key = at === '' ? '(top level)' : at
    if (seen.has(key)) continue
    seen.add(key)
    problems.push({ source: sourceOf(origin, key), key, expected: issue.message, found: describe(issue.input) })
  }
  return problems
}

export interface LoadOptions {
  /** YAML file; when absent only defaults and the environment apply. */
  file?: string
  env?: NodeJS.ProcessEnv
}

export interface Loaded<T> {
  config: T
  /** Human description of where settings came from, for the start-up log. */
  sources: string[]
}

/** Loads and validates against `spec`; throws ConfigError listing every problem found. */
export function loadWith<Schema extends z.ZodObject>(spec: ConfigSpec<Schema>, options: LoadOptions = {}): Loaded<z.output<Schema>> {
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
  const byEnvName = new Map(leafPaths(spec.schema).map((leaf) => [envName(leaf.path), leaf]))
  for (const [variable, text] of Object.entries(env)) {
    if (!variable.startsWith('PORTIER_') || reservedEnv.has(variable) || text === undefined) continue
    const leaf = byEnvName.get(variable)
    if (!leaf) {
      problems.push({ source: `environment ${variable}`, key: variable, expected: 'a PORTIER_* variable naming a known key (e.g. PORTIER_LIMITS_BLOB_MAX_BYTES)', found: 'an unknown variable' })
      continue
    }
    setPath(tree, leaf.path, envValue(leaf.kind, text))
    origin.envKeys.set(leaf.path.join('.'), variable)
    sources.push(`environment ${variable}`)
  }

  const input = withoutNulls(tree)
  const result = spec.schema.safeParse(input, { reportInput: true })
  if (!result.success) problems.push(...problemsOf(result.error.issues, origin))
  // Rules between sections see each section as far as it validated: parsed when valid, as written when not,
  // so one bad key does not hide the other problems (the rules check shapes before use).
  const sections: Record<string, unknown> = {}
  if (result.success) Object.assign(sections, result.data)
  else if (isTree(input)) {
    for (const [name, field] of Object.entries(spec.schema.shape)) {
      const section = z.safeParse(field, input[name])
      sections[name] = section.success ? section.data : input[name]
    }
  }
  // A key already reported (e.g. a list entry of the wrong kind) is reported once.
  const reported = new Set(problems.map((problem) => problem.key))
  for (const check of spec.checks) {
    for (const found of check(sections)) {
      if (reported.has(found.key)) continue
      reported.add(found.key)
      problems.push({ source: sourceOf(origin, found.key), ...found })
    }
  }
  if (!result.success || problems.length > 0) throw new ConfigError(problems)
  return { config: result.data, sources }
}
