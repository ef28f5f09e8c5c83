// Blob upload sessions Portier holds in a registry's filesystem storage, laid out as distribution 2.8 lays out its own (storage/paths.go, blobwriter.go): `_uploads/<uuid>/data` and `startedat`, committed by a rename into `blobs/` and a layer link.
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat, utimes, writeFile, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Readable } from 'node:stream'
import { streamedBytes } from '../lib/young-gc.js'
import { isValidRepository } from '../registry/names.js'
import { blobDataPath, layerLinkPath, parseBlobDigest } from './paths.js'
import { EarlyWriteback } from './writeback.js'
import type { RunningHashPeers } from './hash-exchange.js'

/** The file that says Portier holds a session (the registry's own sessions have none and stay the registry's). */
export const SESSION_MARKER = 'portier'

/**
 * Bytes gathered from the client's body before one positioned write (16 KiB TLS records in, one syscall out).
 * Each upload in flight holds two (pour), so this is also the memory an upload costs: 128 KiB batches gave a
 * 16-upload peak 6-7 MiB lower than 256 KiB, with chunked uploads no slower (BENCHMARKS.md, "Peak RSS").
 */
export const WRITE_BATCH_BYTES = 128 * 1024

/** The file a write or commit holds on a session (see StorageUploads.lock). */
const LOCK_FILE = 'lock'
/** How often a held lock's time is refreshed, and after how long without that it counts as left by a crash. */
const LOCK_REFRESH_MS = 10_000
const LOCK_STALE_MS = 60_000

export interface SessionLock {
  release(): Promise<void>
}

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
  /** A write is feeding it: it covers more than `hashed` and is not to be finished. */
  writing: boolean
}

/** A running hash over nothing yet. */
function freshHash(): RunningHash {
  return { hash: createHash('sha256'), hashed: 0, writing: false }
}

/** Where a commit's sha256 came from: this process's running hash, another's (RunningHashPeers), or reading `data` again. */
export type DigestSource = 'running' | 'peer' | 'read'

export interface StorageUploadsOptions {
  /** The other processes (the workers of server.workers; instances on shared.redis): a commit asks the one that holds the running hash. */
  peers?: RunningHashPeers
  /** Told where each commit's sha256 came from. */
  digested?: (source: DigestSource) => void
}

/** In a session with peers: `<holder> <size>`, the process whose running hash covers `data` up to size. */
const HASHER_FILE = 'hasher'

export class StorageUploads {
  private readonly hashes = new Map<string, RunningHash>()

  constructor(private readonly options: StorageUploadsOptions = {}) {}

  /** The hex sha256 of a session's first `size` bytes, when this process holds it at exactly that size; given up once told. */
  takeRunning(dir: string, size: number): string | undefined {
    const running = this.hashes.get(dir)
    if (running === undefined || running.writing || running.hashed !== size) return undefined
    this.hashes.delete(dir)
    return running.hash.digest('hex')
  }

