// Resolves a kustomization the way `kubectl apply -k` does for the few features deploy/kubernetes uses (resources, ConfigMap/Secret generators with create/replace/merge, JSON 6902 patches, `$patch: delete`); anything else is refused, never ignored.
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import yaml from 'js-yaml'

export interface KubeDocument {
  apiVersion: string
  kind: string
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  [key: string]: unknown
}

export interface Resolved {
  /** Every document, in the order kustomize emits resources then generated objects. */
  docs: KubeDocument[]
  /** Where each document came from (a file relative to `root`, or "generator NAME in FILE"). */
  sources: Map<KubeDocument, string>
  /** Generated ConfigMaps and Secrets whose real name gets a content hash (references to them are rewritten by kustomize). */
  hashed: Set<string>
}

export interface ResolveOptions {
  /** Reads a file a generator names (default: the file itself); the test hands Secret files in here. */
  readFile?: (path: string) => Buffer
  /** Paths in sources are relative to this (default: the working directory). */
  root?: string
}

const KNOWN_KEYS = new Set(['apiVersion', 'kind', 'resources', 'configMapGenerator', 'secretGenerator', 'patches'])
const GENERATOR_KEYS = new Set(['name', 'files', 'type', 'behavior', 'options'])

interface Generator {
  name: string
  files?: string[]
  type?: string
  behavior?: 'create' | 'replace' | 'merge'
  options?: { disableNameSuffixHash?: boolean }
}

interface Patch {
  path?: string
  patch?: string
  target?: { kind: string; name: string }
}

interface Operation {
  op: 'add' | 'remove' | 'replace'
  path: string
  value?: unknown
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Every document of a YAML file (empty documents dropped). */
export function loadDocuments(file: string): KubeDocument[] {
  const docs = yaml.loadAll(readFileSync(file, 'utf8')).filter((doc) => doc !== null && doc !== undefined)
  for (const doc of docs) {
    if (!isRecord(doc) || typeof doc.apiVersion !== 'string' || typeof doc.kind !== 'string' || !isRecord(doc.metadata) || typeof doc.metadata.name !== 'string') {
      throw new Error(`${file}: a document without apiVersion, kind and metadata.name`)
    }
  }
  return docs as KubeDocument[]
}

/** JSON pointer (RFC 6901) tokens. */
function pointer(path: string): string[] {
  if (!path.startsWith('/')) throw new Error(`patch path ${JSON.stringify(path)} is not a JSON pointer`)
  return path.slice(1).split('/').map((token) => token.replace(/~1/g, '/').replace(/~0/g, '~'))
}

/** Applies RFC 6902 add/remove/replace to `doc` in place; a path that does not exist is an error, as in kustomize. */
export function applyOperations(doc: KubeDocument, operations: Operation[], label: string): void {
  for (const operation of operations) {
    const tokens = pointer(operation.path)
    const last = tokens.pop() as string
    let parent: unknown = doc
    for (const token of tokens) {
      parent = Array.isArray(parent) ? parent[Number(token)] : isRecord(parent) ? parent[token] : undefined
      if (parent === undefined) throw new Error(`${label}: ${operation.op} ${operation.path}: no such path`)
    }
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last)
      if (!Number.isInteger(index) || index < 0 || index > parent.length || (operation.op !== 'add' && index >= parent.length)) {
        throw new Error(`${label}: ${operation.op} ${operation.path}: no such index`)
      }
      if (operation.op === 'add') parent.splice(index, 0, operation.value)
      else if (operation.op === 'remove') parent.splice(index, 1)
      else parent[index] = operation.value
    } else if (isRecord(parent)) {
      if (operation.op !== 'add' && !(last in parent)) throw new Error(`${label}: ${operation.op} ${operation.path}: no such key`)
      if (operation.op === 'remove') delete parent[last]
      else parent[last] = operation.value
    } else {
      throw new Error(`${label}: ${operation.op} ${operation.path}: the parent is not an object or a list`)
    }
  }
}

/** `key=path` or `path` (the key is the file name). */
function fileEntry(entry: string): { key: string; path: string } {
  const at = entry.indexOf('=')
  if (at >= 0) return { key: entry.slice(0, at), path: entry.slice(at + 1) }
  return { key: entry.split('/').pop() as string, path: entry }
}

