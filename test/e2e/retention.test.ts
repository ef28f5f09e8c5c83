// Retention against a real registry: a repository seeded with known push/pull times (written through the store's API) → the dry run lists exactly the expected manifests and reasons; a real run deletes them and keeps the rest.
import t from 'tap'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { existsSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { CLI, gatewayFixture } from '../helpers/gateway.js'
import { run as runProcess } from '../helpers/exec.js'
import { makeOciLayout } from '../helpers/oci.js'
import { buildLayout } from '../helpers/oci-build.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { Store } from '../../src/store/store.js'
import { PushPullTimes } from '../../src/store/times.js'

const DAY = 86_400_000
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

interface Seed {
  repository: string
  tag: string
  /** The image (by letter): tags with the same letter share a digest. */
  image: string
  /** Days ago; undefined: Portier never saw a push (nor the tag at all). */
  pushed?: number
  pulled?: number
}

const SEEDS: Seed[] = [
  { repository: 'ci/app', tag: 'new', image: 'A', pushed: 1 }, // the last pushed: kept (keep_last 1)
  { repository: 'ci/app', tag: 'shared-old', image: 'A', pushed: 50 }, // old, but its manifest is also "new": kept
  { repository: 'ci/app', tag: 'old-unpulled', image: 'B', pushed: 40 }, // deleted
  { repository: 'ci/app', tag: 'old-pulled', image: 'C', pushed: 40, pulled: 2 }, // pulled within 7d: kept
  { repository: 'ci/app', tag: 'old-pulled-long-ago', image: 'G', pushed: 40, pulled: 20 }, // deleted
  { repository: 'ci/app', tag: 'young', image: 'H', pushed: 10 }, // not older than 30d: kept
  { repository: 'ci/app', tag: 'stable', image: 'D', pushed: 100 }, // keep_tags: kept
  { repository: 'ci/app', tag: 'v1', image: 'E', pushed: 100 }, // immutable: kept
  { repository: 'ci/app', tag: 'unknown', image: 'I' }, // no times: kept
  { repository: 'dev/app', tag: 'old', image: 'F', pushed: 100 }, // no rule governs dev/**: untouched
]

interface Report {
  dryRun: boolean
  result: string
  repositories: Array<{ repository: string; rule: number; tags: Array<{ tag: string; verdict: string; reason: string }> }>
  deletions: Array<{ repository: string; digest: string; tags: string[]; reason: string; outcome: string }>
  totals: { repositories: number; tagsKept: number; tagsDeleted: number; manifestsDeleted: number; failed: number }
  gc?: { result: string }
}

t.test('retention: dry run lists exactly what goes and why; the real run deletes it and keeps the rest', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-retention-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))

  // Images pushed straight into the registry: Portier has not seen them; their times come from the seed below.
  const digests = new Map<string, string>()
  for (const letter of new Set(SEEDS.map((seed) => seed.image))) {
    const image = await makeOciLayout(join(work, `image-${letter}`), { layers: [4096] })
    digests.set(letter, image.manifestDigest)
  }
  for (const seed of SEEDS) {
    await skopeoCopy(`oci:${join(work, `image-${seed.image}`)}:latest`, `docker://127.0.0.1:${registry.port}/${seed.repository}:${seed.tag}`, { destTlsVerify: false })
  }
  const digestOf = (letter: string): string => digests.get(letter) as string

  // Known push/pull times, written with the store's own API into the file the gateway will open.
  const cwd = join(work, 'gateway')
  await mkdir(join(cwd, 'data'), { recursive: true })
  const now = Date.now()
  const store = Store.open(join(cwd, 'data', 'portier.db'))
  const times = new PushPullTimes(store)
  for (const seed of SEEDS) {
    if (seed.pushed !== undefined) times.pushed(seed.repository, seed.tag, digestOf(seed.image), now - seed.pushed * DAY)
    if (seed.pulled !== undefined) times.pulled(seed.repository, seed.tag, digestOf(seed.image), now - seed.pulled * DAY)
  }
  store.close()

  const gateway = await gatewayFixture(t, {
    cwd,
    config: {
      upstreams: [{ url: registry.url }],
      store: { scan: false },
      immutable_tags: [{ repositories: 'ci/**', tags: ['v*'] }],
      retention: { rules: [{ repositories: 'ci/**', keep_last: 1, keep_tags: ['stable'], delete_older_than: '30d', keep_pulled_within: '7d' }] },
    },
  })
  const admin = gateway.adminUrl as string
  const run = async (dryRun: boolean): Promise<{ status: number; report: Report }> => {
    const response = await fetch(`${admin}/admin/api/retention`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dry_run: dryRun, wait: true }) })
    return { status: response.status, report: (await response.json()) as Report }
  }
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())
  const headOnRegistry = async (repository: string, reference: string): Promise<{ status: number; digest: string | undefined }> => {
    const response = await request(`${registry.url}/v2/${repository}/manifests/${reference}`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } })
    await response.body.dump()
    const digest = response.headers['docker-content-digest']
    return { status: response.statusCode, digest: typeof digest === 'string' ? digest : undefined }
  }

  // The CLI's dry run: a table of what would go (tab-separated off a terminal) and the totals.
  const cli = await runProcess(process.execPath, [CLI, 'retention', '--dry-run', '--admin-url', admin], { timeoutMs: 60_000 })
  t.equal(cli.code, 0, `portier retention --dry-run exits 0: ${cli.stderr}`)
  const rows = cli.stdout.trim().split('\n')
  t.same(rows[0]?.split('\t'), ['REPOSITORY', 'TAGS', 'DIGEST', 'WOULD', 'WHY'], 'a header line')
  t.same(rows.slice(1, 3).map((row) => row.split('\t').slice(0, 2).join(':')).sort(), ['ci/app:old-pulled-long-ago', 'ci/app:old-unpulled'], 'exactly the two tags that would go')
  t.match(rows[3], /^dry run: 1 repositories governed; would delete 2 manifests \(2 tags\); kept 7 tags$/, 'and the totals')
  const cliJson = await runProcess(process.execPath, [CLI, 'retention', '--dry-run', '--json', '--admin-url', admin], { timeoutMs: 60_000 })
  t.equal((JSON.parse(cliJson.stdout) as Report).totals.manifestsDeleted, 2, '--json prints the report')

  // Without wait the run goes on in the background: 202 with where to poll.
  const background = await fetch(`${admin}/admin/api/retention`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"dry_run":true}' })
  const started = (await background.json()) as { run_id: string; poll: string }
  t.equal(background.status, 202, 'POST without wait: 202')
  t.equal(started.poll, `/admin/api/retention?run=${started.run_id}`)
  let polled: { done: boolean; report?: Report } = { done: false }
  for (let i = 0; i < 600 && !polled.done; i++) {
    polled = (await (await fetch(`${admin}${started.poll}`)).json()) as { done: boolean; report?: Report }
    if (!polled.done) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(polled.report?.totals.manifestsDeleted, 2, 'the polled report')
  t.equal((await fetch(`${admin}/admin/api/retention?run=no-such-run`)).status, 404, 'an unknown run: 404')

  const dry = await run(true)
  t.equal(dry.status, 200, 'POST /admin/api/retention {dry_run: true}: 200')
  t.equal(dry.report.result, 'success')
  t.same(dry.report.repositories.map((entry) => entry.repository), ['ci/app'], 'only the repository a rule governs')
  const verdicts = Object.fromEntries((dry.report.repositories[0]?.tags ?? []).map((tag) => [tag.tag, tag.verdict]))
  t.same(verdicts, {
    new: 'keep', 'shared-old': 'keep', 'old-unpulled': 'delete', 'old-pulled': 'keep', 'old-pulled-long-ago': 'delete', young: 'keep', stable: 'keep', v1: 'keep', unknown: 'keep',
  }, 'every tag of ci/app decided')
  const reasons = Object.fromEntries((dry.report.repositories[0]?.tags ?? []).map((tag) => [tag.tag, tag.reason]))
  t.equal(reasons['new'], 'kept: among the last 1 pushed')
  t.match(reasons['shared-old'], /^kept: its manifest is also tagged new, which is kept/)
  t.equal(reasons['old-pulled'], 'kept: pulled 2d ago (within 7d)')
  t.equal(reasons['young'], 'kept: pushed 10d ago (not older than 30d)')
  t.equal(reasons['stable'], 'kept: matches keep_tags "stable"')
  t.equal(reasons['v1'], 'kept: immutable tag (immutable_tags)')
  t.equal(reasons['unknown'], 'kept: push time unknown (not yet seen by Portier)')
  t.same(
    dry.report.deletions.map((entry) => ({ digest: entry.digest, tags: entry.tags, outcome: entry.outcome, reason: entry.reason })).sort((a, b) => a.tags[0]!.localeCompare(b.tags[0]!)),
    [
      { digest: digestOf('B'), tags: ['old-unpulled'], outcome: 'would_delete', reason: 'deleted: pushed 40d ago (older than 30d), never pulled, not among the last 1 pushed, matches no keep_tags' },
      { digest: digestOf('G'), tags: ['old-pulled-long-ago'], outcome: 'would_delete', reason: 'deleted: pushed 40d ago (older than 30d), not pulled within 7d, not among the last 1 pushed, matches no keep_tags' },
    ].sort((a, b) => a.tags[0]!.localeCompare(b.tags[0]!)),
    'the dry run lists exactly the two manifests that would go, and why',
  )
  t.same(dry.report.totals, { repositories: 1, tagsKept: 7, tagsDeleted: 2, manifestsDeleted: 2, failed: 0 })
  for (const seed of SEEDS) t.equal((await headOnRegistry(seed.repository, seed.tag)).status, 200, `dry run: ${seed.repository}:${seed.tag} still there`)

  // The web UI's status panel shows the last dry run to administrators (auth.mode none: the anonymous session is one).
  const session = await request(`${gateway.url}/ui/api/session`, { dispatcher })
  await session.body.dump()
  const cookie = String(session.headers['set-cookie']).split(';')[0] as string
  const preview = await request(`${gateway.url}/ui/api/retention`, { dispatcher, headers: { cookie } })
  t.equal(preview.statusCode, 200, 'GET /ui/api/retention: 200')
  const shown = (await preview.body.json()) as { configured: boolean; deletions: Array<{ tags: string[]; digest: string }> }
  t.ok(shown.configured)
  t.same(shown.deletions.map((entry) => entry.digest).sort(), [digestOf('B'), digestOf('G')].sort(), 'the UI shows what the dry run would delete')

  const applied = await run(false)
  t.equal(applied.status, 200, 'POST /admin/api/retention {dry_run: false}: 200')
  t.same(applied.report.deletions.map((entry) => entry.outcome), ['deleted', 'deleted'], 'both manifests deleted')
  t.same(applied.report.totals, { repositories: 1, tagsKept: 7, tagsDeleted: 2, manifestsDeleted: 2, failed: 0 })
  t.ok(applied.report.gc, 'a garbage collection was asked for after the deletes')
  for (const seed of SEEDS) {
    const gone = seed.tag === 'old-unpulled' || seed.tag === 'old-pulled-long-ago'
    const found = await headOnRegistry(seed.repository, seed.tag)
    if (gone) {
      t.equal(found.status, 404, `${seed.repository}:${seed.tag} is gone from the registry`)
    } else {
      t.equal(found.status, 200, `${seed.repository}:${seed.tag} is kept`)
      t.equal(found.digest, digestOf(seed.image), `${seed.repository}:${seed.tag} still points to its image`)
    }
  }
  t.equal((await headOnRegistry('ci/app', digestOf('B'))).status, 404, 'the deleted manifest is gone by digest too')
  // Kept images pull through the gateway with their digests.
  for (const tag of ['new', 'old-pulled', 'v1']) {
    const response = await request(`${gateway.url}/v2/ci/app/manifests/${tag}`, { dispatcher, headers: { accept: OCI_MANIFEST } })
    const body = Buffer.from(await response.body.arrayBuffer())
    t.equal(response.statusCode, 200, `ci/app:${tag} pulls through Portier`)
    t.equal(response.headers['docker-content-digest'], digestOf(SEEDS.find((seed) => seed.tag === tag)!.image))
    t.ok(body.length > 0)
  }

  const again = await run(true)
  t.same(again.report.deletions, [], 'a dry run afterwards finds nothing more to delete')
  const metrics = await (await fetch(`${admin}/metrics`)).text()
  t.match(metrics, /portier_retention_deleted_total\{kind="manifest"\} 2\b/, 'two manifests counted')
  t.match(metrics, /portier_retention_deleted_total\{kind="tag"\} 2\b/, 'two tags counted')
  t.match(metrics, /portier_retention_would_delete_manifests 0\b/, 'the last dry run would delete nothing')
  const status = await (await fetch(`${admin}/admin/api/retention`)).json() as { last_run: Report | null; last_dry_run: Report | null }
  t.equal(status.last_run?.totals.manifestsDeleted, 2, 'GET /admin/api/retention shows the last run')
  t.equal(status.last_dry_run?.totals.manifestsDeleted, 0, 'and the last dry run')
})