  /** Opens a session: an empty `data`, `startedat` as the registry writes it (its upload purger reads it), and the marker. */
  async create(root: string, repository: string): Promise<UploadPlace> {
    const place = uploadPlace(root, repository, randomUUID())
    if (place === undefined) throw new Error(`invalid repository name ${repository}`)
    await mkdir(place.dir, { recursive: true })
    // startedat first: the registry's purger takes a session without one for abandoned.
    await writeFile(join(place.dir, 'startedat'), new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'))
    await writeFile(join(place.dir, 'data'), '')
    await writeFile(join(place.dir, SESSION_MARKER), `${repository}\n`)
    this.hashes.set(place.dir, freshHash())
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

  /**
   * Takes the session for one write or commit: `_uploads/<uuid>/lock`, created exclusively, so workers
   * and instances sharing the storage take turns too. Resolves undefined while another request holds
   * it; a lock its holder stopped refreshing (a crash) is taken over after LOCK_STALE_MS. The release
   * removes it. While held, its time is refreshed.
   */
  async lock(place: UploadPlace): Promise<SessionLock | undefined> {
    const path = join(place.dir, LOCK_FILE)
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await writeFile(path, `${process.pid}\n`, { flag: 'wx' })
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code !== 'EEXIST') throw error
        const held = await stat(path).catch(() => undefined)
        if (held !== undefined && Date.now() - held.mtimeMs < LOCK_STALE_MS) return undefined
        await rm(path, { force: true })
        continue
      }
      const refresh = setInterval(() => {
        const now = new Date()
        utimes(path, now, now).catch(() => undefined)
      }, LOCK_REFRESH_MS)
      refresh.unref()
      return {
        release: async () => {
          clearInterval(refresh)
          await rm(path, { force: true })
        },
      }
    }
    return undefined
  }

  /**
   * Appends the body at `offset` (the size the session holds). `admit(count)` is told the bytes read
   * so far and throws to stop (the size limit). If the body does not arrive whole, or the limit stops
   * it, `data` is cut back to `offset`: the session is as it was before this request.
   */
  async append(place: UploadPlace, offset: number, body: Readable, admit: (received: number) => void): Promise<number> {
    const running = this.runningAt(place.dir, offset)
    if (running) running.writing = true
    let handle: FileHandle | undefined
    let writeback: EarlyWriteback | undefined
    let received: number
    try {
      handle = await open(join(place.dir, 'data'), 'r+')
      const early = new EarlyWriteback(handle, offset)
      writeback = early
      received = await pour(
        body,
        handle,
        offset,
        (chunk, total) => {
          admit(total)
          running?.hash.update(chunk)
        },
        (end) => early.written(end),
      )
      await early.settled()
      // As registry 2.8's filesystem driver closes a chunk: on disk before the answer says it is stored.
      await handle.datasync()
      if (running) {
        running.hashed = offset + received
        running.writing = false
        // The commit may reach another process: it asks this one instead of reading the data again.
        const peers = this.options.peers
        if (peers) await writeFile(join(place.dir, HASHER_FILE), `${peers.self} ${running.hashed}`).catch(() => undefined)
      }
      return received
    } catch (error) {
      this.hashes.delete(place.dir)
      await writeback?.settled().catch(() => undefined)
      // Nothing of a failed write stays; a session removed meanwhile (DELETE) has nothing to cut.
      await handle?.truncate(offset).catch(() => undefined)
      throw error
    } finally {
      await handle?.close().catch(() => undefined)
    }
  }

  /**
   * Checks the session's bytes against `digest` and stores them as that blob in the repository: the
   * data renamed into `blobs/` (or dropped when the blob is there already), then the layer link
   * written, then the session removed. A mismatch removes the session too, as registry 2.8 does.
   */
  async commit(place: UploadPlace, digest: string): Promise<Commit> {
    const parsed = parseBlobDigest(digest)
    if (parsed === undefined) return { kind: 'unsupported' }
    const data = join(place.dir, 'data')
    const size = (await stat(data)).size
    const { canonical, given } = await this.digestsOf(place.dir, data, size, parsed.algorithm)
    const actual = `${parsed.algorithm}:${given}`
    if (actual !== digest) {
      await this.cancel(place)
      return { kind: 'mismatch', actual }
    }
    // As registry 2.8 commits (blobwriter.go): the data under its canonical sha256 digest, and a link
    // for that digest and one for the digest the client named, both holding the canonical digest.
    const stored = `sha256:${canonical}`
    const blobPath = blobDataPath(place.root, stored)
    if (blobPath === undefined) return { kind: 'unsupported' }
    if (await isFile(blobPath)) {
      await rm(data, { force: true })
    } else {
      await mkdir(dirname(blobPath), { recursive: true })
      await rename(data, blobPath)
    }
    for (const name of stored === digest ? [stored] : [stored, digest]) {
      const linkPath = layerLinkPath(place.root, place.repository, name)
      if (linkPath === undefined) continue
      await mkdir(dirname(linkPath), { recursive: true })
      // Readers see the old link or the new one, never a half-written file.
      const written = `${linkPath}.${place.uuid}`
      await writeSynced(written, stored)
      await rename(written, linkPath)
    }
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
    if (running === undefined && offset === 0) running = freshHash()
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

  /** The running hash's sha256 from the process named in the session's hasher file, when that is another one and covers `size`. */
  private async askHolder(dir: string, size: number): Promise<string | undefined> {
    const peers = this.options.peers
    if (peers === undefined) return undefined
    const text = await readFile(join(dir, HASHER_FILE), 'utf8').catch(() => '')
    const [holder, hashed] = text.split(' ')
    if (holder === undefined || holder === '' || holder === peers.self || Number(hashed) !== size) return undefined
    return peers.ask(dir, size, holder)
  }

  /** The hex sha256 of `data` (from the running hash when it covers the whole file) and its hex digest in the client's algorithm, reading the file once when needed. */
  private async digestsOf(dir: string, data: string, size: number, algorithm: string): Promise<{ canonical: string; given: string }> {
    // The session ends here: a running hash that does not cover the whole file is dropped too.
    const own = this.takeRunning(dir, size)
    this.hashes.delete(dir)
    const peer = own === undefined ? await this.askHolder(dir, size) : undefined
    const known = own ?? peer
    this.options.digested?.(own !== undefined ? 'running' : peer !== undefined ? 'peer' : 'read')
    if (known !== undefined && algorithm === 'sha256') return { canonical: known, given: known }
    const sha256 = known === undefined ? createHash('sha256') : undefined
    const other = algorithm === 'sha256' ? undefined : createHash(algorithm)
    for await (const chunk of createReadStream(data, { highWaterMark: WRITE_BATCH_BYTES }) as AsyncIterable<Buffer>) {
      sha256?.update(chunk)
      other?.update(chunk)
    }
    const canonical = known ?? (sha256 as Hash).digest('hex')
    return { canonical, given: other ? other.digest('hex') : canonical }
  }
}

