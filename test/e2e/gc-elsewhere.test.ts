// A collection waits for uploads it cannot see itself: one streaming into the storage through another instance (sharing Redis,
// uploads into storage), and one a client sends to the registry directly. Each is a real upload written slowly while a garbage
// collection starts at instance A; the collector may run only once the upload has been written, and the blob survives it.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { readFile } from 'node:fs/promises'
import { registryFixture, REGISTRY_BIN, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { redisFixture } from '../helpers/redis.js'
import { GatewayClient, sha256, sleep } from '../helpers/gwclient.js'
import { admin, type Instance } from '../helpers/schedule.js'
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

/** Starts a collection at `instance` and returns its progress lines once it is done (bounded: 90 s). */
async function collect(instance: Instance): Promise<{ events: Progress[]; run: Record<string, unknown> }> {
  const started = await admin(instance, 'POST', '/admin/api/gc', {})
  if (started.status !== 202) throw new Error(`POST /admin/api/gc answered ${started.status}: ${JSON.stringify(started.json)}`)
  const events: Progress[] = []
  let since = 0
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    const polled = await admin(instance, 'GET', `/admin/api/gc?run=${String(started.json.run_id)}&since=${since}`)
    events.push(...(polled.json.events as Progress[]))
    since = Number(polled.json.next)
    if (polled.json.done === true) return { events, run: polled.json.run as Record<string, unknown> }
    await sleep(100)
  }
  throw new Error('the collection did not finish within 90 s')
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

/**
 * While `upload` writes slowly, a collection runs at A: its collector must start after the upload's last
 * byte (it waited), it must say so, and the blob must be stored after it, intact.
 */
async function collectDuring(t: Test, a: Instance, registry: RegistryHandle, repository: string, upload: () => Promise<{ digest: string; blob: Buffer; lastWriteAt: number; committed: () => Promise<number> }>): Promise<void> {
  const writing = upload()
  // The collection starts once the upload is under way (its first pieces are in).
  await sleep(800)
  const collected = collect(a)
  const { digest, blob, lastWriteAt, committed } = await writing
  t.equal(await committed(), 201, 'the upload is committed (its session began before the switch, so it may finish)')
  const { events, run } = await collected
  t.equal(run.result, 'success', `the collection succeeded (${typeof run.error === 'string' ? run.error : 'no error'})`)
  const waiting = events.filter((event) => event.phase === 'draining' && /being written into the storage elsewhere/.test(event.message))
  t.ok(waiting.length > 0, `the collection said it waits for the upload (${waiting[0]?.message ?? 'nothing said'})`)
  const collecting = events.find((event) => event.phase === 'collecting')
  t.ok(collecting !== undefined, 'the collector ran')
  const collectorAt = Date.parse(collecting?.at ?? '')
  t.ok(collectorAt > lastWriteAt, `the collector started ${collectorAt - lastWriteAt} ms after the upload's last byte was written (not before)`)
  const stored = await readFile(blobDataPath(registry.storageDir, digest) as string).catch(() => Buffer.alloc(0))
  t.ok(stored.equals(blob), `the blob is stored whole after the collection (${stored.length} of ${blob.length} bytes)`)
  const read = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`)
  t.equal(read.status, 200, 'the registry serves it')
  t.equal(sha256(Buffer.from(await read.arrayBuffer())), digest)
}

t.test('a collection at A waits for uploads written into the storage by B and by a client of the registry', async (t) => {
  const redis = await redisFixture(t)
  const registry = await registryFixture(t)
  const config = {
    upstreams: [{ url: registry.url, storage: registry.storageDir, storage_uploads: true }],
    store: { scan: false },
    gc: { registry_config: registry.configFile, binary: REGISTRY_BIN, drain_timeout: '30s' },
    shared: { redis: { url: redis.url, key_prefix: 'gc-elsewhere:' } },
  }
  const instances: Instance[] = []
  for (const name of ['A', 'B']) {
    const gateway = await gatewayFixture(t, { config })
    const client = new GatewayClient(gateway)
    t.teardown(() => client.close())
    instances.push({ name, gateway, client })
  }
  const [a, b] = instances as [Instance, Instance]

  t.test('an upload into storage through instance B', async (t) => {
    const repository = 'elsewhere/instance'
    await collectDuring(t, a, registry, repository, async () => {
      const posted = await b.client.send('POST', `/v2/${repository}/blobs/uploads/`)
      if (posted.status !== 202) throw new Error(`POST at B answered ${posted.status}`)
      const path = b.client.pathOf(posted.headers.location)
      const patched = await slowBody(httpsRequest(b.client.options('PATCH', path, { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }, false)))
      t.equal(patched.res.statusCode, 202, 'B stored the whole chunk')
      const digest = sha256(patched.body)
      const next = b.client.pathOf(patched.res.headers.location)
      const committed = async (): Promise<number> => (await b.client.send('PUT', `${next}${next.includes('?') ? '&' : '?'}digest=${digest}`, { headers: { 'content-length': '0' } })).status
      return { digest, blob: patched.body, lastWriteAt: patched.lastWriteAt, committed }
    })
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
      const committed = async (): Promise<number> => {
        const put = await fetch(next, { method: 'PUT', headers: { 'content-length': '0' } })
        await put.arrayBuffer()
        return put.status
      }
      return { digest, blob: patched.body, lastWriteAt: patched.lastWriteAt, committed }
    })
  })
})
