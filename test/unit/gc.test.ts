// Garbage collection's pieces: the collector's output read as progress and totals, disk usage walked in-process, the schedule, the registry storage layout and the multi-arch protection.
import t from 'tap'
import { mkdirSync, writeFileSync, readdirSync, existsSync, symlinkSync, renameSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import { parseCollectorLine, tallyOutput } from '../../src/housekeeping/gc-output.js'
import { diskUsage } from '../../src/housekeeping/disk-usage.js'
import { nextRunDelay, parseSchedule } from '../../src/housekeeping/gc-schedule.js'
import { RegistryStorage } from '../../src/housekeeping/registry-storage.js'
import { pendingWrites } from '../../src/housekeeping/gc-quiet.js'
import { KEEP_TAG_PREFIX, indexChildren, protectIndexChildren, releaseKept } from '../../src/housekeeping/gc-protect.js'
import { collectorArgs } from '../../src/housekeeping/gc-collector.js'
import { upstreamTarget, GcUnavailable } from '../../src/housekeeping/gc-target.js'

const d = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`

// Recorded from docker-registry 2.8.2+ds1: `garbage-collect --delete-untagged` with REGISTRY_LOG_LEVEL=info (stdout then stderr).
const REAL_OUTPUT = `t/a
t/a: marking manifest sha256:d76b0f2f214d36a985506b085ec850b5d3d62d16ce177708da2f139613a51d39 
t/a: marking blob sha256:a4676082a010f6bddf41497454b1216f73a486c68fe78f764d698232ab34f350
t/a: marking blob sha256:2f6e89ced58bd431146d86b9ad744d4f6597d5e99963802ab1f7138b5a2e1f68
t/b
t/m
t/m: marking manifest sha256:8e32aabc576ae42d15375aaf623d0b23ecdc7e4f2f83b61aceb8bfc85995f4cc 
t/m: marking blob sha256:e1debe0c2fe173c473473e5f16fdfa2b2e37332b483fa31d6b1da33120c703fc
manifest eligible for deletion: sha256:b5824462f9be5671f7158ff7b690c527acee363d112f8d34b6c8f316b5ac3ea7
manifest eligible for deletion: sha256:e1debe0c2fe173c473473e5f16fdfa2b2e37332b483fa31d6b1da33120c703fc

7 blobs marked, 4 blobs and 2 manifests eligible for deletion
blob eligible for deletion: sha256:056e4b2cc4fbbcbcffaf7adcd719e8db46620da3271bf9e074632c738325b546
blob eligible for deletion: sha256:25fa4b3b0754a849ada8d0c2ce53e7abdccccd9eb0b1a180c83316e3156a45b2
blob eligible for deletion: sha256:4a8ceb66fd483fbe3d4ac079e129e183b533de4534dd9404d809a1a89b1da225
blob eligible for deletion: sha256:a7e0a7fe9915af96bc9684599d1d5af286e52a9339d01f4062f5e249e539f0e5
time="2026-12-04T03:09:56.32722117Z" level=info msg="deleting manifest: /docker/registry/v2/repositories/t/m/_manifests/revisions/sha256/b5824462f9be5671f7158ff7b690c527acee363d112f8d34b6c8f316b5ac3ea7" go.version=go1.19.8 instance.id=46e5df84
time="2026-12-04T03:09:56.328008347Z" level=info msg="deleting manifest: /docker/registry/v2/repositories/t/m/_manifests/revisions/sha256/e1debe0c2fe173c473473e5f16fdfa2b2e37332b483fa31d6b1da33120c703fc" go.version=go1.19.8 instance.id=46e5df84
time="2026-12-04T03:09:56.33111234Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/05/056e4b2cc4fbbcbcffaf7adcd719e8db46620da3271bf9e074632c738325b546" go.version=go1.19.8 instance.id=46e5df84
time="2026-12-04T03:09:56.333712135Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/25/25fa4b3b0754a849ada8d0c2ce53e7abdccccd9eb0b1a180c83316e3156a45b2" go.version=go1.19.8 instance.id=46e5df84
time="2026-12-04T03:09:56.361072141Z" level=info msg="Deleting blob: /docker/registry/v2/blobs/sha256/4a/4a8ceb66fd483fbe3d4ac079e129e183b533de4534dd9404d809a1a89b1da225" go.version=go1.19.8 instance.id=46e5df84
`

t.test('the collector output of registry 2.8.2 is read into totals and progress', async (t) => {
  const tally = tallyOutput(REAL_OUTPUT)
  t.equal(tally.repositories, 3, 'each repository line counted')
  t.equal(tally.manifestsMarked, 2)
  t.equal(tally.blobsMarked, 3)
  t.same(tally.summary, { blobsMarked: 7, blobsEligible: 4, manifestsEligible: 2 }, 'the summary line')
  t.equal(tally.blobsEligible.length, 4)
  t.same(tally.manifestsEligible, ['sha256:b5824462f9be5671f7158ff7b690c527acee363d112f8d34b6c8f316b5ac3ea7', 'sha256:e1debe0c2fe173c473473e5f16fdfa2b2e37332b483fa31d6b1da33120c703fc'])
  t.equal(tally.blobsDeleted, 3, '"Deleting blob:" log lines')
  t.equal(tally.manifestsDeleted, 2, '"deleting manifest:" log lines')
  t.same(tally.errors, [])
})

t.test('errors and noise', async (t) => {
  t.same(parseCollectorLine('time="x" level=fatal msg="failed to mark: filesystem: Path not found: /docker/registry/v2/repositories"'), {
    kind: 'error',
    message: 'failed to mark: filesystem: Path not found: /docker/registry/v2/repositories',
  })
  t.same(parseCollectorLine('Error: configuration error: open /nope.yml: no such file or directory'), { kind: 'error', message: 'Error: configuration error: open /nope.yml: no such file or directory' })
  t.equal(parseCollectorLine(''), undefined)
  t.equal(parseCollectorLine('time="x" level=info msg="redis not configured"'), undefined, 'other info lines say nothing we count')
  t.equal(parseCollectorLine('0 blobs marked, 0 blobs and 0 manifests eligible for deletion')?.kind, 'summary')
  t.equal(parseCollectorLine('Some Text With Spaces'), undefined, 'not a repository name')
})

t.test('collector arguments', async (t) => {
  t.same(collectorArgs({ configPath: '/c.yml', dryRun: false, deleteUntagged: false }), ['garbage-collect', '/c.yml'])
  t.same(collectorArgs({ configPath: '/c.yml', dryRun: true, deleteUntagged: true }), ['garbage-collect', '--dry-run', '--delete-untagged', '/c.yml'])
})

t.test('disk usage counts allocated bytes of every file, without following links, and skips a missing root', async (t) => {
  const dir = t.testdir({ a: { b: { data: 'x'.repeat(10_000) } }, c: 'y'.repeat(100) })
  symlinkSync('/usr', join(dir, 'link'))
  const usage = await diskUsage(dir)
  t.equal(usage.files, 3, 'two files and a link')
  t.ok(usage.apparentBytes >= 10_100 && usage.apparentBytes < 10_100 + 100, `apparent ${usage.apparentBytes}`)
  t.ok(usage.bytes >= 10_100, `allocated ${usage.bytes} ≥ the files' bytes`)
  const empty = await diskUsage(join(dir, 'missing'))
  t.same(empty, { bytes: 0, apparentBytes: 0, files: 0 })
  const before = usage.bytes
  writeFileSync(join(dir, 'a', 'big'), randomBytes(1024 * 1024))
  const after = await diskUsage(dir)
  t.ok(after.bytes - before >= 1024 * 1024, 'a 1 MiB file adds at least 1 MiB')
})

