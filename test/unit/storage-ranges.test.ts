// malformedRange: the Range headers registry 2.8 (Go's parseRange) refuses as malformed, which the gateway refuses itself.
import t from 'tap'
import { malformedRange, planRange } from '../../src/storage/ranges.js'

t.test('malformed: what Go\'s parseRange calls "invalid range", and a zero-length suffix', async (t) => {
  for (const range of [
    'bytes', 'bytes 0-1', 'items=0-5', 'Bytes=0-1', // no "bytes="
    'bytes=5', 'bytes=0-1,7', // a part without "-"
    'bytes=abc', 'bytes=a-', 'bytes=0-b', 'bytes=+1-2', 'bytes=1.5-2', 'bytes=--5', 'bytes=-', // no numbers (Go takes a sign; RFC 9110 has digits only)
    'bytes=0-99999999999999999999999', 'bytes=9223372036854775808-', // past int64
    'bytes=10-5', // an end before its start
    'bytes=-0', 'bytes=-00', // the last 0 bytes: registry 2.8 answers a 206 whose Content-Range is impossible
    'bytes=\u00a00-5', 'bytes=0-5\n', // Go trims spaces and tabs only
  ]) t.ok(malformedRange({ range }), range)
})

t.test('not malformed: what the registry answers with a 206, a 200 or a framed 416', async (t) => {
  for (const range of [
    undefined, '', 'bytes=', 'bytes=,', // no range at all: the whole blob
    'bytes=0-0', 'bytes=10-19', 'bytes=0-', 'bytes=-5', 'bytes= 1 - 2 ', // one range (spaces trimmed as Go does)
    'bytes=0-1,5-6', 'bytes=0-1, ,5-', // several
    'bytes=99999999-', 'bytes=9223372036854775807-', // past the end of any blob: the registry's 416 names the size
  ]) t.notOk(malformedRange(range === undefined ? {} : { range }), String(range))
})

t.test('with a condition (If-Range, If-None-Match, ...) the registry decides: it may ignore the Range', async (t) => {
  t.notOk(malformedRange({ range: 'bytes=abc', 'if-range': '"sha256:x"' }))
  t.notOk(malformedRange({ range: 'bytes=abc', 'if-none-match': '*' }))
  t.ok(malformedRange({ range: 'bytes=abc' }))
  t.ok(malformedRange({ range: 'bytes=\t1-\t' }) === false, 'tabs are trimmed')
})

t.test('planRange still leaves the odd forms to the registry, and answers one range itself', async (t) => {
  t.same(planRange({ range: 'bytes=10-19' }, 100), { kind: 'part', start: 10, end: 19 })
  t.same(planRange({ range: 'bytes=-5' }, 100), { kind: 'part', start: 95, end: 99 })
  t.same(planRange({ range: 'bytes=100-' }, 100), { kind: 'unsatisfiable' })
  t.same(planRange({ range: 'bytes=0-1,5-6' }, 100), { kind: 'registry' })
  t.same(planRange({}, 100), { kind: 'whole' })
})
