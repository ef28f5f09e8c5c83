// Opens a blob from a registry's filesystem storage only when the repository links it, exactly as distribution 2.8 resolves a layer link (linkedblobstore.go).
import { open, type FileHandle } from 'node:fs/promises'
import { blobDataPath, layerLinkPath } from './paths.js'

/** A link holds a digest (at most "sha512:" and 128 hex); anything longer is not a link distribution wrote. */
const LINK_MAX_BYTES = 256

/** Why the registry answers instead: a bounded label for metrics. */
export type FallbackReason = 'not_readable' | 'no_link' | 'other_link' | 'no_file' | 'io_error'

export type LinkedBlob =
  /** `digest`: what the data is stored under, which the registry's answer names (the sha256 one for a sha384/sha512 link). */
  | { kind: 'open'; handle: FileHandle; size: number; digest: string }
  | { kind: 'fallback'; reason: FallbackReason; error?: unknown }

/**
 * The repository's `_layers/<alg>/<hex>/link` must exist and hold the digest itself, or, for a sha384
 * or sha512 digest, the sha256 digest its data is stored under (registry 2.8 writes that pair when a
 * blob is pushed under such a digest, and follows it when reading; any other link to another digest
 * is left to the registry). Then the data file is opened and fstat'ed: what is sent comes from this
 * open file, so a blob deleted while it is sent still arrives whole.
 */
export async function openLinkedBlob(root: string, repository: string, digest: string): Promise<LinkedBlob> {
  const link = layerLinkPath(root, repository, digest)
  if (link === undefined || blobDataPath(root, digest) === undefined) return { kind: 'fallback', reason: 'not_readable' }
  let target: string
  try {
    target = await readSmall(link)
  } catch (error) {
    return missing(error) ? { kind: 'fallback', reason: 'no_link' } : { kind: 'fallback', reason: 'io_error', error }
  }
  const canonical = target === digest || (!digest.startsWith('sha256:') && target.startsWith('sha256:'))
  const data = canonical ? blobDataPath(root, target) : undefined
  if (data === undefined) return { kind: 'fallback', reason: 'other_link' }
  let handle: FileHandle
  try {
    handle = await open(data, 'r')
  } catch (error) {
    return missing(error) ? { kind: 'fallback', reason: 'no_file' } : { kind: 'fallback', reason: 'io_error', error }
  }
  try {
    const stat = await handle.stat()
    if (!stat.isFile()) {
      await handle.close()
      return { kind: 'fallback', reason: 'no_file' }
    }
    return { kind: 'open', handle, size: stat.size, digest: target }
  } catch (error) {
    await handle.close().catch(() => undefined)
    return { kind: 'fallback', reason: 'io_error', error }
  }
}

async function readSmall(path: string): Promise<string> {
  const handle = await open(path, 'r')
  try {
    const buffer = Buffer.alloc(LINK_MAX_BYTES + 1)
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0)
    return buffer.subarray(0, bytesRead).toString('utf8')
  } finally {
    await handle.close()
  }
}

/** Nothing there (or a path component that is a file): the registry would say it does not know the blob. */
function missing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR'
}
