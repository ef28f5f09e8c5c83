// Keeps a cache's storage within max_bytes and max_age: repositories not pulled within max_age, then those pulled longest ago while over max_bytes, leave the cache's storage, then the blobs no repository links any more (what is evicted is fetched again on its next pull).
import { readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'

export interface EvictionResult {
  bytesBefore: number
  /** Bytes of the blobs still linked (or stored too recently to judge) once this pass is done. */
  bytesAfter: number
  /** Bytes of blobs nothing links any more but written within the grace period: a later pass removes them. */
  bytesPending: number
  /** Repositories evicted to bring the storage under max_bytes, oldest-used first. */
  repositories: string[]
  /** Repositories evicted because they were not pulled within max_age. */
  aged: string[]
  blobs: number
}

/** The repository names under a storage root (directories holding `_manifests`). */
async function repositoriesOf(root: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(join(root, prefix), { withFileTypes: true }).catch(() => [])
  const names: string[] = []
  for (const entry of entries) {
    if (!entry.isDirectory()) continue
    if (entry.name === '_manifests') names.push(prefix)
    else if (!entry.name.startsWith('_')) names.push(...(await repositoriesOf(root, prefix ? `${prefix}/${entry.name}` : entry.name)))
  }
  return names
}

/** Every digest a repository links: its layers and its manifest revisions. */
async function linkedDigests(repositories: string, name: string, into: Set<string>): Promise<void> {
  for (const kind of ['_layers', '_manifests/revisions']) {
    const algorithms = await readdir(join(repositories, name, kind)).catch(() => [] as string[])
    for (const algorithm of algorithms) {
      for (const hex of await readdir(join(repositories, name, kind, algorithm)).catch(() => [] as string[])) into.add(`${algorithm}:${hex}`)
    }
  }
}

/** The blobs on disk: digest, size of their data, when written. */
async function blobsOf(blobs: string): Promise<Array<{ digest: string; dir: string; bytes: number; writtenAt: number }>> {
  const found = []
  for (const algorithm of await readdir(blobs).catch(() => [] as string[])) {
    for (const shard of await readdir(join(blobs, algorithm)).catch(() => [] as string[])) {
      for (const hex of await readdir(join(blobs, algorithm, shard)).catch(() => [] as string[])) {
        const dir = join(blobs, algorithm, shard, hex)
        const data = await stat(join(dir, 'data')).catch(() => undefined)
        if (data) found.push({ digest: `${algorithm}:${hex}`, dir, bytes: data.size, writtenAt: data.mtimeMs })
      }
    }
  }
  return found
}

/** When a repository was last used: the newest tag link (the registry rewrites it on every revalidation) or the directory itself. */
async function touchedAt(repositories: string, name: string): Promise<number> {
  let newest = (await stat(join(repositories, name)).catch(() => undefined))?.mtimeMs ?? 0
  const tags = join(repositories, name, '_manifests/tags')
  for (const tag of await readdir(tags).catch(() => [] as string[])) {
    const link = await stat(join(tags, tag, 'current/link')).catch(() => undefined)
    if (link && link.mtimeMs > newest) newest = link.mtimeMs
  }
  return newest
}

/**
 * What one cache's passes remember between them: the pass count, and the pass in which each blob was first seen
 * with no repository linking it. A blob goes only when it was already unlinked in an earlier pass: the registry
 * may be linking one right now (a blob it already holds keeps its old time when a new pull links it again).
 */
export class EvictionMemory {
  pass = 0
  readonly unlinkedSince = new Map<string, number>()
}

/** What a cache keeps: bytes of blobs at most (max_bytes) and repositories pulled within an age (max_age); 0 is no bound. */
export interface EvictionLimits {
  maxBytes: number
  maxAgeMs: number
}

/**
 * Applies a cache's limits to its storage. First the blobs nothing links any more go (what earlier
 * passes left pending). Age: every repository not pulled within `maxAgeMs` leaves.
 * Size: while the blobs still linked add up to more than `maxBytes`, repositories leave oldest-used
 * first. When a repository was used is `lastPulled` (Portier's own record), else the storage's times.
 * Each removal is followed by a sweep of the blobs nothing links any more. A blob goes only when it
 * was already unlinked in an earlier pass (`memory`) and was written more than `graceMs` ago: the
 * registry may be linking it right now. Until then it stays on disk but counts as leaving: an evicted
 * repository whose blobs cannot go yet must not make the loop evict the newer ones too. A repository being pulled while it is evicted is fetched again from the remote
 * (the registry's proxy falls back to it).
 */
export async function evict(storage: string, limits: EvictionLimits, graceMs: number, lastPulled: (repository: string) => number | undefined, memory: EvictionMemory, now = Date.now()): Promise<EvictionResult> {
  const pass = ++memory.pass
  const base = join(storage, 'docker/registry/v2')
  const repositories = join(base, 'repositories')
  const blobs = join(base, 'blobs')
  let onDisk = await blobsOf(blobs)
  const present = new Set(onDisk.map((blob) => blob.digest))
  for (const digest of memory.unlinkedSince.keys()) if (!present.has(digest)) memory.unlinkedSince.delete(digest)
  const bytesBefore = onDisk.reduce((sum, blob) => sum + blob.bytes, 0)
  const result: EvictionResult = { bytesBefore, bytesAfter: bytesBefore, bytesPending: 0, repositories: [], aged: [], blobs: 0 }
  if (limits.maxBytes <= 0 && limits.maxAgeMs <= 0) return result
  const names = await repositoriesOf(repositories)
  const removed = new Set<string>()
  /** Bytes on disk, and of those the bytes of unlinked blobs the grace period keeps for now. */
  let bytes = bytesBefore
  let pending = 0
  const remove = async (name: string): Promise<void> => {
    await rm(join(repositories, name), { recursive: true, force: true })
    removed.add(name)
  }
  // The blobs no repository links (the names read again: a pull may have made one since): those unlinked in an earlier
  // pass and older than the grace period go; the others are pending.
  const sweep = async (): Promise<void> => {
    const linked = new Set<string>()
    for (const rest of await repositoriesOf(repositories)) if (!removed.has(rest)) await linkedDigests(repositories, rest, linked)
    const sweptAt = Date.now()
    const kept = []
    pending = 0
    for (const blob of onDisk) {
      if (linked.has(blob.digest)) {
        memory.unlinkedSince.delete(blob.digest)
        kept.push(blob)
        continue
      }
      const since = memory.unlinkedSince.get(blob.digest) ?? pass
      memory.unlinkedSince.set(blob.digest, since)
      if (since === pass || sweptAt - blob.writtenAt < graceMs) {
        kept.push(blob)
        pending += blob.bytes
      } else {
        memory.unlinkedSince.delete(blob.digest)
        await rm(blob.dir, { recursive: true, force: true })
        bytes -= blob.bytes
        result.blobs++
      }
    }
    onDisk = kept
  }
  const finish = (): EvictionResult => {
    result.bytesAfter = bytes - pending
    result.bytesPending = pending
    return result
  }
  await sweep()
  const overSize = limits.maxBytes > 0 && bytes - pending > limits.maxBytes
  if (!overSize && limits.maxAgeMs <= 0) return finish()
  const used = await Promise.all(names.map(async (name) => ({ name, at: lastPulled(name) ?? (await touchedAt(repositories, name)) })))
  used.sort((a, b) => a.at - b.at)
  if (limits.maxAgeMs > 0) {
    for (const { name, at } of used) {
      if (now - at < limits.maxAgeMs) continue
      await remove(name)
      result.aged.push(name)
    }
    if (result.aged.length > 0) await sweep()
  }
  if (limits.maxBytes > 0) {
    for (const { name } of used) {
      if (bytes - pending <= limits.maxBytes) break
      if (removed.has(name)) continue
      await remove(name)
      result.repositories.push(name)
      await sweep()
    }
  }
  return finish()
}
