// UploadOffsets: the newest state per upload session, and how a request on an older upload URL goes on (freshened, or 416).
import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { classify } from '../../src/registry/classify.js'
import { UploadOffsets } from '../../src/uploads/offsets.js'

const uuid = '6f1c2b1e-3a4d-4c5e-9f00-0123456789ab'
/** A distribution-style `_state`: 32 bytes of MAC, then the JSON with the offset. */
const state = (offset: number): string =>
  Buffer.concat([Buffer.alloc(32, 7), Buffer.from(JSON.stringify({ Name: 'a/b', UUID: uuid, Offset: offset, StartedAt: '2026-01-01T00:00:00Z' }))]).toString('base64url')
const location = (offset: number): string => `https://gw.example/v2/a/b/blobs/uploads/${uuid}?_state=${encodeURIComponent(state(offset))}`
const req = (headers: Record<string, string>): IncomingMessage => ({ headers }) as unknown as IncomingMessage
const on = (method: string, offset: number) => classify(method, `/v2/a/b/blobs/uploads/${uuid}?_state=${encodeURIComponent(state(offset))}`)

t.test('a request on the newest state, or on a session never seen, goes on as it is', async (t) => {
  const offsets = new UploadOffsets()
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-range': '0-9' })).kind, 'as-is', 'unknown session')
  offsets.note('up', location(0))
  offsets.note('up', location(10))
  t.equal(offsets.check('up', on('PATCH', 10), req({ 'content-range': '10-19' })).kind, 'as-is', 'the newest state')
  t.equal(offsets.check('other', on('PATCH', 0), req({ 'content-range': '0-9' })).kind, 'as-is', 'another upstream')
})

t.test('an older state: status and cancel are freshened, a chunk only when it starts at the real offset', async (t) => {
  const offsets = new UploadOffsets()
  offsets.note('up', location(0))
  offsets.note('up', location(10))
  offsets.note('up', location(5))
  const status = offsets.check('up', on('GET', 0), req({}))
  t.equal(status.kind, 'freshened', 'GET on the first URL')
  if (status.kind === 'freshened') {
    t.equal(status.request.params.get('_state'), state(10), 'carries the newest state (offsets only grow: the late 5 is ignored)')
    t.equal(status.latest.offset, 10)
  }
  t.equal(offsets.check('up', on('DELETE', 0), req({})).kind, 'freshened', 'DELETE')
  t.equal(offsets.check('up', on('PUT', 0), req({})).kind, 'freshened', 'PUT ?digest= without a body')
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-range': '0-9', 'content-length': '10' })).kind, 'refused', 'the previous chunk again')
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-length': '10' })).kind, 'refused', 'a chunk without Content-Range')
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-range': '20-29' })).kind, 'refused', 'a chunk after a gap')
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-range': '10-19' })).kind, 'freshened', 'a chunk that starts where the session ends')
  t.equal(offsets.check('up', on('PUT', 0), req({ 'content-range': '0-9', 'content-length': '10' })).kind, 'refused', 'a PUT carrying the previous chunk')
  offsets.forget('up', on('PUT', 10))
  t.equal(offsets.check('up', on('PATCH', 0), req({ 'content-range': '0-9' })).kind, 'as-is', 'a finished session is forgotten')
})

t.test('the number of remembered sessions is bounded, the oldest forgotten first', async (t) => {
  const offsets = new UploadOffsets(3)
  for (let index = 0; index < 5; index++) offsets.note('up', location(index).replace(uuid, `${uuid.slice(0, -1)}${index}`))
  t.equal(offsets.size, 3)
  offsets.note('up', 'https://gw.example/v2/a/b/manifests/latest')
  offsets.note('up', `https://gw.example/v2/a/b/blobs/uploads/${uuid}?_state=not-a-state`)
  t.equal(offsets.size, 3, 'Locations that are not upload states are ignored')
})
