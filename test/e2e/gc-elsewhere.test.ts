// A collection waits for uploads it cannot see itself: one streaming into the storage through another instance (sharing Redis,
// uploads into storage), one that pauses longer than 5 s between its last chunk and its commit, and one a client sends to the
// registry directly. Each is a real upload written slowly while a garbage collection starts at instance A; the collector may run
// only once the upload is committed, the blob survives it, and from then on B refuses the rest of that push (the cut-off).
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture, REGISTRY_BIN, type RegistryHandle } from '../helpers/registry.js'
import { redisFixture } from '../helpers/redis.js'
import { sha256, sleep, waitUntil } from '../helpers/gwclient.js'
import { admin, startInstances, type Instance } from '../helpers/schedule.js'
import { blobDataPath } from '../../src/storage/paths.js'

const PIECE = 64 * 1024
const PIECES = 40
/** Between pieces: the upload takes ~4 s, long enough for a collection to start in the middle of it. */
const PIECE_EVERY_MS = 100

interface Progress {
  phase: string
  message: string
  at: string
}

/** Starts a collection at `instance` and returns its progress lines once it is done (bounded: 90 s); `whileCollecting` runs once the collector has started. */
async function collect(instance: Instance, whileCollecting?: () => Promise<void>): Promise<{ events: Progress[]; run: Record<string, unknown> }> {
  const started = await admin(instance, 'POST', '/admin/api/gc', {})
  if (started.status !== 202) throw new Error(`POST /admin/api/gc answered ${started.status}: ${JSON.stringify(started.json)}`)
  const events: Progress[] = []
  let since = 0
  let told = false
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    const polled = await admin(instance, 'GET', `/admin/api/gc?run=${String(started.json.run_id)}&since=${since}`)
    events.push(...(polled.json.events as Progress[]))
    since = Number(polled.json.next)
    if (!told && whileCollecting && events.some((event) => event.phase === 'collecting')) {
      told = true
      await whileCollecting()
    }
    if (polled.json.done === true) return { events, run: polled.json.run as Record<string, unknown> }
    await sleep(100)
  }
  throw new Error('the collection did not finish within 90 s')
}

/** Resolves once the repository has an upload session in the storage (bounded: 10 s). */
async function sessionIn(registry: RegistryHandle, repository: string): Promise<void> {
  const dir = join(registry.storageDir, 'docker', 'registry', 'v2', 'repositories', ...repository.split('/'), '_uploads')
  if (!(await waitUntil(async () => (await readdir(dir).catch(() => [])).length > 0, 10_000))) throw new Error(`no upload session of ${repository} in the storage`)
}

/** Writes PIECES random pieces into `req` one every PIECE_EVERY_MS; resolves the answer, the bytes sent and when the last was written. */
function slowBody(req: ClientRequest): Promise<{ res: IncomingMessage; body: Buffer; lastWriteAt: number }> {
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = []
    let lastWriteAt = 0
    req.on('error', reject)
    req.on('response', (res) => {
      res.resume()
      res.on('end', () => resolve({ res, body: Buffer.concat(pieces), lastWriteAt }))
    })
    const next = (): void => {
      if (pieces.length === PIECES) {
        req.end()
        return
      }
      const piece = randomBytes(PIECE)
      pieces.push(piece)
      req.write(piece, () => {
        lastWriteAt = Date.now()
      })
      setTimeout(next, PIECE_EVERY_MS)
    }
    next()
  })
}

interface Upload {
  digest: string
  blob: Buffer
  /** Commits the upload and stores the push's manifest; resolves the commit's and the manifest's statuses and when the last answer came. */
  committed: () => Promise<{ status: number; manifest: number; at: number }>
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

/** The push's manifest: the uploaded blob as its config. */
function manifestOf(digest: string, size: number): string {
  return JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size }, layers: [] })
}

/**
 * While `upload` writes slowly, a collection runs at A: its collector must start after the upload's
 * commit (it waited), it must say so, and the blob must be stored after it, intact. `whileCollecting`
 * runs once the collector has started.
 */