t.test('an upload mid-commit (its data moved into blobs/, its link not written yet) is still a write in flight', async (t) => {
  const root = t.testdir({})
  const storage = new RegistryStorage(root)
  const sessions = join(storage.repositoryDir('team/app'), '_uploads')
  const session = join(sessions, 'a1b2c3')
  mkdirSync(session, { recursive: true })
  writeFileSync(join(session, 'data'), randomBytes(1024))
  writeFileSync(join(session, 'startedat'), new Date().toISOString())
  const old = join(sessions, 'left-behind')
  mkdirSync(old)
  const hourAgo = new Date(Date.now() - 3_600_000)
  utimesSync(old, hourAgo, hourAgo)
  const sinceMs = Date.now() - 1_000
  t.same((await pendingWrites(storage, sinceMs, Date.now(), new Map())).pending.uploads, ['team/app/_uploads/a1b2c3'], 'while written')
  // The commit's first step, as the registry's and Portier's own: the data leaves the session for blobs/.
  const blob = join(root, 'docker', 'registry', 'v2', 'blobs', 'sha256', 'ab', 'ab'.repeat(32), 'data')
  mkdirSync(join(blob, '..'), { recursive: true })
  renameSync(join(session, 'data'), blob)
  const { pending } = await pendingWrites(storage, sinceMs, Date.now(), new Map())
  t.same(pending.uploads, ['team/app/_uploads/a1b2c3'], 'between the move and the link, the session still holds the collection back (a directory left an hour ago does not)')
  t.same(pending.pushes, [], 'no layer link yet')
})

