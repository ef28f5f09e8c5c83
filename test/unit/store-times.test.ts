// Push/pull times (src/store/times.ts) on a real store file: what finished requests record, what retention reads, and how deletes and scans change it.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { classify } from '../../src/registry/classify.js'
import type { FinishedRequest } from '../../src/observe/record.js'
import type { StoreEngine } from '../../src/store/engine.js'
import { Store } from '../../src/store/store.js'
import { PushPullTimes } from '../../src/store/times.js'
import { ENGINES, openEngine, type EngineName } from '../helpers/store-engines.js'

const A = `sha256:${'a'.repeat(64)}`
const B = `sha256:${'b'.repeat(64)}`
const DAY = 86_400_000
const T0 = Date.UTC(2026, 0, 10, 12)

async function open(t: Test, engine: EngineName, now: { at: number }): Promise<{ store: StoreEngine; times: PushPullTimes }> {
  const store = await openEngine(t, engine, { flushIntervalMs: 60_000 })
  const times = new PushPullTimes(store, () => now.at)
  await times.ready
  return { store, times }
}

function finished(method: string, path: string, status: number, contentDigest?: string): FinishedRequest {
  return {
    requestId: 'r', method, request: classify(method, path), status, seconds: 0.01, clientIp: '127.0.0.1', user: 'ci',
    upstream: 'u', bytesReceived: 0, bytesSent: 0, failure: undefined, ...(contentDigest ? { contentDigest } : {}),
  }
}

for (const engine of ENGINES) {
  t.test(`${engine}: a push by tag, pulls by tag and by digest, as retention reads them`, async (t) => {
    const now = { at: T0 }
    const { times, store } = await open(t, engine, now)
    const listen = times.listener()
    listen(finished('PUT', '/v2/team/app/manifests/v1', 201, A))
    now.at = T0 + DAY
    listen(finished('GET', '/v2/team/app/manifests/v1', 200, A))
    now.at = T0 + 2 * DAY
    listen(finished('GET', `/v2/team/app/manifests/${A}`, 200, A))
    listen(finished('GET', '/v2/team/app/manifests/v2', 404))
    listen(finished('PUT', '/v2/team/app/manifests/v2', 400))
    t.equal(store.queued, 3, 'only successes are queued')
    t.same(await times.tagTimes('team/app'), [
      { tag: 'v1', digest: A, firstSeenAt: T0, firstPushedAt: T0, pushedAt: T0, pulledAt: T0 + 2 * DAY, tagPulledAt: T0 + DAY, pulls: 1 },
    ], 'a pull by digest counts for the tag naming it (pulledAt), not for tagPulledAt')
    t.same(await times.manifestTimes('team/app'), [{ digest: A, firstSeenAt: T0, firstPushedAt: T0, pushedAt: T0, pulledAt: T0 + 2 * DAY, pulls: 2 }])
    t.same(await times.dailyPulls('team/app'), [{ day: '2026-01-11', pulls: 1 }, { day: '2026-01-12', pulls: 1 }])
    t.same(await times.repositories(), ['team/app'])
  })

  t.test(`${engine}: pushing a tag again moves it; first times stay`, async (t) => {
    const now = { at: T0 }
    const { times } = await open(t, engine, now)
    times.pushed('app', 'latest', A)
    times.pulled('app', 'latest', A, T0 + 10)
    times.pushed('app', 'latest', B, T0 + DAY)
    const [latest] = await times.tagTimes('app')
    t.same(latest, { tag: 'latest', digest: B, firstSeenAt: T0, firstPushedAt: T0, pushedAt: T0 + DAY, pulledAt: T0 + 10, tagPulledAt: T0 + 10, pulls: 1 })
    t.same((await times.manifestTimes('app')).map((m) => [m.digest, m.pulledAt]), [[A, T0 + 10], [B, undefined]], 'B itself was never pulled')
  })

  t.test(`${engine}: a scan gives older tags a first-seen time and never moves a known one`, async (t) => {
    const now = { at: T0 }
    const { times } = await open(t, engine, now)
    times.pushed('app', 'v1', A)
    times.seen('app', 'v1', A, T0 + DAY)
    times.seen('app', 'old', B, T0 + DAY)
    t.same((await times.tagTimes('app')).map((tag) => [tag.tag, tag.firstSeenAt, tag.pushedAt]), [['old', T0 + DAY, undefined], ['v1', T0, T0]])
    // A HEAD by tag is no pull but proves the tag.
    times.listener()(finished('HEAD', '/v2/app/manifests/older', 200, A))
    const older = (await times.tagTimes('app')).find((tag) => tag.tag === 'older')
    t.equal(older?.pulls, 0)
    t.equal(older?.digest, A)
  })

  t.test(`${engine}: deletes: by digest takes every tag naming it; by tag only the tag; a repository all`, async (t) => {
    const now = { at: T0 }
    const { times } = await open(t, engine, now)
    const listen = times.listener()
    times.pushed('app', 'v1', A)
    times.pushed('app', 'also', A)
    times.pushed('app', 'v2', B)
    times.pushed('other', 'v1', A)
    listen(finished('DELETE', `/v2/app/manifests/${A}`, 202))
    t.same((await times.tagTimes('app')).map((tag) => tag.tag), ['v2'])
    t.same((await times.manifestTimes('app')).map((m) => m.digest), [B])
    t.same((await times.tagTimes('other')).map((tag) => tag.tag), ['v1'], 'other repositories untouched')
    listen(finished('DELETE', '/v2/app/manifests/v2', 202))
    t.same(await times.tagTimes('app'), [])
    times.forgetRepository('other')
    t.same(await times.repositories(), ['app'], 'app still has manifest B')
  })
}

t.test('times survive closing and reopening the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-times-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'portier.db')
  const first = Store.open(path)
  new PushPullTimes(first, () => T0).pushed('app', 'v1', A)
  first.close()
  const again = Store.open(path, { readOnly: true })
  t.teardown(() => again.close())
  t.same((await new PushPullTimes(again).tagTimes('app')).map((tag) => [tag.tag, tag.pushedAt]), [['v1', T0]])
})
