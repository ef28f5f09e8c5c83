// Upload sessions held in a registry's storage: laid out as distribution 2.8 lays out its own, appended at the stored size, cut back when a body does not arrive whole, committed by digest into blobs/ and a layer link.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { blobDataPath, layerLinkPath } from '../../src/storage/paths.js'
import { SESSION_MARKER, StorageUploads, uploadPlace, WRITE_BATCH_BYTES, WriteStopped } from '../../src/storage/upload-store.js'

function root(): string {
  const dir = mkdtempSync(join(tmpdir(), 'portier-upload-store-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const digestOf = (bytes: Buffer, algorithm = 'sha256'): string => `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
const nothing = (): void => undefined

/** A body of these chunks that then fails, as a request body does when its client goes away. */
function broken(chunks: Buffer[]): Readable {
  let index = 0
  return new Readable({
    read() {
      const next = chunks[index++]
      if (next) this.push(next)
      else this.destroy(new Error('aborted'))
    },
  })
}

t.test('a session: created as the registry lays one out, appended in chunks, committed into blobs/ and the link', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'team/app')
  t.match(place.dir, join(storage, 'docker/registry/v2/repositories/team/app/_uploads/'))
  t.same(readdirSync(place.dir).sort(), ['data', SESSION_MARKER, 'startedat'].sort())
  t.match(readFileSync(join(place.dir, 'startedat'), 'utf8'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'startedat in RFC 3339, as the upload purger reads it')
  t.equal(await uploads.size(place), 0)

  const first = Buffer.alloc(700_000, 1)
  const second = Buffer.alloc(300_001, 2)
  t.equal(await uploads.append(place, 0, Readable.from([first.subarray(0, 100), first.subarray(100)]), nothing), first.length)
  t.equal(await uploads.size(place), first.length)
  t.equal(await uploads.append(place, first.length, Readable.from([second]), nothing), second.length)
  const whole = Buffer.concat([first, second])
  const digest = digestOf(whole)

  t.same(await uploads.commit(place, digest), { kind: 'committed', size: whole.length })
  t.same(readFileSync(blobDataPath(storage, digest) as string), whole, 'the blob\'s data holds the bytes')
  t.equal(readFileSync(layerLinkPath(storage, 'team/app', digest) as string, 'utf8'), digest, 'the link names the digest')
  t.notOk(existsSync(place.dir), 'the session is gone')
  t.same(readdirSync(join(storage, 'docker/registry/v2/repositories/team/app/_uploads')), [])
})

t.test('a body in chunks of every size is written whole and in order, through two batch buffers that take turns', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  // Across batch boundaries, larger than a batch, and tiny ones: random bytes, so a chunk written twice or out of order shows.
  const batch = WRITE_BATCH_BYTES
  const chunks = [1, 16_384, batch - 1, batch + 1, 700_000, 3, 65_536, 2 * batch, 100, batch].map((size) => randomBytes(size))
  const unchanged = Object.getOwnPropertyDescriptor(Buffer, 'allocUnsafeSlow') as PropertyDescriptor
  const restore = (): void => {
    Object.defineProperty(Buffer, 'allocUnsafeSlow', unchanged)
  }
  const original = Buffer.allocUnsafeSlow.bind(Buffer)
  let batches = 0
  Buffer.allocUnsafeSlow = (size: number): Buffer<ArrayBuffer> => {
    if (size === batch) batches++
    return original(size)
  }
  t.teardown(restore)
  const whole = Buffer.concat(chunks)
  t.equal(await uploads.append(place, 0, Readable.from(chunks), nothing), whole.length)
  restore()
  t.ok(readFileSync(join(place.dir, 'data')).equals(whole), 'the data file holds the body byte for byte')
  t.equal(batches, 2, `two batches of ${batch / 1024} KiB for a ${(whole.length / 1e6).toFixed(1)} MB body, reused: chunks are copied, not held`)

  // A body that declares a small Content-Length gets batches of that size, and is still written whole when it sends more.
  const more = randomBytes(5000)
  const body = Object.assign(Readable.from([more.subarray(0, 1), more.subarray(1, 2500), more.subarray(2500)]), { headers: { 'content-length': '1000' } })
  t.equal(await uploads.append(place, whole.length, body, nothing), more.length)
  t.ok(readFileSync(join(place.dir, 'data')).equals(Buffer.concat([whole, more])), 'appended at the offset, whole')
  t.same(await uploads.commit(place, digestOf(Buffer.concat([whole, more]))), { kind: 'committed', size: whole.length + more.length })
})

t.test('another instance (no running hash) reads the bytes again at commit; sha512 too', async (t) => {
  const storage = root()
  const place = await new StorageUploads().create(storage, 'a/b')
  const bytes = Buffer.from('hello from another instance')
  await new StorageUploads().append(place, 0, Readable.from([bytes.subarray(0, 5)]), nothing)
  await new StorageUploads().append(place, 5, Readable.from([bytes.subarray(5)]), nothing)
  t.same(await new StorageUploads().commit(place, digestOf(bytes)), { kind: 'committed', size: bytes.length })

  const other = await new StorageUploads().create(storage, 'a/b')
  await new StorageUploads().append(other, 0, Readable.from([bytes]), nothing)
  t.same(await new StorageUploads().commit(other, digestOf(bytes, 'sha512')), { kind: 'committed', size: bytes.length })
  // As registry 2.8 stores it: the data under the canonical sha256 digest, both links holding that digest.
  t.notOk(existsSync(blobDataPath(storage, digestOf(bytes, 'sha512')) as string), 'no data under sha512')
  t.same(readFileSync(blobDataPath(storage, digestOf(bytes)) as string), bytes)
  t.equal(readFileSync(layerLinkPath(storage, 'a/b', digestOf(bytes, 'sha512')) as string, 'utf8'), digestOf(bytes), 'the sha512 link names the sha256 digest')
  t.equal(readFileSync(layerLinkPath(storage, 'a/b', digestOf(bytes)) as string, 'utf8'), digestOf(bytes))

  const running = new StorageUploads()
  const third = await running.create(storage, 'e/f')
  await running.append(third, 0, Readable.from([bytes]), nothing)
  t.same(await running.commit(third, digestOf(bytes, 'sha512')), { kind: 'committed', size: bytes.length }, 'sha512 with the running sha256 at hand')
  t.equal(readFileSync(layerLinkPath(storage, 'e/f', digestOf(bytes, 'sha512')) as string, 'utf8'), digestOf(bytes))
})

t.test('a body that breaks off leaves the session as it was: cut back, and the running hash not trusted', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  const kept = Buffer.alloc(1000, 7)
  await uploads.append(place, 0, Readable.from([kept]), nothing)
  const error = await uploads.append(place, kept.length, broken([Buffer.alloc(400_000, 9)]), nothing).catch((caught: unknown) => caught)
  t.ok(error instanceof WriteStopped && error.reason === 'client', 'the client stopped it')
  t.equal(statSync(join(place.dir, 'data')).size, kept.length, 'data cut back to where the request began')
  const rest = Buffer.alloc(5000, 3)
  await uploads.append(place, kept.length, Readable.from([rest]), nothing)
  t.same(await uploads.commit(place, digestOf(Buffer.concat([kept, rest]))), { kind: 'committed', size: kept.length + rest.length })
})

