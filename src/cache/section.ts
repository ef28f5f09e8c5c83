// The `caches` config section: pull-through caches of remote registries, each served under its own repository prefix.
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { duration, flag, list, oneOf, section, size, strings, text } from '../config/fields.js'
import { isRecord } from '../lib/is-record.js'
import type { KeyProblem } from '../config/fields.js'

const remoteExpect = 'a registry origin like "https://registry-1.docker.io"'
const prefixExpect = 'one repository path component: lowercase letters, digits and . _ - (e.g. "dockerhub")'

const cache = section({
  /** Repositories named `<prefix>/...` are pulled through this cache, the prefix taken off before the remote sees the name. */
  prefix: text({ pattern: /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/, expect: prefixExpect }),
  remote: text({ pattern: /^https?:\/\/[^/?#\s]+\/?$/, expect: remoteExpect }),
  /** Basic credentials for the remote (the embedded registry also uses them for the remote's token service). */
  username: text().default(''),
  password_file: text().default(''),
  /** PEM file of CA certificates trusted for the remote's HTTPS, in addition to the system roots. */
  ca_file: text().default(''),
  /** How long a tag's digest is trusted before the remote is asked again; 0 asks on every pull by tag. */
  revalidate: duration().default(5 * 60_000),
  /** "auto": on when the remote is Docker Hub (registry-1.docker.io): one-component names get `library/`. */
  docker_hub_library: oneOf(['auto', 'on', 'off']).default('auto'),
  /** Registry hosts this cache mirrors: requests carrying `?ns=<host>` (containerd, cri-o) come here without a prefix. */
  mirror_of: strings().optional(),
  /** Un-prefixed pulls the configured routing does not find are tried here (docker's registry-mirrors); at most one cache. */
  unprefixed: flag().default(false),
  /** Bytes of blobs the cache keeps at most: the repositories pulled longest ago are evicted; 0: no bound. */
  max_bytes: size().default(0),
  /** How long a repository stays in the cache without being pulled: older ones are evicted; 0: no bound. */
  max_age: duration(3650 * 86_400_000).default(0),
  /** How often the storage is measured against max_bytes and max_age. */
  eviction_interval: duration().default(5 * 60_000),
  /** The embedded registry's directory (config, storage); empty: data/caches/<prefix>. */
  data_dir: text().default(''),
})

export const cachesSection = list(cache).default(() => [])

export type CacheConfig = z.output<typeof cachesSection>[number]

/** Whether a cache's remote is Docker Hub, whose official images live under `library/`. */
export function isDockerHub(entry: Pick<CacheConfig, 'remote' | 'docker_hub_library'>): boolean {
  if (entry.docker_hub_library !== 'auto') return entry.docker_hub_library === 'on'
  return /^https?:\/\/(?:registry-1\.docker\.io|index\.docker\.io|docker\.io)\/?$/.test(entry.remote)
}

/** The `ns` hosts a cache answers: as configured, else docker.io for Docker Hub, else the remote's host. */
export function mirrorsOf(entry: CacheConfig): string[] {
  if (entry.mirror_of) return entry.mirror_of
  return isDockerHub(entry) ? ['docker.io', 'registry-1.docker.io', 'index.docker.io'] : [new URL(entry.remote).host]
}

/**
 * Rules across caches and the rest: prefixes and mirrored hosts used once, one cache for un-prefixed
 * names, and no credentials without a password file. Runs on a partly invalid tree, so it checks shapes first.
 */
export function cachesProblems(caches: unknown): KeyProblem[] {
  const problems: KeyProblem[] = []
  const entries = Array.isArray(caches) ? caches : []
  const prefixes = new Map<string, number>()
  const unprefixed: number[] = []
  entries.forEach((entry: unknown, index) => {
    if (!isRecord(entry)) return
    const at = (name: string): string => `caches[${index}].${name}`
    if (typeof entry.prefix === 'string') {
      const before = prefixes.get(entry.prefix)
      if (before !== undefined) problems.push({ key: at('prefix'), expected: `a prefix no other cache has (caches[${before}].prefix is the same)`, found: JSON.stringify(entry.prefix) })
      else prefixes.set(entry.prefix, index)
    }
    if (entry.unprefixed === true) unprefixed.push(index)
    for (const [name, pem] of [['password_file', false], ['ca_file', true]] as const) {
      const path = entry[name]
      if (typeof path !== 'string' || path === '') continue
      const found = fileProblem(path, pem)
      if (found) problems.push({ key: at(name), expected: pem ? 'a readable PEM file of CA certificates' : 'a readable file holding the password', found: `${JSON.stringify(path)}: ${found}` })
    }
    if (typeof entry.username === 'string' && entry.username !== '' && (typeof entry.password_file !== 'string' || entry.password_file === '')) {
      problems.push({ key: at('password_file'), expected: 'a file holding the password of username', found: 'nothing' })
    }
  })
  if (unprefixed.length > 1) {
    problems.push({ key: `caches[${unprefixed[1] ?? 0}].unprefixed`, expected: `true on at most one cache (caches[${unprefixed[0] ?? 0}] has it)`, found: 'true' })
  }
  return problems
}

/** What is wrong with a file a cache needs, or undefined. */
function fileProblem(path: string, pem: boolean): string | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    return `an unreadable file (${(error as NodeJS.ErrnoException).code ?? String(error)})`
  }
  return pem && !text.includes('-----BEGIN ') ? 'a file without PEM blocks' : undefined
}

/** The remote a repository name is a cache of (by its prefix), or undefined for a local repository: what the web UI shows. */
export function cacheSourceOf(caches: readonly Pick<CacheConfig, 'prefix' | 'remote'>[]): (repository: string) => string | undefined {
  const remotes = new Map(caches.map((entry) => [entry.prefix, entry.remote]))
  return (repository) => {
    const slash = repository.indexOf('/')
    return slash > 0 ? remotes.get(repository.slice(0, slash)) : undefined
  }
}