async function collectDuring(t: Test, a: Instance, registry: RegistryHandle, repository: string, upload: () => Promise<Upload>, options: { pauseMs?: number; whileCollecting?: () => Promise<void> } = {}): Promise<void> {
  const writing = upload()
  await sessionIn(registry, repository)
  const collected = collect(a, options.whileCollecting)
  const { digest, blob, committed } = await writing
  if (options.pauseMs) await sleep(options.pauseMs)
  const commit = await committed()
  t.equal(commit.status, 201, 'the upload is committed (its session began before the switch, so it may finish)')
  t.equal(commit.manifest, 201, 'and the push\'s manifest stored')
  const { events, run } = await collected
  t.equal(run.result, 'success', `the collection succeeded (${typeof run.error === 'string' ? run.error : 'no error'})`)
  const waiting = events.filter((event) => event.phase === 'draining' && /being written into the storage elsewhere/.test(event.message))
  t.ok(waiting.length > 0, `the collection said it waits for the upload (${waiting[0]?.message ?? 'nothing said'})`)
  const collecting = events.find((event) => event.phase === 'collecting')
  t.ok(collecting !== undefined, 'the collector ran')
  const collectorAt = Date.parse(collecting?.at ?? '')
  t.ok(collectorAt > commit.at, `the collector started ${collectorAt - commit.at} ms after the push was done (not before)`)
  t.ok(collectorAt - commit.at < 15_000, 'and did not wait for the drain timeout (30 s) once it was')
  const stored = await readFile(blobDataPath(registry.storageDir, digest) as string).catch(() => Buffer.alloc(0))
  t.ok(stored.equals(blob), `the blob is stored whole after the collection (${stored.length} of ${blob.length} bytes)`)
  const read = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`)
  t.equal(read.status, 200, 'the registry serves it')
  t.equal(sha256(Buffer.from(await read.arrayBuffer())), digest)
}

/** An upload through instance B (into storage): POST, one slow PATCH, and the commit when asked. */
async function throughB(t: Test, b: Instance, repository: string): Promise<Upload> {
  const posted = await b.client.send('POST', `/v2/${repository}/blobs/uploads/`)
  if (posted.status !== 202) throw new Error(`POST at B answered ${posted.status}`)
  const path = b.client.pathOf(posted.headers.location)
  const patched = await slowBody(httpsRequest(b.client.options('PATCH', path, { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, false)))
  t.equal(patched.res.statusCode, 202, 'B stored the whole chunk')
  const digest = sha256(patched.body)
  const next = b.client.pathOf(patched.res.headers.location)
  const committed = async (): Promise<{ status: number; manifest: number; at: number }> => {
    const put = await b.client.send('PUT', `${next}${next.includes('?') ? '&' : '?'}digest=${digest}`, { headers: { 'content-length': '0' } })
    const manifest = await b.client.send('PUT', `/v2/${repository}/manifests/v1`, { body: manifestOf(digest, patched.body.length), headers: { 'content-type': OCI_MANIFEST } })
    return { status: put.status, manifest: manifest.status, at: Date.now() }
  }
  return { digest, blob: patched.body, committed }
}

t.test('a collection at A waits for uploads written into the storage by B and by a client of the registry', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  // The registry's collector, started 3 s late: a window in which to try writes while it runs.
  const work = await mkdtemp(join(tmpdir(), 'portier-gc-elsewhere-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const binary = join(work, 'registry')
  await writeFile(binary, `#!/bin/sh\nsleep 3\nexec ${REGISTRY_BIN} "$@"\n`)
  await chmod(binary, 0o755)
  const config = {
    upstreams: [{ url: registry.url, storage: registry.storageDir, storage_uploads: true }],
    store: { scan: false },
    gc: { registry_config: registry.configFile, binary, drain_timeout: '30s' },
    shared: { redis: { url: redis.url, key_prefix: 'gc-elsewhere:' } },
  }
  const instances = await startInstances(t, ['A', 'B'], config)
  const [a, b] = instances as [Instance, Instance]

  t.test('an upload into storage through instance B', async (t) => {
    await collectDuring(t, a, registry, 'elsewhere/instance', () => throughB(t, b, 'elsewhere/instance'))
  })

  t.test('an upload through B that pauses 7 s before its commit; then the cut-off refuses the rest of that push at B', async (t) => {
    const repository = 'elsewhere/paused'
    let during: number | undefined
    await collectDuring(t, a, registry, repository, () => throughB(t, b, repository), {
      pauseMs: 7_000,
      whileCollecting: async () => {
        // Its blob came within the last minute: without the cut-off B would still admit the push's next upload.
        during = (await b.client.send('POST', `/v2/${repository}/blobs/uploads/`)).status
      },
    })
    t.equal(during, 405, 'while the collector runs, B refuses a new upload of the push it let finish (405)')
  })

  t.test('an upload a client sends to the registry directly', async (t) => {
    const repository = 'elsewhere/direct'
    await collectDuring(t, a, registry, repository, async () => {
      const posted = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
      await posted.arrayBuffer()
      const location = new URL(posted.headers.get('location') ?? '', registry.url)
      const patched = await slowBody(httpRequest(location, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' } }))
      t.equal(patched.res.statusCode, 202, 'the registry stored the whole chunk')
      const digest = `sha256:${createHash('sha256').update(patched.body).digest('hex')}`
      const next = new URL(String(patched.res.headers.location), registry.url)
      next.searchParams.set('digest', digest)
      const committed = async (): Promise<{ status: number; manifest: number; at: number }> => {
        const put = await fetch(next, { method: 'PUT', headers: { 'content-length': '0' } })
        await put.arrayBuffer()
        const manifest = await fetch(`${registry.url}/v2/${repository}/manifests/v1`, { method: 'PUT', body: manifestOf(digest, patched.body.length), headers: { 'content-type': OCI_MANIFEST } })
        await manifest.arrayBuffer()
        return { status: put.status, manifest: manifest.status, at: Date.now() }
      }
      return { digest, blob: patched.body, committed }
    })
  })
})
