// The capped body reader (src/lib/body.ts): whole bodies, the caller's error past the cap across chunks, stream errors, early close, prefixes.
import t from 'tap'
import { PassThrough, Readable } from 'node:stream'
import { BodyIncomplete, parseJson, readCapped, readPrefix } from '../../src/lib/body.js'

class TooLarge extends Error {
  constructor(readonly bytes: number) {
    super(`too large: ${bytes}`)
  }
}
const tooLarge = (bytes: number): Error => new TooLarge(bytes)

t.test('reads a body of exactly the cap, chunk by chunk', async (t) => {
  const seen: number[] = []
  const body = await readCapped(Readable.from([Buffer.from('abc'), Buffer.from('de')]), { maxBytes: 5, tooLarge, rest: 'destroy', onChunk: (chunk) => seen.push(chunk.length) })
  t.equal(body.toString(), 'abcde')
  t.same(seen, [3, 2], 'onChunk sees each chunk kept')
})

t.test('one byte past the cap, over several chunks, fails with the caller error; rest: discard reads the rest and drops it', async (t) => {
  const stream = new PassThrough()
  const reading = readCapped(stream, { maxBytes: 5, tooLarge, rest: 'discard' })
  stream.write('abc')
  stream.write('def')
  const error = await reading.catch((caught: unknown) => caught)
  t.type(error, TooLarge)
  t.equal((error as TooLarge).bytes, 6)
  t.notOk(stream.destroyed, 'a client request stays open so its answer can be sent')
  stream.end('more bytes the client still sends')
  await new Promise((resolve) => stream.once('end', resolve))
  t.ok(stream.readableEnded, 'the rest was read to the end')
  stream.destroy(new Error('later error'))
  await new Promise((resolve) => setImmediate(resolve))
  t.pass('an error after the read is handled (no uncaught exception)')
})

t.test('rest: destroy ends an overlong upstream body', async (t) => {
  const stream = new PassThrough()
  const reading = readCapped(stream, { maxBytes: 2, tooLarge, rest: 'destroy' })
  stream.write('abc')
  t.type(await reading.catch((caught: unknown) => caught), TooLarge)
  t.ok(stream.destroyed)
})

t.test('a stream error rejects with that error', async (t) => {
  const stream = new PassThrough()
  const reading = readCapped(stream, { maxBytes: 100, tooLarge, rest: 'destroy' })
  stream.write('ab')
  stream.destroy(new Error('reset'))
  await t.rejects(reading, { message: 'reset' })
})

t.test('a close before the end rejects with BodyIncomplete', async (t) => {
  const stream = new PassThrough()
  const reading = readCapped(stream, { maxBytes: 100, tooLarge, rest: 'destroy' })
  stream.write('ab')
  await new Promise((resolve) => setImmediate(resolve))
  stream.destroy()
  const error = await reading.catch((caught: unknown) => caught)
  t.type(error, BodyIncomplete)
  t.equal((error as BodyIncomplete).bytes, 2)
})

t.test('an empty body is an empty buffer', async (t) => {
  const stream = new PassThrough()
  stream.end()
  t.equal((await readCapped(stream, { maxBytes: 10, tooLarge, rest: 'destroy' })).length, 0)
})

t.test('readPrefix keeps the first bytes and counts all of them', async (t) => {
  const stream = Readable.from([Buffer.from('abcd'), Buffer.from('efgh'), Buffer.from('ij')])
  const { head, bytes } = await readPrefix(stream, 6)
  t.equal(head.toString(), 'abcdef')
  t.equal(bytes, 10)
  t.ok(stream.readableEnded, 'read to the end')
  const small = await readPrefix(Readable.from([Buffer.from('ab')]), 6)
  t.equal(small.head.toString(), 'ab')
  t.equal(small.bytes, 2)
})

t.test('parseJson: JSON or the caller error', async (t) => {
  t.same(parseJson(Buffer.from('{"a":1}'), () => new Error('bad')), { a: 1 })
  t.throws(() => parseJson(Buffer.from('{'), () => new Error('bad')), { message: 'bad' })
})