/** Resolves the kustomization in `dir` (and the directories its resources name). */
export function resolveKustomization(dir: string, options: ResolveOptions = {}): Resolved {
  const root = options.root ?? process.cwd()
  const readFile = options.readFile ?? ((path: string) => readFileSync(path))
  const file = join(dir, 'kustomization.yaml')
  const label = relative(root, file)
  const tree = yaml.load(readFileSync(file, 'utf8'))
  if (!isRecord(tree)) throw new Error(`${label}: not a YAML mapping`)
  for (const key of Object.keys(tree)) {
    if (!KNOWN_KEYS.has(key)) throw new Error(`${label}: ${key}: a kustomization key this resolver does not know (teach test/helpers/kustomize.ts, or kubectl and the test would disagree)`)
  }
  if (tree.apiVersion !== 'kustomize.config.k8s.io/v1beta1' || tree.kind !== 'Kustomization') throw new Error(`${label}: expected apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization`)

  const resolved: Resolved = { docs: [], sources: new Map(), hashed: new Set() }
  for (const entry of (tree.resources ?? []) as string[]) {
    const path = resolve(dir, entry)
    if (!existsSync(path)) throw new Error(`${label}: resources: ${entry}: no such file or directory`)
    if (statSync(path).isDirectory()) {
      const inner = resolveKustomization(path, options)
      for (const doc of inner.docs) {
        resolved.docs.push(doc)
        resolved.sources.set(doc, inner.sources.get(doc) as string)
      }
      for (const name of inner.hashed) resolved.hashed.add(name)
    } else {
      for (const doc of loadDocuments(path)) {
        resolved.docs.push(doc)
        resolved.sources.set(doc, relative(root, path))
      }
    }
  }

  const generate = (kind: 'ConfigMap' | 'Secret', generators: Generator[]): void => {
    for (const generator of generators) {
      for (const key of Object.keys(generator)) {
        if (!GENERATOR_KEYS.has(key)) throw new Error(`${label}: ${kind} generator ${generator.name}: ${key}: not known to this resolver`)
      }
      const data: Record<string, string> = {}
      for (const entry of generator.files ?? []) {
        const { key, path } = fileEntry(entry)
        const bytes = readFile(resolve(dir, path))
        data[key] = kind === 'Secret' ? bytes.toString('base64') : bytes.toString('utf8')
      }
      const behavior = generator.behavior ?? 'create'
      const existing = resolved.docs.find((doc) => doc.kind === kind && doc.metadata.name === generator.name)
      if (behavior === 'create') {
        if (existing) throw new Error(`${label}: ${kind} ${generator.name} is generated twice (use behavior: replace or merge)`)
        const doc: KubeDocument = { apiVersion: 'v1', kind, metadata: { name: generator.name }, data }
        if (kind === 'Secret') doc.type = generator.type ?? 'Opaque'
        resolved.docs.push(doc)
        resolved.sources.set(doc, `${kind} generator ${generator.name} in ${label}`)
        if (generator.options?.disableNameSuffixHash !== true) resolved.hashed.add(`${kind}/${generator.name}`)
        else resolved.hashed.delete(`${kind}/${generator.name}`)
      } else {
        if (!existing) throw new Error(`${label}: ${kind} ${generator.name}: behavior ${behavior} but no such generated object to ${behavior}`)
        existing.data = behavior === 'replace' ? data : { ...(existing.data as Record<string, string>), ...data }
        resolved.sources.set(existing, `${kind} generator ${generator.name} in ${label} (${behavior})`)
      }
    }
  }
  generate('ConfigMap', (tree.configMapGenerator ?? []) as Generator[])
  generate('Secret', (tree.secretGenerator ?? []) as Generator[])

  for (const patch of (tree.patches ?? []) as Patch[]) {
    const text = patch.patch ?? (patch.path ? readFileSync(resolve(dir, patch.path), 'utf8') : undefined)
    if (text === undefined) throw new Error(`${label}: patches: each entry needs a patch or a path`)
    const operations = yaml.load(text)
    // A strategic-merge patch that deletes one object: `$patch: delete` with its apiVersion, kind and name.
    if (isRecord(operations) && operations.$patch === 'delete') {
      const gone = resolved.docs.findIndex((doc) => doc.apiVersion === operations.apiVersion && doc.kind === operations.kind && isRecord(operations.metadata) && doc.metadata.name === operations.metadata.name)
      if (gone < 0) throw new Error(`${label}: patches: $patch: delete of ${String(operations.kind)} that is not there`)
      resolved.docs.splice(gone, 1)
      continue
    }
    const target = patch.target
    if (!target) throw new Error(`${label}: patches: a JSON 6902 patch needs a target`)
    if (!Array.isArray(operations)) throw new Error(`${label}: patches: only JSON 6902 patches (a list of operations) are supported here`)
    const targets = resolved.docs.filter((doc) => doc.kind === target.kind && doc.metadata.name === target.name)
    if (targets.length !== 1) throw new Error(`${label}: patches: target ${target.kind}/${target.name} matches ${targets.length} documents`)
    for (const op of operations as Operation[]) {
      if (!['add', 'remove', 'replace'].includes(op.op)) throw new Error(`${label}: patches: op ${JSON.stringify(op.op)} is not supported here`)
    }
    applyOperations(targets[0] as KubeDocument, operations as Operation[], `${label} patch of ${target.kind}/${target.name}`)
  }
  return resolved
}