/**
 * Streams the body into the file from `position`, in flowing mode (so timeouts.min_rate sees a body
 * being read) with backpressure: one write in flight while the next batch is read; with a full batch
 * waiting as well, the body pauses until the write is done. `each` sees every chunk and the total so far
 * before it is written, and throws to stop; `written` is told the file offset each write reached, and throws to stop too. Resolves the bytes written; rejects with
 * WriteStopped('client') when the body fails or ends short (its connection went away).
 *
 * The chunks are copied into two batch buffers that take turns (one filling, one being written), so a
 * chunk read from the socket is garbage as soon as it is copied: held in a batch until its write is done,
 * the 16 KiB chunks lived long enough to reach V8's old generation, and their memory stayed until a full
 * collection (60 MiB of malloc heap with 16 uploads; BENCHMARKS.md, "Peak RSS").
 */
function pour(body: Readable, handle: FileHandle, position: number, each: (chunk: Buffer, total: number) => void, written: (end: number) => void): Promise<number> {
  // A client that left while the session was being looked up: its request emitted 'close' already and never will again.
  if (body.destroyed || body.readableAborted) return Promise.reject(new WriteStopped('client'))
  const size = batchSize(body)
  return new Promise<number>((resolve, reject) => {
    // The batch being filled, the one free for the next (after its write), and chunks read while both were busy.
    let filling: Buffer | undefined
    let spare: Buffer | undefined
    let filled = 0
    let held: Buffer[] = []
    let total = 0
    let at = position
    let writing = false
    let ended = false
    let settled = false
    // A failure met while a write was in flight, settled once that write is done.
    let pendingError: unknown
    const finish = (error?: unknown): void => {
      if (settled) return
      settled = true
      body.off('data', onData)
      body.off('end', onEnd)
      body.off('error', onError)
      body.off('close', onClose)
      if (error === undefined) resolve(total)
      else reject(error instanceof Error ? error : new Error('upload write failed'))
    }
    // A failure leaves the body paused for the gateway to answer and linger; a write may still be in flight, so settle after it.
    const fail = (error: unknown): void => {
      body.pause()
      ended = true
      if (writing) pendingError ??= error
      else finish(error)
    }
    /** Copies `chunk` into the batches, writing each one that fills; false when both batches are busy and the rest is held. */
    const take = (chunk: Buffer): boolean => {
      let rest = chunk
      while (rest.length > 0) {
        if (filled === size) {
          if (writing) {
            held.push(rest)
            return false
          }
          write()
        }
        if (filling === undefined) {
          filling = spare ?? Buffer.allocUnsafeSlow(size)
          spare = undefined
        }
        const copied = rest.copy(filling, filled)
        filled += copied
        rest = rest.subarray(copied)
      }
      if (filled === size && !writing) write()
      return true
    }
    const write = (): void => {
      if (writing || filled === 0 || filling === undefined) {
        if (!writing && ended) finish(pendingError)
        return
      }
      writing = true
      const batch = filling
      const length = filled
      const from = at
      at += length
      filling = undefined
      filled = 0
      writeAll(handle, batch, length, from).then(
        () => {
          writing = false
          spare = batch
          if (pendingError !== undefined) return finish(pendingError)
          try {
            written(from + length)
          } catch (error) {
            // An early flush failed (the disk): the rest of the body is not worth reading.
            body.pause()
            ended = true
            return finish(error)
          }
          const waiting = held
          held = []
          let room = true
          for (const chunk of waiting) room = take(chunk) && room
          if (ended) return write()
          if (room && held.length === 0) body.resume()
          if (filled === size) write()
        },
        (error: unknown) => {
          writing = false
          body.pause()
          ended = true
          finish(error)
        },
      )
    }
    const onData = (chunk: Buffer): void => {
      if (ended) return
      total += chunk.length
      streamedBytes(chunk.length)
      try {
        each(chunk, total)
      } catch (error) {
        fail(error)
        return
      }
      if (!take(chunk)) body.pause()
    }
    const onEnd = (): void => {
      // A request body cut short by its connection can also just end: an IncomingMessage says it was not complete.
      if ((body as { complete?: boolean }).complete === false) return fail(new WriteStopped('client'))
      ended = true
      write()
    }
    const onError = (error: unknown): void => fail(new WriteStopped('client', error))
    const onClose = (): void => {
      if (!ended) fail(new WriteStopped('client'))
    }
    body.on('data', onData)
    body.on('end', onEnd)
    body.on('error', onError)
    body.on('close', onClose)
    body.resume()
  })
}

/** WRITE_BATCH_BYTES, or the whole body when its Content-Length says it is smaller. */
function batchSize(body: Readable): number {
  const declared = Number((body as { headers?: Record<string, string | string[] | undefined> }).headers?.['content-length'])
  return Number.isSafeInteger(declared) && declared > 0 && declared < WRITE_BATCH_BYTES ? declared : WRITE_BATCH_BYTES
}

/** A small file written and synced, as the registry's driver writes a link. */
async function writeSynced(path: string, text: string): Promise<void> {
  const handle = await open(path, 'w')
  try {
    await handle.writeFile(text)
    await handle.datasync()
  } finally {
    await handle.close()
  }
}

async function writeAll(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<void> {
  let done = 0
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, done, length - done, position + done)
    done += bytesWritten
  }
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