t.test('schedules: an interval or a daily UTC time', async (t) => {
  t.equal(parseSchedule(''), null)
  t.same(parseSchedule('24h'), { kind: 'interval', ms: 86_400_000 })
  t.same(parseSchedule('03:30'), { kind: 'daily', hour: 3, minute: 30 })
  t.equal(parseSchedule('5s'), undefined, 'too short')
  t.same(parseSchedule('10s'), { kind: 'interval', ms: 10_000 }, 'short enough to try a schedule out')
  t.equal(parseSchedule('3600'), undefined, 'a bare number is ambiguous')
  t.equal(parseSchedule('25:00'), undefined)
  t.equal(parseSchedule('daily'), undefined)
  const now = Date.UTC(2026, 0, 1, 2, 0, 0)
  t.equal(nextRunDelay({ kind: 'daily', hour: 3, minute: 30 }, now), 90 * 60_000, 'later today')
  t.equal(nextRunDelay({ kind: 'daily', hour: 1, minute: 0 }, now), 23 * 3_600_000, 'tomorrow')
  t.equal(nextRunDelay({ kind: 'interval', ms: 60_000 }, now), 60_000)
})

function blob(root: string, document: unknown): string {
  const bytes = Buffer.from(JSON.stringify(document))
  const hex = createHash('sha256').update(bytes).digest('hex')
  const dir = join(root, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'data'), bytes)
  return `sha256:${hex}`
}

function revision(root: string, repository: string, digest: string): void {
  const dir = join(root, 'docker', 'registry', 'v2', 'repositories', repository, '_manifests', 'revisions', 'sha256', digest.slice(7))
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'link'), digest)
}

t.test('multi-arch protection: untagged children of a tagged index get a temporary tag, removed afterwards', async (t) => {
  const root = t.testdir()
  const storage = new RegistryStorage(root)
  const amd = blob(root, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], config: { digest: d(1) } })
  const arm = blob(root, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], config: { digest: d(2) } })
  const index = blob(root, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ digest: amd }, { digest: arm }] })
  const orphan = blob(root, { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], config: { digest: d(3) } })
  for (const digest of [amd, arm, index, orphan]) revision(root, 'lib/multi', digest)
  await storage.writeTag('lib/multi', 'v1', index)
  // A leftover of an interrupted run pointing at the orphan must not keep it.
  await storage.writeTag('lib/multi', `${KEEP_TAG_PREFIX}${orphan.slice(7)}`, orphan)
  // A plain image repository: nothing to protect.
  revision(root, 'lib/single', orphan)
  await storage.writeTag('lib/single', 'v1', orphan)

  t.same(await storage.repositories(), ['lib/multi', 'lib/single'])
  t.same(indexChildren(await storage.manifest(index)), [amd, arm])
  const kept = await protectIndexChildren(storage)
  t.same(kept.map((k) => k.digest).sort(), [amd, arm].sort(), 'both platform manifests kept')
  t.ok(kept.every((k) => k.repository === 'lib/multi' && k.index === index))
  const tags = await storage.tags('lib/multi')
  t.same([...tags.keys()].sort(), ['v1', ...kept.map((k) => k.tag)].sort(), 'the leftover tag is gone, the new ones are there')
  for (const k of kept) t.equal(tags.get(k.tag), k.digest)
  await releaseKept(storage, kept)
  t.same([...(await storage.tags('lib/multi')).keys()], ['v1'], 'only the real tag remains')
  t.same(readdirSync(join(storage.repositoryDir('lib/multi'), '_manifests', 'tags')), ['v1'], 'no directory left behind')
  t.notOk(existsSync(join(storage.repositoryDir('lib/single'), '_manifests', 'tags', `${KEEP_TAG_PREFIX}${orphan.slice(7)}`)))
})