t.test('delete_untagged: an untagged manifest the store saw goes; the platform manifests of a tagged index and a tagged image stay', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-retention-untagged-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const index = await buildLayout(join(work, 'multi'), 'latest', [
    { platform: { os: 'linux', architecture: 'amd64' }, layers: [2048] },
    { platform: { os: 'linux', architecture: 'arm64' }, layers: [2048] },
  ])
  await skopeoCopy(`oci:${index.dir}:latest`, `docker://127.0.0.1:${registry.port}/ci/multi:latest`, { destTlsVerify: false, extraArgs: ['--all'] })
  const loose = await makeOciLayout(join(work, 'loose'), { layers: [2048] })
  await skopeoCopy(`oci:${loose.dir}:latest`, `docker://127.0.0.1:${registry.port}/ci/multi:loose`, { destTlsVerify: false })
  // The tag moves away from the loose image (a rebuild): its manifest stays in the registry, untagged.
  await skopeoCopy(`oci:${join(work, 'multi')}:latest`, `docker://127.0.0.1:${registry.port}/ci/multi:loose`, { destTlsVerify: false, extraArgs: ['--all'] })
  const children = index.images.map((image) => image.manifestDigest)

  const cwd = join(work, 'gateway')
  await mkdir(join(cwd, 'data'), { recursive: true })
  const now = Date.now()
  const store = Store.open(join(cwd, 'data', 'portier.db'))
  const times = new PushPullTimes(store)
  // What Portier would have recorded of these pushes: the loose image by tag, the index by tag, its children by digest.
  times.pushed('ci/multi', 'loose', loose.manifestDigest, now - 3 * DAY)
  times.pushed('ci/multi', 'latest', index.digest, now - 2 * DAY)
  for (const child of children) times.pushed('ci/multi', child, undefined, now - 2 * DAY)
  times.pushed('ci/multi', 'loose', index.digest, now - DAY)
  store.close()

  const gateway = await gatewayFixture(t, {
    cwd,
    config: { upstreams: [{ url: registry.url }], store: { scan: false }, retention: { rules: [{ repositories: 'ci/multi', delete_untagged: true }] } },
  })
  const run = async (dryRun: boolean): Promise<Report> => {
    const response = await fetch(`${gateway.adminUrl as string}/admin/api/retention`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dry_run: dryRun, wait: true }) })
    t.equal(response.status, 200)
    return (await response.json()) as Report
  }
  const status = async (reference: string): Promise<number> => {
    const response = await request(`${registry.url}/v2/ci/multi/manifests/${reference}`, { method: 'HEAD', headers: { accept: `${OCI_MANIFEST}, application/vnd.oci.image.index.v1+json` } })
    await response.body.dump()
    return response.statusCode
  }

  const dry = await run(true)
  t.same(dry.deletions.map((entry) => ({ digest: entry.digest, tags: entry.tags, reason: entry.reason })), [{ digest: loose.manifestDigest, tags: [], reason: 'deleted: untagged (delete_untagged)' }], 'only the untagged loose image; the index children are referenced')
  t.same(Object.fromEntries((dry.repositories[0]?.tags ?? []).map((tag) => [tag.tag, tag.reason])), { latest: 'kept: rule 0 sets no tag conditions', loose: 'kept: rule 0 sets no tag conditions' }, 'a rule without tag conditions keeps every tag')

  const applied = await run(false)
  t.same(applied.deletions.map((entry) => entry.outcome), ['deleted'])
  t.equal(await status(loose.manifestDigest), 404, 'the untagged manifest is gone')
  t.equal(await status(index.digest), 200, 'the index stays')
  for (const child of children) t.equal(await status(child), 200, `its platform manifest ${child.slice(0, 19)} stays`)
})