t.test('the size limit stops a write part way and cuts it back', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  const stop = (received: number): void => {
    if (received > 1000) throw new WriteStopped('limit')
  }
  const error = await uploads.append(place, 0, Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), stop).catch((caught: unknown) => caught)
  t.ok(error instanceof WriteStopped && error.reason === 'limit')
  t.equal(await uploads.size(place), 0)
})

t.test('a digest that does not match removes the session; an unsupported algorithm is said; a blob stored already is reused', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const bytes = Buffer.from('some layer')
  const place = await uploads.create(storage, 'a/b')
  await uploads.append(place, 0, Readable.from([bytes]), nothing)
  const wrong = digestOf(Buffer.from('other'))
  t.same(await uploads.commit(place, wrong), { kind: 'mismatch', actual: digestOf(bytes) })
  t.notOk(existsSync(place.dir), 'removed, as registry 2.8 cancels a session whose commit failed')
  t.notOk(existsSync(blobDataPath(storage, wrong) as string))
  t.equal(await uploads.size(place), undefined, 'unknown now')

  const again = await uploads.create(storage, 'a/b')
  t.same(await uploads.commit(again, `blake3:${'0'.repeat(64)}`), { kind: 'unsupported' }, 'an algorithm registry 2.8 does not know')

  const first = await uploads.create(storage, 'a/b')
  await uploads.append(first, 0, Readable.from([bytes]), nothing)
  await uploads.commit(first, digestOf(bytes))
  const before = statSync(blobDataPath(storage, digestOf(bytes)) as string).ino
  const second = await uploads.create(storage, 'c/d')
  await uploads.append(second, 0, Readable.from([bytes]), nothing)
  t.same(await uploads.commit(second, digestOf(bytes)), { kind: 'committed', size: bytes.length })
  t.equal(statSync(blobDataPath(storage, digestOf(bytes)) as string).ino, before, 'the stored blob is kept, not replaced')
  t.equal(readFileSync(layerLinkPath(storage, 'c/d', digestOf(bytes)) as string, 'utf8'), digestOf(bytes), 'and linked in the second repository')
  t.notOk(existsSync(second.dir))
})

