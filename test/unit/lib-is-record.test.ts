// isRecord (src/lib/is-record.ts): mappings only, not null, arrays or scalars.
import t from 'tap'
import { isRecord } from '../../src/lib/is-record.js'

t.test('only mappings are records', async (t) => {
  t.ok(isRecord({}))
  t.ok(isRecord({ a: 1 }))
  t.ok(isRecord(Object.create(null)))
  for (const value of [null, undefined, [], [1], 'x', 1, true]) t.notOk(isRecord(value), JSON.stringify(value) ?? 'undefined')
})
