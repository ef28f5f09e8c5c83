// Reads manifests, indexes and image configs into what the UI shows; content fetched by digest is cached (it never changes).
import type { RegistryClient, FetchedManifest } from './registry-client.js'
import type { HistoryEntry, ImageConfigSummary, LayerSummary, ManifestDetail, PlatformManifest, TagSummary } from './types.js'
import { BoundedCache } from '../lib/bounded-cache.js'
import { isRecord } from '../lib/is-record.js'

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'])
const IMAGE_TYPES = new Set(['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'])
/** At most this many platform images of one index are read for sizes and dates. */
const MAX_PLATFORMS = 16
const CACHE_ENTRIES = 5000

type Kind = ManifestDetail['kind']

interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: string
}

/** A manifest reduced to what the UI needs; the same for every tag pointing at its digest. */
interface ParsedManifest {
  digest: string
  mediaType: string
  kind: Kind
  bytes: number
  config?: Descriptor
  layers: Descriptor[]
  manifests: Descriptor[]
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : []
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

export function platformName(value: unknown): string | undefined {
  if (!isRecord(value) || typeof value.os !== 'string' || typeof value.architecture !== 'string') return undefined
  return [value.os, value.architecture, typeof value.variant === 'string' && value.variant ? value.variant : undefined].filter(Boolean).join('/')
}

function descriptor(value: unknown): Descriptor | undefined {
  if (!isRecord(value) || typeof value.digest !== 'string') return undefined
  const platform = platformName(value.platform)
  return {
    mediaType: typeof value.mediaType === 'string' ? value.mediaType : '',
    digest: value.digest,
    size: typeof value.size === 'number' ? value.size : 0,
    ...(platform ? { platform } : {}),
  }
}

export function parseManifest(fetched: FetchedManifest): ParsedManifest {
  const body = isRecord(fetched.body) ? fetched.body : {}
  const kind: Kind = INDEX_TYPES.has(fetched.mediaType) ? 'index' : IMAGE_TYPES.has(fetched.mediaType) ? 'image' : Array.isArray(body.manifests) ? 'index' : isRecord(body.config) ? 'image' : 'other'
  const list = (value: unknown): Descriptor[] => (Array.isArray(value) ? value.map(descriptor).filter((item): item is Descriptor => item !== undefined) : [])
  const config = kind === 'image' ? descriptor(body.config) : undefined
  return {
    digest: fetched.digest,
    mediaType: fetched.mediaType,
    kind,
    bytes: fetched.bytes,
    ...(config ? { config } : {}),
    layers: kind === 'image' ? list(body.layers) : [],
    manifests: kind === 'index' ? list(body.manifests) : [],
  }
}

export function summarizeConfig(digest: string, value: unknown): ImageConfigSummary {
  const body = isRecord(value) ? value : {}
  const runtime = isRecord(body.config) ? body.config : {}
  const labels: Record<string, string> = {}
  if (isRecord(runtime.Labels)) for (const [name, text] of Object.entries(runtime.Labels)) if (typeof text === 'string') labels[name] = text
  const history: HistoryEntry[] = Array.isArray(body.history)
    ? body.history.filter(isRecord).map((entry) => {
        const created = optionalString(entry.created)
        const createdBy = optionalString(entry.created_by)
        const comment = optionalString(entry.comment)
        return { ...(created ? { created } : {}), ...(createdBy ? { createdBy } : {}), ...(comment ? { comment } : {}), emptyLayer: entry.empty_layer === true }
      })
    : []
  const created = optionalString(body.created)
  const platform = platformName(body)
  const workingDir = optionalString(runtime.WorkingDir)
  const user = optionalString(runtime.User)
  return {
    digest,
    ...(created ? { created } : {}),
    ...(platform ? { platform } : {}),
    env: strings(runtime.Env),
    entrypoint: strings(runtime.Entrypoint),
    cmd: strings(runtime.Cmd),
    ...(workingDir ? { workingDir } : {}),
    ...(user ? { user } : {}),
    exposedPorts: isRecord(runtime.ExposedPorts) ? Object.keys(runtime.ExposedPorts) : [],
    labels,
    history,
  }
}

/** Runs `work` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

export interface ImageReader {
  tagSummary(repository: string, tag: string): Promise<TagSummary>
  detail(repository: string, reference: string): Promise<Omit<ManifestDetail, 'canDelete'>>
}

export function createImageReader(registry: RegistryClient): ImageReader {
  // Keyed by repository and digest: the same digest in another repository may not be readable there.
  const manifests = new BoundedCache<string, ParsedManifest>({ max: CACHE_ENTRIES })
  const configs = new BoundedCache<string, ImageConfigSummary>({ max: CACHE_ENTRIES })

  const manifestByDigest = async (repository: string, digest: string): Promise<ParsedManifest> => {
    const key = `${repository}@${digest}`
    const cached = manifests.get(key)
    if (cached) return cached
    const parsed = parseManifest(await registry.manifest(repository, digest))
    manifests.set(key, parsed)
    return parsed
  }

  const configOf = async (repository: string, manifest: ParsedManifest): Promise<ImageConfigSummary | undefined> => {
    if (!manifest.config) return undefined
    const key = `${repository}@${manifest.config.digest}`
    const cached = configs.get(key)
    if (cached) return cached
    const summary = summarizeConfig(manifest.config.digest, await registry.blobJson(repository, manifest.config.digest))
    configs.set(key, summary)
    return summary
  }

  const layerBytes = (manifest: ParsedManifest): number => manifest.layers.reduce((sum, layer) => sum + layer.size, 0)

  /** Platform images worth reading: attestation manifests (platform unknown/unknown) are skipped. */
  const platformsOf = (index: ParsedManifest): Descriptor[] =>
    index.manifests.filter((entry) => entry.platform !== 'unknown/unknown').slice(0, MAX_PLATFORMS)

