// Multi-arch protection for `--delete-untagged`: registry 2.8's collector deletes the (untagged) child manifests of a tagged index (distribution #3178), so they get a temporary tag for the run.
import { blobSize, linkedBlobs, removeBlob, removeRevision, writeBlob, writeRevision, type RegistryStorage } from './registry-storage.js'
import { isRecord } from '../lib/is-record.js'

/** Temporary tags start with this; a run removes leftovers of an interrupted one before it begins. */
export const KEEP_TAG_PREFIX = 'portier-gc-keep-'

export interface KeptManifest {
  repository: string
  /** The child manifest kept. */
  digest: string
  /** The tagged index it belongs to. */
  index: string
  tag: string
}

/** The manifests an index lists (`manifests[].digest`), or [] for anything else. */
export function indexChildren(document: unknown): string[] {
  if (!isRecord(document) || !Array.isArray(document.manifests)) return []
  return document.manifests.flatMap((entry) => (isRecord(entry) && typeof entry.digest === 'string' ? [entry.digest] : []))
}

/**
 * Tags every untagged manifest that a tagged index (or an index inside one) lists, in its repository,
 * so the collector marks it and its blobs. Returns what it tagged; `release` removes those tags.
 */
export async function protectIndexChildren(storage: RegistryStorage): Promise<KeptManifest[]> {
  const kept: KeptManifest[] = []
  for (const repository of await storage.repositories()) {
    const tags = await storage.tags(repository)
    // Leftovers of a run that did not finish would protect children whose index is no longer tagged.
    for (const tag of tags.keys()) {
      if (tag.startsWith(KEEP_TAG_PREFIX)) {
        await storage.removeTag(repository, tag)
        tags.delete(tag)
      }
    }
    const tagged = new Set(tags.values())
    const revisions = new Set(await storage.revisions(repository))
    const seen = new Set<string>()
    const visit = async (index: string, digest: string): Promise<void> => {
      if (seen.has(digest)) return
      seen.add(digest)
      for (const child of indexChildren(await storage.manifest(digest))) {
        if (!tagged.has(child) && revisions.has(child) && !kept.some((k) => k.repository === repository && k.digest === child)) {
          const tag = `${KEEP_TAG_PREFIX}${child.slice('sha256:'.length)}`
          await storage.writeTag(repository, tag, child)
          kept.push({ repository, digest: child, index, tag })
        }
        // Nested indexes (an index of indexes) keep their children too.
        await visit(index, child)
      }
    }
    for (const digest of tagged) await visit(digest, digest)
  }
  return kept
}

export async function releaseKept(storage: RegistryStorage, kept: readonly KeptManifest[]): Promise<void> {
  for (const entry of kept) await storage.removeTag(entry.repository, entry.tag)
}

/** The temporary tag of the manifest that keeps a repository's recent uploads. */
export const UPLOADS_TAG = `${KEEP_TAG_PREFIX}uploads`

export interface KeptUploads {
  repository: string
  /** The manifest GC wrote to reference them (removed afterwards). */
  manifest: string
  blobs: number
}

/** How far back a push in flight may have committed its first blobs (its manifest comes after the last one). */
export const PUSH_WINDOW_MS = 60 * 60_000

/** Whether the repository has an upload session written to since `sinceMs` (`_uploads/<id>/data`). */
async function uploadingSince(storage: RegistryStorage, repository: string, sinceMs: number): Promise<boolean> {
  return (await storage.uploadSessions(repository)).some((session) => session.mtimeMs >= sinceMs)
}

/**
 * A push in flight when the run began has blobs without a manifest yet: the collector would delete
 * them, and the push's manifest PUT would then point at nothing. A repository is being pushed to when
 * a blob was committed into it since `sinceMs` (an upload GC waited for) or an upload of it is still
 * open; there, every blob linked within PUSH_WINDOW_MS before is kept by a manifest of GC's own
 * (tagged for the run), which `releaseUploads` removes. A leftover of an interrupted run goes first.
 */
export async function protectRecentUploads(storage: RegistryStorage, sinceMs: number, runId: string): Promise<KeptUploads[]> {
  const kept: KeptUploads[] = []
  for (const repository of await storage.repositories()) {
    const leftover = (await storage.tags(repository)).get(UPLOADS_TAG)
    if (leftover) {
      await storage.removeTag(repository, UPLOADS_TAG)
      await removeRevision(storage, repository, leftover)
    }
    const linked = await linkedBlobs(storage, repository)
    const pushing = linked.some((blob) => blob.linkedAt >= sinceMs) || (await uploadingSince(storage, repository, sinceMs - PUSH_WINDOW_MS))
    if (!pushing) continue
    const descriptors = []
    for (const blob of linked.filter((entry) => entry.linkedAt >= sinceMs - PUSH_WINDOW_MS)) {
      const size = await blobSize(storage, blob.digest)
      if (size !== undefined) descriptors.push({ mediaType: 'application/octet-stream', digest: blob.digest, size })
    }
    const [config, ...layers] = descriptors
    if (!config) continue
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config,
      layers,
      annotations: { 'org.opencontainers.image.description': `kept by Portier during garbage collection ${runId}` },
    }))
    const digest = await writeBlob(storage, manifest)
    await writeRevision(storage, repository, digest)
    await storage.writeTag(repository, UPLOADS_TAG, digest)
    kept.push({ repository, manifest: digest, blobs: descriptors.length })
  }
  return kept
}

export async function releaseUploads(storage: RegistryStorage, kept: readonly KeptUploads[]): Promise<void> {
  for (const entry of kept) {
    await storage.removeTag(entry.repository, UPLOADS_TAG)
    await removeRevision(storage, entry.repository, entry.manifest)
    await removeBlob(storage, entry.manifest)
  }
}
