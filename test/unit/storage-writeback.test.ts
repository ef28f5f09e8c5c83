// Early flushes of an upload's file: one every WRITEBACK_BYTES written, one at a time in the whole process, and their errors passed on.
import t from 'tap'
import type { FileHandle } from 'node:fs/promises'
import { EarlyWriteback, WRITEBACK_BYTES } from '../../src/storage/writeback.js'

/** A file handle whose datasync calls are counted and finished (or failed) by the test. */
function handle(): { file: FileHandle; calls: () => number; finish: (error?: Error) => void } {
  const pending: Array<{ resolve: () => void; reject: (error: Error) => void }> = []
  let calls = 0
  const file = {
    datasync: () =>
      new Promise<void>((resolve, reject) => {
        calls++
        pending.push({ resolve, reject })
      }),
  } as unknown as FileHandle
  return {
    file,
    calls: () => calls,
    finish: (error) => {
      const next = pending.shift()
      if (next === undefined) throw new Error('no datasync in flight')
      if (error) next.reject(error)
      else next.resolve()
    },
  }
}

const MiB = 1024 * 1024
/** The flush starts in a promise chain: one turn of the event loop later. */
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

t.test('a flush starts once WRITEBACK_BYTES are written past where the last one started, never two at once', async (t) => {
  t.equal(WRITEBACK_BYTES, 4 * MiB)
  const h = handle()
  // Appended at 10 MiB: counted from there, not from the file's start.
  const early = new EarlyWriteback(h.file, 10 * MiB)
  early.written(10 * MiB + WRITEBACK_BYTES - 1)
  await tick()
  t.equal(h.calls(), 0, 'not before WRITEBACK_BYTES')
  early.written(10 * MiB + WRITEBACK_BYTES)
  await tick()
  t.equal(h.calls(), 1, 'at WRITEBACK_BYTES')
  early.written(10 * MiB + 3 * WRITEBACK_BYTES)
  await tick()
  t.equal(h.calls(), 1, 'not while one is in flight')
  h.finish()
  await early.settled()
  early.written(10 * MiB + 2 * WRITEBACK_BYTES - 1)
  await tick()
  t.equal(h.calls(), 1, 'the next counts from where the last one started')
  early.written(10 * MiB + 2 * WRITEBACK_BYTES)
  await tick()
  t.equal(h.calls(), 2)
  h.finish()
  await early.settled()
})

t.test('one early flush in the whole process: another upload waits for its next write', async (t) => {
  const a = handle()
  const b = handle()
  const first = new EarlyWriteback(a.file, 0)
  const second = new EarlyWriteback(b.file, 0)
  first.written(WRITEBACK_BYTES)
  await tick()
  second.written(WRITEBACK_BYTES)
  t.equal(a.calls(), 1)
  t.equal(b.calls(), 0, "the pool thread is taken by the other upload's flush")
  a.finish()
  await first.settled()
  second.written(WRITEBACK_BYTES + 128 * 1024)
  await tick()
  t.equal(b.calls(), 1, 'taken at its next write')
  b.finish()
  await second.settled()
})

t.test('settled() waits for the flush in flight and throws its error; the next written() throws it too, and no flush follows a failure', async (t) => {
  const h = handle()
  const early = new EarlyWriteback(h.file, 0)
  early.written(WRITEBACK_BYTES)
  await tick()
  let done = false
  const settled = early.settled().then(
    () => {
      done = true
    },
    (error: unknown) => {
      done = true
      throw error
    },
  )
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(done, 'still waiting for the flush')
  h.finish(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }))
  await t.rejects(settled, { code: 'EIO' }, "the flush's error, which the final datasync may not see again")
  t.throws(() => early.written(10 * WRITEBACK_BYTES), { code: 'EIO' }, 'the next write is told: the upload stops there')
  await tick()
  t.equal(h.calls(), 1, 'no flush after a failure')
  await t.rejects(early.settled(), { code: 'EIO' }, 'and every settled() after says so')

  // The process-wide slot was given back.
  const other = handle()
  const next = new EarlyWriteback(other.file, 0)
  next.written(WRITEBACK_BYTES)
  await tick()
  t.equal(other.calls(), 1)
  other.finish()
  await next.settled()
})