  return {
    async tagSummary(repository, tag) {
      try {
        const fetched = await registry.manifest(repository, tag)
        const key = `${repository}@${fetched.digest}`
        const manifest = manifests.get(key) ?? parseManifest(fetched)
        manifests.set(key, manifest)
        const summary: TagSummary = { tag, digest: manifest.digest, mediaType: manifest.mediaType, kind: manifest.kind, platforms: [] }
        if (manifest.kind === 'image') {
          summary.size = layerBytes(manifest)
          const config = await configOf(repository, manifest)
          if (config?.created) summary.created = config.created
          if (config?.platform) summary.platforms = [config.platform]
        } else if (manifest.kind === 'index') {
          const children = platformsOf(manifest)
          summary.platforms = children.map((child) => child.platform).filter((name): name is string => name !== undefined)
          const images = await mapLimit(children, 4, async (child) => {
            const image = await manifestByDigest(repository, child.digest)
            return { image, config: await configOf(repository, image) }
          })
          summary.size = images.reduce((sum, { image }) => sum + layerBytes(image), 0)
          const dates = images.map(({ config }) => config?.created).filter((date): date is string => date !== undefined).sort()
          if (dates.length > 0) summary.created = dates[dates.length - 1] as string
        }
        return summary
      } catch (error) {
        return { tag, digest: '', mediaType: '', kind: 'other', platforms: [], error: error instanceof Error ? error.message : String(error) }
      }
    },

    async detail(repository, reference) {
      const fetched = reference.includes(':') ? undefined : await registry.manifest(repository, reference)
      const manifest = fetched ? parseManifest(fetched) : await manifestByDigest(repository, reference)
      manifests.set(`${repository}@${manifest.digest}`, manifest)
      const config = await configOf(repository, manifest)
      const layers: LayerSummary[] = manifest.layers.map(({ digest, mediaType, size }) => ({ digest, mediaType, size }))
      const platformManifests: PlatformManifest[] = manifest.manifests.map(({ digest, mediaType, size, platform }) => ({ digest, mediaType, size, ...(platform ? { platform } : {}) }))
      return {
        repository,
        reference,
        digest: manifest.digest,
        mediaType: manifest.mediaType,
        kind: manifest.kind,
        manifestSize: manifest.bytes,
        ...(manifest.kind === 'image' ? { size: layerBytes(manifest) } : {}),
        layers,
        ...(config ? { config } : {}),
        manifests: platformManifests,
      }
    },
  }
}