t.test('an upstream registry config names the storage; a stale-cache setting is warned about', async (t) => {
  const dir = t.testdir({
    'config.yml': 'version: 0.1\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\n',
    'plain.yml': 'version: 0.1\nstorage:\n  filesystem: {}\n',
    's3.yml': 'version: 0.1\nstorage:\n  s3: { bucket: x }\n',
  })
  const base = { registry_config: 'config.yml', storage_root: '', binary: '', schedule: '', delete_untagged: false, drain_timeout: 1000 }
  const target = upstreamTarget(base, 'docker-registry', dir)
  t.equal(target.configPath, join(dir, 'config.yml'))
  t.equal(target.storageRoot, '/var/lib/registry')
  t.match(target.staleCacheWarning, /blobdescriptor: inmemory/)
  t.equal(upstreamTarget({ ...base, registry_config: 'plain.yml', storage_root: 'mnt/registry' }, 'r', dir).storageRoot, join(dir, 'mnt/registry'), 'storage_root: where it is mounted')
  t.equal(upstreamTarget({ ...base, registry_config: 'plain.yml' }, 'r', dir).storageRoot, '/var/lib/registry', 'the filesystem driver default')
  t.throws(() => upstreamTarget({ ...base, registry_config: 's3.yml' }, 'r', dir), /no storage.filesystem section/)
  t.ok((() => { try { upstreamTarget({ ...base, registry_config: '' }, 'r', dir) } catch (error) { return error instanceof GcUnavailable } return false })(), 'a GcUnavailable')
  t.throws(() => upstreamTarget({ ...base, registry_config: '' }, 'r', dir), /gc\.registry_config/)
  t.throws(() => upstreamTarget({ ...base, registry_config: 'missing.yml' }, 'r', dir), /cannot read/)
})

