// The store's housekeeping modules on a real SQLite file: the GC history (src/housekeeping/gc-history.ts) and storage samples (src/store/usage.ts) survive reopening, keep their bounds, and read back as written.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Store } from '../../src/store/store.js'
import { StorageUsage } from '../../src/store/usage.js'
import { GcHistory } from '../../src/housekeeping/gc-history.js'
import type { GcRun } from '../../src/housekeeping/gc.js'

function dir(t: Test): string {
  const path = mkdtempSync(join(tmpdir(), 'portier-hk-store-'))
  t.teardown(() => rmSync(path, { recursive: true, force: true }))
  return path
}

function run(id: string, finishedAt: number, bytesFreed: number): GcRun {
  return {
    id, trigger: 'api', dryRun: false, deleteUntagged: false, startedAt: new Date(finishedAt - 1000).toISOString(), finishedAt: new Date(finishedAt).toISOString(),
    durationSeconds: 1, result: 'success', bytesBefore: 10_000 + bytesFreed, bytesAfter: 10_000, bytesFreed, blobsMarked: 3, blobsEligible: 2, manifestsEligible: 1,
    blobsDeleted: 2, manifestsDeleted: 1, protectedManifests: 0, maintenanceSeconds: 1,
  }
}

t.test('GC history: newest first, survives reopening the file, keeps at most `keep` runs', async (t) => {
  const path = join(dir(t), 'portier.db')
  const store = Store.open(path)
  const history = new GcHistory(store, 3)
  const T0 = Date.UTC(2026, 11, 1)
  for (let i = 0; i < 5; i++) await history.record(run(`run-${i}`, T0 + i * 60_000, 1000 * i))
  t.same((await history.list(10)).map((entry) => entry.id), ['run-4', 'run-3', 'run-2'], 'the three newest, newest first')
  t.same((await history.list(1)).map((entry) => entry.bytesFreed), [4000])
  store.close()

  const again = Store.open(path)
  t.teardown(() => again.close())
  const reopened = new GcHistory(again, 3)
  const runs = await reopened.list(10)
  t.same(runs.map((entry) => entry.id), ['run-4', 'run-3', 'run-2'], 'the same runs after a restart')
  t.same(runs[0], run('run-4', T0 + 4 * 60_000, 4000), 'the whole report comes back')
  again.db.prepare("INSERT INTO gc_runs (id, finished_at, result, dry_run, bytes_freed, bytes_after, report) VALUES ('bad', ?, 'success', 0, 0, 0, 'not json')").run(T0 + 10 * 60_000)
  t.same((await reopened.list(10)).map((entry) => entry.id), ['run-4', 'run-3', 'run-2'], 'a damaged row is left out, the rest still read')
  t.equal(again.version('gc_history'), 1)
})

