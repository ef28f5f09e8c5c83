// Blob upload sessions Portier holds in a registry's filesystem storage, laid out as distribution 2.8 lays out its own (storage/paths.go, blobwriter.go): `_uploads/<uuid>/data` and `startedat`, committed by a rename into `blobs/` and a layer link.
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, rename, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { isValidRepository } from '../registry/names.js'
import { blobDataPath, layerLinkPath, parseBlobDigest } from './paths.js'

/** The file that says Portier holds a session (the registry's own sessions have none and stay the registry's). */
export const SESSION_MARKER = 'portier'

/** Bytes gathered from the client's body before one positioned write (16 KiB TLS records in, one syscall out). */
const WRITE_BATCH_BYTES = 256 * 1024

/** Running hashes kept for sessions in progress; past this, the least recently written one is read again at commit. */
const MAX_RUNNING_HASHES = 4096

/** Portier's session ids: `randomUUID()` (lowercase v4); nothing else from a URL reaches a path. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

/** One session's place in storage. */
export interface UploadPlace {
  root: string
  repository: string
  uuid: string
  /** `<root>/docker/registry/v2/repositories/<name>/_uploads/<uuid>` */
  dir: string
}

export function uploadPlace(root: string, repository: string, uuid: string): UploadPlace | undefined {
  if (!isValidRepository(repository) || !SESSION_ID.test(uuid)) return undefined
  return { root, repository, uuid, dir: join(root, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'), '_uploads', uuid) }
}

/** Why a write stopped before its body ended. */
export class WriteStopped extends Error {
  constructor(readonly reason: 'limit' | 'client', cause?: unknown) {
    super(reason === 'limit' ? 'upload size limit crossed' : 'client closed the request body', { cause })
  }
}

/** What a commit found. */
export type Commit = { kind: 'committed'; size: number } | { kind: 'mismatch'; actual: string } | { kind: 'unsupported' }

interface RunningHash {
  /** sha256 over the first `hashed` bytes of `data`. */
  hash: Hash
  hashed: number
}

export class StorageUploads {
  private readonly hashes = new Map<string, RunningHash>()
  private readonly writing = new Set<string>()

  /** Opens a session: an empty `data`, `startedat` as the registry writes it (its upload purger reads it), and the marker. */
  async create(root: string, repository: string): Promise<UploadPlace> {
    const place = uploadPlace(root, repository, randomUUID())
    if (place === undefined) throw new Error(`invalid repository name ${repository}`)
    await mkdir(place.dir, { recursive: true })
    await writeFile(join(place.dir, 'data'), '')
    await writeFile(join(place.dir, 'startedat'), new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'))
    await writeFile(join(place.dir, SESSION_MARKER), `${repository}\n`)
    this.hashes.set(place.dir, { hash: createHash('sha256'), hashed: 0 })
    return place
  }

  /** Bytes the session holds, or undefined when Portier holds no session by that id here. */
  async size(place: UploadPlace): Promise<number | undefined> {
    try {
      await stat(join(place.dir, SESSION_MARKER))
      return (await stat(join(place.dir, 'data'))).size
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  /** Whether a write into the session is in flight at this instance. */
  busy(place: UploadPlace): boolean {
    return this.writing.has(place.dir)
  }

  /**
   * Appends the body at `offset` (the size the session holds). `admit(count)` is told the bytes read
   * so far and throws to stop (the size limit). If the body does not arrive whole, or the limit stops
   * it, `data` is cut back to `offset`: the session is as it was before this request.
   */
  async append(place: UploadPlace, offset: number, body: Readable, admit: (received: number) => void): Promise<number> {
    this.writing.add(place.dir)
    const running = this.runningAt(place.dir, offset)
    let handle: FileHandle | undefined
    let received = 0
    try {
      handle = await open(join(place.dir, 'data'), 'r+')
      const file = handle
      let batch: Buffer[] = []
      let batchBytes = 0
      let position = offset
      // One write in flight while the next batch is read: the disk and the socket work at once.
      let pending: Promise<void> = Promise.resolve()
      const flush = async (): Promise<void> => {
        if (batchBytes === 0) return
        await pending
        const buffers = batch
        const at = position
        position += batchBytes
        batch = []
        batchBytes = 0
        pending = writeAll(file, buffers, at)
        // Its failure is awaited below; until then it must not count as unhandled.
        pending.catch(() => undefined)
      }
      const chunks = (body as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
      for (;;) {
        let step: IteratorResult<Buffer>
        try {
          step = await chunks.next()
        } catch (error) {
          throw new WriteStopped('client', error)
        }
        if (step.done === true) break
        const chunk = step.value
        received += chunk.length
        admit(received)
        running?.hash.update(chunk)
        batch.push(chunk)
        batchBytes += chunk.length
        if (batchBytes >= WRITE_BATCH_BYTES) await flush()
      }
      // A request body cut short by its connection can also just end: an IncomingMessage says it was not complete.
      if ((body as { complete?: boolean }).complete === false) throw new WriteStopped('client')
      await flush()
      await pending
      if (running) running.hashed = offset + received
      return received
    } catch (error) {
      this.hashes.delete(place.dir)
      // Nothing of a failed write stays; a session removed meanwhile (DELETE) has nothing to cut.
      await handle?.truncate(offset).catch(() => undefined)
      throw error
    } finally {
      await handle?.close().catch(() => undefined)
      this.writing.delete(place.dir)
    }
  }

  /**
   * Checks the session's bytes against `digest` and stores them as that blob in the repository: the
   * data renamed into `blobs/` (or dropped when the blob is there already), then the layer link
   * written, then the session removed. A mismatch removes the session too, as registry 2.8 does.
   */
  async commit(place: UploadPlace, digest: string): Promise<Commit> {
    const parsed = parseBlobDigest(digest)
    const blobPath = blobDataPath(place.root, digest)
    const linkPath = layerLinkPath(place.root, place.repository, digest)
    if (parsed === undefined || blobPath === undefined || linkPath === undefined) return { kind: 'unsupported' }
    const data = join(place.dir, 'data')
    const size = (await stat(data)).size
    const actual = `${parsed.algorithm}:${await this.digestOf(place.dir, data, size, parsed.algorithm)}`
    if (actual !== digest) {
      await this.cancel(place)
      return { kind: 'mismatch', actual }
    }
    if (await isFile(blobPath)) {
      await rm(data, { force: true })
    } else {
      await mkdir(dirname(blobPath), { recursive: true })
      await rename(data, blobPath)
    }
    await mkdir(dirname(linkPath), { recursive: true })
    // Readers see the old link or the new one, never a half-written file.
    const written = `${linkPath}.${place.uuid}`
    await writeFile(written, digest)
    await rename(written, linkPath)
    await this.cancel(place)
    return { kind: 'committed', size }
  }

  /** Removes the session and what it held. */
  async cancel(place: UploadPlace): Promise<void> {
    this.hashes.delete(place.dir)
    await rm(place.dir, { recursive: true, force: true })
  }

  /** The running hash to continue at `offset`, or undefined when the bytes before it must be read again at commit. */
  private runningAt(dir: string, offset: number): RunningHash | undefined {
    let running = this.hashes.get(dir)
    if (running === undefined && offset === 0) running = { hash: createHash('sha256'), hashed: 0 }
    if (running === undefined || running.hashed !== offset) {
      this.hashes.delete(dir)
      return undefined
    }
    // Most recently written last: the oldest is the first to go.
    this.hashes.delete(dir)
    this.hashes.set(dir, running)
    while (this.hashes.size > MAX_RUNNING_HASHES) {
      const oldest = this.hashes.keys().next().value
      if (oldest === undefined) break
      this.hashes.delete(oldest)
    }
    return running
  }

  /** The hex digest of `data`: from the running hash when it covers the whole file, else read again. */
  private async digestOf(dir: string, data: string, size: number, algorithm: string): Promise<string> {
    const running = this.hashes.get(dir)
    this.hashes.delete(dir)
    if (algorithm === 'sha256' && running !== undefined && running.hashed === size) return running.hash.digest('hex')
    const hash = createHash(algorithm)
    for await (const chunk of createReadStream(data, { highWaterMark: WRITE_BATCH_BYTES }) as AsyncIterable<Buffer>) hash.update(chunk)
    return hash.digest('hex')
  }
}

async function writeAll(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let rest = buffers
  let at = position
  for (;;) {
    const total = rest.reduce((sum, buffer) => sum + buffer.length, 0)
    if (total === 0) return
    const { bytesWritten } = await handle.writev(rest, at)
    if (bytesWritten === total) return
    at += bytesWritten
    rest = skip(rest, bytesWritten)
  }
}

/** The buffers after their first `count` bytes. */
function skip(buffers: Buffer[], count: number): Buffer[] {
  let left = count
  const out: Buffer[] = []
  for (const buffer of buffers) {
    if (left >= buffer.length) {
      left -= buffer.length
      continue
    }
    out.push(left > 0 ? buffer.subarray(left) : buffer)
    left = 0
  }
  return out
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch (error) {
    if (isMissing(error)) return false
    throw error
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOENT' || code === 'ENOTDIR'
}