t.test('compose.gc.yaml: Portier sees the registry storage and config it collects, both run as the image\'s user, the image carries the registry binary', async (t) => {
  const yaml = (await import('js-yaml')).default
  const { readFileSync } = await import('node:fs')
  const root = join(import.meta.dirname, '..', '..')
  type Service = { image?: string; user?: string; volumes?: string[]; environment?: Record<string, string>; command?: string[]; profiles?: string[] }
  const gcCompose = yaml.load(readFileSync(join(root, 'compose.gc.yaml'), 'utf8')) as { services: Record<string, Service> }
  const base = yaml.load(readFileSync(join(root, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> }
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8')
  const mounts = (service: Service | undefined) => new Map((service?.volumes ?? []).map((entry) => { const [source, target] = entry.split(':'); return [target as string, source as string] }))

  const registryConfigFile = join(root, 'config', 'compose.registry.yml')
  const target = upstreamTarget({ registry_config: registryConfigFile, storage_root: '' }, 'registry', root)
  t.equal(target.staleCacheWarning, undefined, 'the registry config has no blob descriptor cache (a re-push after GC would skip deleted layers)')

  const portier = gcCompose.services.portier
  const portierMounts = mounts(portier)
  t.equal(portierMounts.get(target.storageRoot), 'registry-data', `Portier mounts the registry volume at its rootdirectory (${target.storageRoot})`)
  const configInPortier = portier?.environment?.PORTIER_GC_REGISTRY_CONFIG ?? ''
  t.ok((portier?.volumes ?? []).includes(`./config/compose.registry.yml:${configInPortier}:ro`), 'gc.registry_config is the mounted registry config')

  // Uploads into storage: the compose environment over config/compose.portier.yaml, as the container loads it.
  const { loadConfig } = await import('../../src/app/config.js')
  const environment = { ...base.services.portier?.environment, ...portier?.environment }
  const loaded = loadConfig({ file: join(root, 'config', 'compose.portier.yaml'), env: { ...environment, PORTIER_AUTH_HTPASSWD_PATH: join(root, 'package.json') } })
  const upstream = loaded.config.upstreams[0]
  t.equal(loaded.config.upstreams.length, 1)
  t.equal(upstream?.url, 'http://registry:5000', 'the same registry as compose.yaml')
  t.equal(upstream?.storage, target.storageRoot, 'storage: where the volume is mounted')
  t.equal(upstream?.storage_uploads, true, 'uploads are written into the storage')
  t.notOk((portier?.volumes ?? []).some((entry) => entry.startsWith(`registry-data:${target.storageRoot}:ro`)), 'the mount that replaces compose.yaml\'s read-only one is writable')

  const registry = gcCompose.services.registry
  t.ok((registry?.volumes ?? []).includes('./config/compose.registry.yml:/etc/docker/registry/config.yml:ro'), 'the registry runs with the same config')
  const uid = /useradd[^\n]*--uid (\d+)/.exec(dockerfile)?.[1]
  const gid = /groupadd[^\n]*--gid (\d+)/.exec(dockerfile)?.[1]
  t.equal(registry?.user, `${uid}:${gid}`, 'the registry runs as the image\'s portier user, so GC may delete what it wrote')
  t.ok(gcCompose.services['registry-owner']?.volumes?.includes(`registry-data:${target.storageRoot}`), 'the volume is handed to that user first')

  const image = base.services.registry?.image
  t.match(dockerfile, new RegExp(`COPY --from=${(image ?? '').replace(/\./g, '\\.')} /bin/registry /usr/local/bin/registry`), `the image carries the binary of ${image}`)
  const oneShot = gcCompose.services['registry-gc']
  t.equal(oneShot?.image, image)
  t.same(oneShot?.command, ['garbage-collect', '/etc/docker/registry/config.yml'])
  t.same(oneShot?.profiles, ['gc'], 'the one-shot collector runs only when asked')
})

t.test('check-config: what gc.* names is checked the way a run reads it', async (t) => {
  const { gcFileProblems } = await import('../../src/housekeeping/gc-files.js')
  const dir = t.testdir({
    'registry.yml': 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ./storage\n',
    storage: {},
    's3.yml': 'version: 0.1\nstorage:\n  s3: { bucket: x }\n',
  })
  const base = { registry_config: '', storage_root: '', binary: '', schedule: '', delete_untagged: false, drain_timeout: 1000, usage_interval: 0, usage_keep: 0 }
  t.same(gcFileProblems(base, true, dir), [], 'embedded, nothing set')
  t.match(gcFileProblems({ ...base, registry_config: 'registry.yml' }, true, dir), [{ key: 'gc.registry_config' }], 'a registry config means nothing with the embedded registry')
  t.same(gcFileProblems(base, false, dir), [], 'upstreams without GC: fine')
  t.match(gcFileProblems({ ...base, schedule: '24h' }, false, dir), [{ key: 'gc.schedule' }], 'a schedule needs the storage')
  t.same(gcFileProblems({ ...base, registry_config: 'registry.yml' }, false, dir), [], 'storage relative to the config file, present')
  t.match(gcFileProblems({ ...base, registry_config: 'registry.yml', storage_root: 'mnt' }, false, dir), [{ key: 'gc.storage_root', found: /no such directory/ }])
  t.match(gcFileProblems({ ...base, registry_config: 's3.yml' }, false, dir), [{ key: 'gc.registry_config', found: /no storage\.filesystem/ }])
  t.match(gcFileProblems({ ...base, registry_config: 'nope.yml' }, false, dir), [{ key: 'gc.registry_config', found: /cannot read/ }])
})
