// The filesystem layout of registry 2.x storage (docker/registry/v2 under its rootdirectory): repositories, tags, manifest revisions and blobs, read and — for GC's temporary tags only — written in place.
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

const DIGEST = /^sha256:[0-9a-f]{64}$/
const HEX = /^[0-9a-f]{64}$/
/** Manifests and indexes are small; a "manifest" larger than this is not one GC needs to read. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

async function entries(path: string): Promise<string[]> {
  try {
    return await readdir(path)
  } catch (error) {
    if (isMissing(error)) return []
    throw error
  }
}

export class RegistryStorage {
  /** The registry's own tree inside its rootdirectory. */
  readonly v2: string

  constructor(readonly root: string) {
    this.v2 = join(root, 'docker', 'registry', 'v2')
  }

  repositoryDir(repository: string): string {
    return join(this.v2, 'repositories', ...repository.split('/'))
  }

  /** Every repository (a directory holding `_manifests`, `_layers` or `_uploads`), sorted. */
  async repositories(): Promise<string[]> {
    const found: string[] = []
    const walk = async (dir: string, prefix: string[]): Promise<void> => {
      for (const name of (await entries(dir)).sort()) {
        if (name.startsWith('_')) continue
        const path = join(dir, name)
        const children = await entries(path)
        // A repository being pushed to for the first time has _layers or _uploads and no _manifests yet.
        if (children.some((child) => child === '_manifests' || child === '_layers' || child === '_uploads')) found.push([...prefix, name].join('/'))
        // A repository may also be the parent of others (library and library/alpine).
        if (children.some((child) => !child.startsWith('_'))) await walk(path, [...prefix, name])
      }
    }
    await walk(join(this.v2, 'repositories'), [])
    return found
  }

  /** Tag → digest, from each tag's current/link (what the registry answers for the tag). */
  async tags(repository: string): Promise<Map<string, string>> {
    const dir = join(this.repositoryDir(repository), '_manifests', 'tags')
    const tags = new Map<string, string>()
    for (const tag of await entries(dir)) {
      try {
        const digest = (await readFile(join(dir, tag, 'current', 'link'), 'utf8')).trim()
        if (DIGEST.test(digest)) tags.set(tag, digest)
      } catch (error) {
        if (!isMissing(error)) throw error
      }
    }
    return tags
  }

  /** Every manifest digest the repository holds (tagged or not): its `_manifests/revisions`. */
  async revisions(repository: string): Promise<string[]> {
    const dir = join(this.repositoryDir(repository), '_manifests', 'revisions', 'sha256')
    return (await entries(dir)).filter((hex) => HEX.test(hex)).map((hex) => `sha256:${hex}`)
  }

  /** The repository's upload sessions with their data's size and time (`_uploads/<id>/data`); one committed or cancelled meanwhile is left out. */
  async uploadSessions(repository: string): Promise<Array<{ id: string; size: number; mtimeMs: number }>> {
    const dir = join(this.repositoryDir(repository), '_uploads')
    const sessions: Array<{ id: string; size: number; mtimeMs: number }> = []
    // Sessions only say whether writes are in flight: a directory that cannot be read holds none GC can wait for.
    for (const id of await readdir(dir).catch(() => [] as string[])) {
      const data = await stat(join(dir, id, 'data')).catch(() => undefined)
      if (data !== undefined) {
        sessions.push({ id, size: data.size, mtimeMs: data.mtimeMs })
        continue
      }
      // A commit moves `data` into `blobs/` first, then writes the layer link, then removes the session: in
      // between, the session's own directory (its time: when `data` left) is what says the upload is in flight.
      const session = await stat(join(dir, id)).catch(() => undefined)
      if (session?.isDirectory() === true) sessions.push({ id, size: 0, mtimeMs: session.mtimeMs })
    }
    return sessions
  }

  /** Whether the registry's tree is there but nothing was ever pushed into it (no `blobs/`, where registry 2.8's collector fails). */
  async neverPushedTo(): Promise<boolean> {
    const isDirectory = async (path: string): Promise<boolean> => (await stat(path).catch(() => undefined))?.isDirectory() === true
    return (await isDirectory(this.v2)) && !(await isDirectory(join(this.v2, 'blobs')))
  }

  async hasRevision(repository: string, digest: string): Promise<boolean> {
    return (await this.revisions(repository)).includes(digest)
  }

  blobPath(digest: string): string {
    const hex = digest.slice('sha256:'.length)
    return join(this.v2, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
  }

  /** A manifest's JSON, or undefined when its blob is missing, too large or not JSON. */
  async manifest(digest: string): Promise<unknown> {
    if (!DIGEST.test(digest)) return undefined
    let file
    try {
      file = await open(this.blobPath(digest), 'r')
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
    try {
      const { size } = await file.stat()
      if (size > MAX_MANIFEST_BYTES) return undefined
      const text = (await file.readFile()).toString('utf8')
      try {
        return JSON.parse(text) as unknown
      } catch {
        return undefined
      }
    } finally {
      await file.close()
    }
  }

  /** Writes a tag the way the registry does (current/link and the index entry). */
  async writeTag(repository: string, tag: string, digest: string): Promise<void> {
    const dir = join(this.repositoryDir(repository), '_manifests', 'tags', tag)
    await mkdir(join(dir, 'current'), { recursive: true })
    await writeFile(join(dir, 'current', 'link'), digest)
    const indexDir = join(dir, 'index', 'sha256', digest.slice('sha256:'.length))
    await mkdir(indexDir, { recursive: true })
    await writeFile(join(indexDir, 'link'), digest)
  }

  /** Removes a tag's directory (what the registry's own untag does). */
  async removeTag(repository: string, tag: string): Promise<void> {
    await rm(join(this.repositoryDir(repository), '_manifests', 'tags', tag), { recursive: true, force: true })
  }
}

/** A blob linked into a repository (`_layers/sha256/<hex>/link`) and when the link was written. */
export interface LinkedBlob {
  repository: string
  digest: string
  linkedAt: number
}

/** Blobs uploaded into (or mounted into) `repository`, with the time of their link. */
export async function linkedBlobs(storage: RegistryStorage, repository: string): Promise<LinkedBlob[]> {
  const dir = join(storage.repositoryDir(repository), '_layers', 'sha256')
  const found: LinkedBlob[] = []
  for (const hex of await entries(dir)) {
    if (!HEX.test(hex)) continue
    try {
      const stats = await stat(join(dir, hex, 'link'))
      found.push({ repository, digest: `sha256:${hex}`, linkedAt: stats.mtimeMs })
    } catch (error) {
      if (!isMissing(error)) throw error
    }
  }
  return found
}

/** The size of a blob's data, or undefined when it is not in storage. */
export async function blobSize(storage: RegistryStorage, digest: string): Promise<number | undefined> {
  try {
    return (await stat(storage.blobPath(digest))).size
  } catch (error) {
    if (isMissing(error)) return undefined
    throw error
  }
}

/** Writes a blob (a manifest GC makes for itself) the way the registry stores it; returns its digest. */
export async function writeBlob(storage: RegistryStorage, bytes: Buffer): Promise<string> {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const path = storage.blobPath(digest)
  await mkdir(dirname(path), { recursive: true })
  await writeFile(path, bytes)
  return digest
}

/** Links a manifest into a repository (`_manifests/revisions`), or removes that link. */
export async function writeRevision(storage: RegistryStorage, repository: string, digest: string): Promise<void> {
  const dir = join(storage.repositoryDir(repository), '_manifests', 'revisions', 'sha256', digest.slice('sha256:'.length))
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'link'), digest)
}

export async function removeRevision(storage: RegistryStorage, repository: string, digest: string): Promise<void> {
  await rm(join(storage.repositoryDir(repository), '_manifests', 'revisions', 'sha256', digest.slice('sha256:'.length)), { recursive: true, force: true })
}

/** Removes a blob GC wrote for itself (its data and directory). */
export async function removeBlob(storage: RegistryStorage, digest: string): Promise<void> {
  await rm(dirname(storage.blobPath(digest)), { recursive: true, force: true })
}
