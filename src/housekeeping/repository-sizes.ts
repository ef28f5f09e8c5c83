// How big each repository is on the registry's storage: the blobs its manifests reference, a layer shared by several images counted once per repository, and once overall across repositories.
import { isRecord } from '../lib/is-record.js'
import { diskUsage } from './disk-usage.js'
import { indexChildren } from './gc-protect.js'
import { blobSize, type RegistryStorage } from './registry-storage.js'

export interface RepositorySizeEntry {
  repository: string
  /** Bytes of the distinct blobs (manifests, configs, layers) its manifests reference. */
  bytes: number
  blobs: number
}

export interface StorageMeasure {
  at: number
  /** Allocated bytes under the storage root (what `du` reports), and the files' sizes summed. */
  diskBytes: number
  apparentBytes: number
  /** Bytes of the distinct blobs every repository references together (a layer shared between repositories counted once). */
  blobBytes: number
  repositories: RepositorySizeEntry[]
}

/** The blobs one manifest (and, for an index, its children) references, the manifest itself included. */
function referencedBy(document: unknown): string[] {
  if (!isRecord(document)) return []
  const found: string[] = []
  const config = document.config
  if (isRecord(config) && typeof config.digest === 'string') found.push(config.digest)
  for (const list of [document.layers, document.blobs]) {
    if (!Array.isArray(list)) continue
    for (const entry of list) if (isRecord(entry) && typeof entry.digest === 'string') found.push(entry.digest)
  }
  return found
}

/**
 * Measures the storage: du of the whole root, then every repository's manifests (`_manifests/revisions`,
 * tagged or not: what occupies the disk until a collection) and the blobs they reference. A blob missing
 * from storage (deleted by a collection, a push in progress) counts nothing.
 */
export async function measureStorage(storage: RegistryStorage, now: () => number = Date.now): Promise<StorageMeasure> {
  const at = now()
  const usage = await diskUsage(storage.root)
  const sizes = new Map<string, number | undefined>()
  const sizeOf = async (digest: string): Promise<number | undefined> => {
    if (!sizes.has(digest)) sizes.set(digest, /^sha256:[0-9a-f]{64}$/.test(digest) ? await blobSize(storage, digest) : undefined)
    return sizes.get(digest)
  }
  const everywhere = new Set<string>()
  const repositories: RepositorySizeEntry[] = []
  for (const repository of await storage.repositories()) {
    const mine = new Set<string>()
    const pending = await storage.revisions(repository)
    // Bounded: each manifest is visited once, however the indexes nest.
    while (pending.length > 0) {
      const digest = pending.pop() as string
      if (mine.has(digest)) continue
      if ((await sizeOf(digest)) === undefined) continue
      mine.add(digest)
      const document = await storage.manifest(digest)
      for (const child of indexChildren(document)) pending.push(child)
      for (const blob of referencedBy(document)) {
        if (!mine.has(blob) && (await sizeOf(blob)) !== undefined) mine.add(blob)
      }
    }
    let bytes = 0
    for (const digest of mine) {
      bytes += sizes.get(digest) ?? 0
      everywhere.add(digest)
    }
    repositories.push({ repository, bytes, blobs: mine.size })
  }
  let blobBytes = 0
  for (const digest of everywhere) blobBytes += sizes.get(digest) ?? 0
  repositories.sort((a, b) => b.bytes - a.bytes || a.repository.localeCompare(b.repository))
  return { at, diskBytes: usage.bytes, apparentBytes: usage.apparentBytes, blobBytes, repositories }
}