t.test('only Portier\'s sessions: a registry session (no marker) and ids that are no v4 UUID are not Portier\'s', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  rmSync(join(place.dir, SESSION_MARKER))
  t.equal(await uploads.size(place), undefined, 'a session without the marker is the registry\'s')
  t.equal(uploadPlace(storage, 'a/b', '../../../etc'), undefined)
  t.equal(uploadPlace(storage, 'a/b', 'AAAAAAAA-0000-4000-8000-000000000000'), undefined)
  t.equal(uploadPlace(storage, '../x', '00000000-0000-4000-8000-000000000000'), undefined)
  t.ok(uploadPlace(storage, 'a/b', '00000000-0000-4000-8000-000000000000'))
})

t.test('a write or commit holds the session: one at a time, across processes (a lock file), a crashed holder\'s lock taken over', async (t) => {
  const storage = root()
  const place = await new StorageUploads().create(storage, 'a/b')
  const first = await new StorageUploads().lock(place)
  t.ok(first, 'taken')
  t.equal(await new StorageUploads().lock(place), undefined, 'another worker or instance waits its turn')
  await first?.release()
  const second = await new StorageUploads().lock(place)
  t.ok(second, 'free again after the release')
  // A holder that died leaves its lock unrefreshed: after a minute it is taken over.
  const old = new Date(Date.now() - 5 * 60_000)
  utimesSync(join(place.dir, 'lock'), old, old)
  const third = await new StorageUploads().lock(place)
  t.ok(third, 'a stale lock is taken over')
  await third?.release()
  t.notOk(existsSync(join(place.dir, 'lock')))
})

t.test('a body destroyed before it is read (its client left during the lookups) is a client stop, at once', async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  const body = Readable.from([Buffer.alloc(10)])
  body.destroy()
  const error = await uploads.append(place, 0, body, nothing).catch((caught: unknown) => caught)
  t.ok(error instanceof WriteStopped && error.reason === 'client')
  t.equal(await uploads.size(place), 0)
})

t.test("the file is flushed while the body arrives, and an early flush's error fails the write and cuts it back", async (t) => {
  const storage = root()
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'a/b')
  // Every FileHandle's datasync, counted: when it ran, against how much of the body had been read.
  const probe = await open(join(place.dir, 'data'), 'r')
  const proto = Object.getPrototypeOf(probe) as { datasync: (this: FileHandle) => Promise<void> }
  await probe.close()
  const original = proto.datasync
  t.teardown(() => {
    proto.datasync = original
  })
  let read = 0
  const seenAt: number[] = []
  let failNext = false
  proto.datasync = function datasync(this: FileHandle): Promise<void> {
    seenAt.push(read)
    if (failNext) {
      failNext = false
      return Promise.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))
    }
    return original.call(this)
  }
  /** 20 MiB in 256 KiB chunks, a turn of the event loop apart, so writes finish while the body still arrives. */
  const slowBody = (seed: number): Readable => {
    let sent = 0
    return new Readable({
      read() {
        if (sent === 80) return void this.push(null)
        setImmediate(() => {
          sent++
          read += 256 * 1024
          this.push(Buffer.alloc(256 * 1024, seed + (sent % 7)))
        })
      },
    })
  }
  const body = 20 * 1024 * 1024
  t.equal(await uploads.append(place, 0, slowBody(1), nothing), body)
  const early = seenAt.filter((at) => at < body)
  t.ok(early.length >= 2, `flushed ${early.length} times before the body's end (at ${early.map((at) => at / 1024 / 1024).join(', ')} MiB)`)
  t.equal(seenAt.at(-1), body, 'and once after it, before the answer')

  read = 0
  seenAt.length = 0
  failNext = true
  const error = await uploads.append(place, body, slowBody(2), nothing).catch((caught: unknown) => caught)
  const readWhenFailed = read
  t.match(error, { code: 'EIO' }, "the early flush's error is the write's error")
  t.ok(readWhenFailed < body / 2, `the upload stopped at its next write, without reading the rest of the body (${readWhenFailed / 1024 / 1024} of 20 MiB read)`)
  t.ok((seenAt[0] ?? body) < body, `the failed flush was an early one (at ${(seenAt[0] ?? 0) / 1024 / 1024} MiB), and the final one succeeded or never ran`)
  t.equal(await uploads.size(place), body, 'the session is cut back to where the request began')
})
