// Builds OCI layouts with chosen image configs (env, entrypoint, labels, history), multi-platform indexes and OCI 1.1 artifacts (artifactType, subject), for UI and referrers tests.
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER_TAR, MT_OCI_MANIFEST, REF_NAME_ANNOTATION } from './oci.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface ImageSpec {
  platform?: Platform
  /** Sizes of random layers (kept small: they are held in memory). */
  layers: number[]
  /** Each layer a real tar archive holding one file of that many random bytes (for clients that unpack, e.g. podman). */
  tar?: boolean
  env?: string[]
  entrypoint?: string[]
  cmd?: string[]
  labels?: Record<string, string>
  created?: string
}

export interface BuiltImage {
  manifestDigest: string
  configDigest: string
  layerDigests: string[]
  layerSizes: number[]
  platform: Platform
}

export interface BuiltLayout {
  dir: string
  tag: string
  /** The digest the tag points at: the image manifest, or the index for several platforms. */
  digest: string
  mediaType: string
  images: BuiltImage[]
}

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

async function writeBlob(dir: string, bytes: Buffer): Promise<{ digest: string; size: number }> {
  const digest = digestOf(bytes)
  await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), bytes)
  return { digest, size: bytes.length }
}

/** A ustar archive of one regular file (header, data padded to 512, two zero blocks). */
function tarOf(name: string, data: Buffer): Buffer {
  const header = Buffer.alloc(512)
  const field = (offset: number, length: number, value: string): void => void header.write(value, offset, length, 'ascii')
  field(0, 100, name)
  field(100, 8, '0000644\0')
  field(108, 8, '0000000\0')
  field(116, 8, '0000000\0')
  field(124, 12, `${data.length.toString(8).padStart(11, '0')}\0`)
  field(136, 12, `${Math.floor(Date.now() / 1000).toString(8).padStart(11, '0')}\0`)
  field(148, 8, '        ')
  field(156, 1, '0')
  field(257, 6, 'ustar\0')
  field(263, 2, '00')
  let sum = 0
  for (const byte of header) sum += byte
  field(148, 8, `${sum.toString(8).padStart(6, '0')}\0 `)
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512)
  return Buffer.concat([header, data, padding, Buffer.alloc(1024)])
}

async function writeImage(dir: string, spec: ImageSpec): Promise<BuiltImage & { manifestSize: number }> {
  const platform = spec.platform ?? { os: 'linux', architecture: 'amd64' }
  const layers = []
  for (const [index, size] of spec.layers.entries()) layers.push(await writeBlob(dir, spec.tar ? tarOf(`layer-${index}.bin`, randomBytes(size)) : randomBytes(size)))
  const created = spec.created ?? new Date().toISOString()
  const config = {
    created,
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {
      Env: spec.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(spec.entrypoint ? { Entrypoint: spec.entrypoint } : {}),
      ...(spec.cmd ? { Cmd: spec.cmd } : {}),
      ...(spec.labels ? { Labels: spec.labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((layer) => layer.digest) },
    history: layers.map((_, index) => ({ created, created_by: `/bin/sh -c portier-test-step-${index + 1}` })),
  }
  const configBlob = await writeBlob(dir, Buffer.from(JSON.stringify(config)))
  const manifest = {
    schemaVersion: 2,
    mediaType: MT_OCI_MANIFEST,
    config: { mediaType: MT_OCI_CONFIG, ...configBlob },
    layers: layers.map((layer) => ({ mediaType: MT_OCI_LAYER_TAR, ...layer })),
  }
  const manifestBlob = await writeBlob(dir, Buffer.from(JSON.stringify(manifest)))
  return {
    manifestDigest: manifestBlob.digest,
    manifestSize: manifestBlob.size,
    configDigest: configBlob.digest,
    layerDigests: layers.map((layer) => layer.digest),
    layerSizes: layers.map((layer) => layer.size),
    platform,
  }
}

/** One image, or an OCI index over several when more than one spec is given, tagged `tag` in a new layout. */
export async function buildLayout(dir: string, tag: string, specs: ImageSpec[]): Promise<BuiltLayout> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  const images = []
  for (const spec of specs) images.push(await writeImage(dir, spec))
  let top: { mediaType: string; digest: string; size: number }
  if (images.length === 1) {
    const image = images[0] as (typeof images)[number]
    top = { mediaType: MT_OCI_MANIFEST, digest: image.manifestDigest, size: image.manifestSize }
  } else {
    const index = {
      schemaVersion: 2,
      mediaType: MT_OCI_INDEX,
      manifests: images.map((image) => ({ mediaType: MT_OCI_MANIFEST, digest: image.manifestDigest, size: image.manifestSize, platform: image.platform })),
    }
    top = { mediaType: MT_OCI_INDEX, ...(await writeBlob(dir, Buffer.from(JSON.stringify(index)))) }
  }
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests: [{ ...top, annotations: { [REF_NAME_ANNOTATION]: tag } }] }),
  )
  return {
    dir,
    tag,
    digest: top.digest,
    mediaType: top.mediaType,
    images: images.map(({ manifestSize: _size, ...image }) => image),
  }
}

export interface ArtifactSpec {
  /** The manifest's artifactType; omitted when undefined (the config's media type stands in for it). */
  artifactType?: string
  /** The config blob; default the OCI empty descriptor: `{}` as application/vnd.oci.empty.v1+json. */
  config?: { mediaType: string; data: Buffer }
  /** The manifest's `layers` (for a signature: the signature payload). */
  blobs: Array<{ mediaType: string; data: Buffer }>
  /** The manifest this artifact refers to. */
  subject: { mediaType: string; digest: string; size: number }
  annotations?: Record<string, string>
}

export interface BuiltArtifact {
  dir: string
  tag: string
  digest: string
  size: number
  /** The manifest's exact bytes. */
  manifest: Buffer
}

export const MT_OCI_EMPTY = 'application/vnd.oci.empty.v1+json'

/** An OCI 1.1 artifact manifest (artifactType, subject) made by hand, tagged `tag` in a new layout. */
export async function buildArtifactLayout(dir: string, tag: string, spec: ArtifactSpec): Promise<BuiltArtifact> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  const config = spec.config ?? { mediaType: MT_OCI_EMPTY, data: Buffer.from('{}') }
  const configBlob = await writeBlob(dir, config.data)
  const layers = []
  for (const blob of spec.blobs) layers.push({ mediaType: blob.mediaType, ...(await writeBlob(dir, blob.data)) })
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MT_OCI_MANIFEST,
      ...(spec.artifactType !== undefined ? { artifactType: spec.artifactType } : {}),
      config: { mediaType: config.mediaType, ...configBlob },
      layers,
      subject: spec.subject,
      ...(spec.annotations !== undefined ? { annotations: spec.annotations } : {}),
    }),
  )
  const top = await writeBlob(dir, manifest)
  await writeFile(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, mediaType: MT_OCI_INDEX, manifests: [{ mediaType: MT_OCI_MANIFEST, ...top, annotations: { [REF_NAME_ANNOTATION]: tag } }] }),
  )
  return { dir, tag, digest: top.digest, size: top.size, manifest }
}
