// Where distribution 2.8 keeps a blob and a repository's link to it (storage/paths.go): digest and name checked strictly, nothing else from the URL reaches a path.
import { join } from 'node:path'
import { isValidRepository } from '../registry/names.js'

/** Algorithms whose blobs Portier reads from storage, with the exact length of their lowercase hex. */
const HEX_LENGTHS: ReadonlyMap<string, number> = new Map([
  ['sha256', 64],
  ['sha384', 96],
  ['sha512', 128],
])

const LOWER_HEX = /^[0-9a-f]+$/

/** A digest split into the two parts the paths are built from, or undefined when it is not one Portier reads itself. */
export interface BlobDigest {
  algorithm: string
  hex: string
}

export function parseBlobDigest(digest: string): BlobDigest | undefined {
  const colon = digest.indexOf(':')
  if (colon <= 0) return undefined
  const algorithm = digest.slice(0, colon)
  const hex = digest.slice(colon + 1)
  const length = HEX_LENGTHS.get(algorithm)
  if (length === undefined || hex.length !== length || !LOWER_HEX.test(hex)) return undefined
  return { algorithm, hex }
}

/** `<root>/docker/registry/v2/blobs/<alg>/<first 2 hex>/<hex>/data` (blobDataPathSpec). */
export function blobDataPath(root: string, digest: string): string | undefined {
  const parsed = parseBlobDigest(digest)
  if (parsed === undefined) return undefined
  return join(root, 'docker', 'registry', 'v2', 'blobs', parsed.algorithm, parsed.hex.slice(0, 2), parsed.hex, 'data')
}

/** `<root>/docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link` (layerLinkPathSpec). */
export function layerLinkPath(root: string, repository: string, digest: string): string | undefined {
  const parsed = parseBlobDigest(digest)
  // The name grammar has no `.` or `..` component, no leading slash, no backslash: checked again here, not trusted from the caller.
  if (parsed === undefined || !isValidRepository(repository)) return undefined
  return join(root, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'), '_layers', parsed.algorithm, parsed.hex, 'link')
}