t.test('a run that deletes starts a garbage collection (embedded registry): the deleted image\'s layers leave the disk, the kept image\'s stay', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'portier-retention-gc-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  await mkdir(join(work, 'gateway'))
  const gateway = await gatewayFixture(t, {
    env: { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' },
    cwd: join(work, 'gateway'),
    config: { store: { scan: false }, retention: { rules: [{ repositories: 'gc/**', keep_last: 1 }] } },
  })
  const old = await buildLayout(join(work, 'old'), 'x', [{ layers: [512 * 1024] }])
  const fresh = await buildLayout(join(work, 'new'), 'x', [{ layers: [512 * 1024] }])
  // Pushed through Portier: the store records their push times (old first).
  await skopeoCopy(`oci:${old.dir}:x`, `docker://${gateway.host}/gc/app:old`, { destCertDir: gateway.certDir })
  await new Promise((resolve) => setTimeout(resolve, 50))
  await skopeoCopy(`oci:${fresh.dir}:x`, `docker://${gateway.host}/gc/app:new`, { destCertDir: gateway.certDir })
  const blobFile = (digest: string): string => join(gateway.cwd, 'data', 'registry', 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7), 'data')
  const oldLayer = old.images[0]?.layerDigests[0] as string
  const newLayer = fresh.images[0]?.layerDigests[0] as string
  t.ok(existsSync(blobFile(oldLayer)) && existsSync(blobFile(newLayer)), 'both layers on disk')

  const response = await fetch(`${gateway.adminUrl as string}/admin/api/retention`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"dry_run":false,"wait":true}' })
  const report = (await response.json()) as Report & { gc?: { id?: string; result: string } }
  t.equal(response.status, 200)
  t.same(report.deletions.map((entry) => [entry.tags, entry.outcome]), [[['old'], 'deleted']], 'the older tag is deleted (keep_last 1)')
  t.equal(report.gc?.result, 'started', 'a garbage collection was started')
  const runId = report.gc?.id as string
  let run: { id: string; trigger: string; result: string; bytesFreed: number } | undefined
  const deadline = Date.now() + 120_000
  while (run === undefined && Date.now() < deadline) {
    const gc = (await (await fetch(`${gateway.adminUrl as string}/admin/api/gc`)).json()) as { history: Array<{ id: string; trigger: string; result: string; bytesFreed: number }> }
    run = gc.history.find((entry) => entry.id === runId)
    if (run === undefined) await new Promise((resolve) => setTimeout(resolve, 200))
  }
  t.equal(run?.trigger, 'retention', 'the collection is marked as retention\'s')
  t.equal(run?.result, 'success')
  t.ok((run?.bytesFreed ?? 0) > 0, `it freed bytes (${run?.bytesFreed})`)
  t.notOk(existsSync(blobFile(oldLayer)), 'the deleted image\'s layer is gone from disk')
  t.ok(existsSync(blobFile(newLayer)), 'the kept image\'s layer is still there')
})
