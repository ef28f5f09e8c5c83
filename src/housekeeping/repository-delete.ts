// Deleting a whole repository: every manifest it holds, by digest, through the registry API (routed like a client's delete), so a following GC frees its blobs.
import { RegistryError } from '../registry/errors.js'
import type { RegistryStorage } from './registry-storage.js'

/** What the delete needs of the registry (the web UI's registry client has it: routed, with the upstream's credentials). */
export interface ManifestDeleter {
  tags(repository: string): Promise<string[]>
  digestOf(repository: string, tag: string): Promise<string | undefined>
  deleteManifest(repository: string, digest: string): Promise<void>
}

export interface RepositoryDeleted {
  repository: string
  /** The tags the repository had (all gone now). */
  tags: string[]
  /** Manifests deleted by digest (tagged ones, and untagged ones found in storage). */
  manifests: string[]
  /** Digests the registry no longer knew (deleted meanwhile). */
  alreadyGone: string[]
  /** Whether untagged manifests were looked up in storage (the registry API cannot list them). */
  untaggedFromStorage: boolean
}

const CONCURRENCY = 4

async function forEachLimit<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/**
 * Deletes every manifest of `repository`: the digests its tags point at, and — when the storage is at hand —
 * every revision it holds (untagged manifests, children of multi-arch indexes), which the API cannot list.
 * Throws NAME_UNKNOWN when there is nothing to delete. Blobs are freed by the next garbage collection.
 */
export async function deleteRepository(registry: ManifestDeleter, repository: string, storage?: RegistryStorage): Promise<RepositoryDeleted> {
  const tags = await registry.tags(repository)
  const digests = new Set<string>()
  const pointed = await Promise.all(tags.map((tag) => registry.digestOf(repository, tag)))
  for (const digest of pointed) if (digest) digests.add(digest)
  if (storage) for (const digest of await storage.revisions(repository)) digests.add(digest)
  if (digests.size === 0) throw new RegistryError('NAME_UNKNOWN', { name: repository, reason: 'the repository has no manifests' })
  const manifests: string[] = []
  const alreadyGone: string[] = []
  await forEachLimit([...digests].sort(), CONCURRENCY, async (digest) => {
    try {
      await registry.deleteManifest(repository, digest)
      manifests.push(digest)
    } catch (error) {
      if (error instanceof RegistryError && (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NOT_FOUND')) alreadyGone.push(digest)
      else throw error
    }
  })
  return { repository, tags: [...tags].sort(), manifests: manifests.sort(), alreadyGone: alreadyGone.sort(), untaggedFromStorage: storage !== undefined }
}