t.test('storage samples: oldest first from `since`, the newest repository sizes, pruning', async (t) => {
  const path = join(dir(t), 'portier.db')
  const store = Store.open(path)
  t.teardown(() => store.close())
  const usage = new StorageUsage(store)
  const DAY = 86_400_000
  const T0 = Date.UTC(2026, 10, 1)
  t.equal(await usage.latestRepositories(), undefined, 'nothing before the first sample')
  for (let i = 0; i < 4; i++) {
    await usage.record(
      { at: T0 + i * DAY, diskBytes: 1000 * (i + 1), apparentBytes: 900 * (i + 1), blobBytes: 800 * (i + 1), repositories: 2, reason: i === 0 ? 'start' : 'schedule' },
      [{ repository: 'team/app', bytes: 500 * (i + 1), blobs: 3 }, { repository: 'team/web', bytes: 400, blobs: 2 }],
    )
  }
  t.same((await usage.samples(T0 + DAY)).map((sample) => sample.diskBytes), [2000, 3000, 4000], 'from since on, oldest first')
  t.same((await usage.samples(0, 2)).map((sample) => sample.diskBytes), [3000, 4000], 'a limit keeps the newest')
  t.same((await usage.samples(T0))[0], { at: T0, diskBytes: 1000, apparentBytes: 900, blobBytes: 800, repositories: 2, reason: 'start' })
  t.same(await usage.latestRepositories(), { at: T0 + 3 * DAY, repositories: [{ repository: 'team/app', bytes: 2000, blobs: 3 }, { repository: 'team/web', bytes: 400, blobs: 2 }] }, 'largest first')
  t.same(await usage.repositoryHistory('team/app', T0 + 2 * DAY), [{ at: T0 + 2 * DAY, bytes: 1500 }, { at: T0 + 3 * DAY, bytes: 2000 }])
  await usage.record({ at: T0 + 3 * DAY, diskBytes: 4500, apparentBytes: 1, blobBytes: 1, repositories: 1, reason: 'gc' }, [{ repository: 'team/app', bytes: 1, blobs: 1 }])
  t.same((await usage.latestRepositories())?.repositories, [{ repository: 'team/app', bytes: 1, blobs: 1 }], 'a sample in the same millisecond replaces the earlier one')
  t.equal(await usage.prune(T0 + 2 * DAY), 2, 'two samples older than the cut')
  t.same((await usage.samples(0)).map((sample) => sample.at), [T0 + 2 * DAY, T0 + 3 * DAY])
  t.same(await usage.repositoryHistory('team/web'), [{ at: T0 + 2 * DAY, bytes: 400 }], 'their repository sizes went with them')
})

t.test('repository sizes from a registry storage tree: an index and its platform images, a layer shared between them and with another repository counted once', async (t) => {
  const { RegistryStorage, writeBlob, writeRevision } = await import('../../src/housekeeping/registry-storage.js')
  const { measureStorage } = await import('../../src/housekeeping/repository-sizes.js')
  const root = dir(t)
  const storage = new RegistryStorage(root)
  const blob = async (size: number, fill: number): Promise<{ digest: string; size: number }> => ({ digest: await writeBlob(storage, Buffer.alloc(size, fill)), size })
  const shared = await blob(5000, 1)
  const amd = await blob(3000, 2)
  const arm = await blob(2000, 3)
  const config = await blob(100, 4)
  const image = async (layers: Array<{ digest: string; size: number }>): Promise<{ digest: string; size: number }> => {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { digest: config.digest, size: config.size }, layers: layers.map((layer) => ({ digest: layer.digest, size: layer.size })) }))
    return { digest: await writeBlob(storage, bytes), size: bytes.length }
  }
  const amdImage = await image([shared, amd])
  const armImage = await image([shared, arm])
  const indexBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: amdImage.digest }, { digest: armImage.digest }] }))
  const index = { digest: await writeBlob(storage, indexBytes), size: indexBytes.length }
  for (const manifest of [index, amdImage, armImage]) await writeRevision(storage, 'team/multi', manifest.digest)
  await storage.writeTag('team/multi', 'v1', index.digest)
  const single = await image([shared])
  await writeRevision(storage, 'team/single', single.digest)
  // A revision whose blob is gone (collected) counts nothing.
  await writeRevision(storage, 'team/single', `sha256:${'f'.repeat(64)}`)

  const measured = await measureStorage(storage, () => 42)
  const multiBytes = index.size + amdImage.size + armImage.size + config.size + shared.size + amd.size + arm.size
  const singleBytes = single.size + config.size + shared.size
  t.same(measured.repositories, [
    { repository: 'team/multi', bytes: multiBytes, blobs: 7 },
    { repository: 'team/single', bytes: singleBytes, blobs: 3 },
  ], 'each repository: its manifests and every blob they name, once')
  t.equal(measured.blobBytes, multiBytes + single.size, 'overall: the shared layer and config once')
  t.equal(measured.at, 42)
  t.ok(measured.diskBytes >= measured.blobBytes, 'du of the tree holds at least the blobs')
})
