// server.workers: 2 in front of a real registry: both worker processes serve the one port; a lockout, a
// limits.rate bucket, the maintenance switch and /metrics hold across them (state in the primary); skopeo pushes
// and pulls; a killed worker is logged and replaced (the lockout and the bucket stay); SIGTERM drains both and the
// process exits 0.
import t from 'tap'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { registryFixture } from '../helpers/registry.js'
import { startGateway, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { GatewayClient, waitUntil, type Reply } from '../helpers/gwclient.js'
import { freePort } from '../helpers/ports.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MiB = 1024 * 1024
const PASSWORDS = { root: 'root-password-1', carol: 'carol-password-1', dave: 'dave-password-1' }
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const ROOT = basic('root', PASSWORDS.root)
const DAVE = basic('dave', PASSWORDS.dave)
/** dave's limits.rate bucket: RATE_BURST requests at once, then one per 100 s (none refills during the test). */
const RATE_BURST = 6

/** One request on a connection of its own (so the workers take turns), and the worker whose access log has it. */
async function once(gateway: GatewayHandle, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ reply: Reply; worker: number }> {
  const client = new GatewayClient(gateway)
  const id = `workers-${randomUUID()}`
  try {
    const reply = await client.send(method, path, { headers: { ...headers, 'x-request-id': id, connection: 'close' }, ...(body ? { body } : {}) })
    const line = await gateway.waitForLog((entry) => entry.request_id === id)
    return { reply, worker: Number(line.worker) }
  } finally {
    client.close()
  }
}

async function metric(gateway: GatewayHandle, line: string): Promise<number> {
  const text = await (await fetch(`${gateway.adminUrl as string}/metrics`)).text()
  const found = text.split('\n').find((entry) => entry.startsWith(`${line} `))
  return found === undefined ? Number.NaN : Number(found.split(' ')[1])
}

function serving(gateway: GatewayHandle, worker: number): LogLine[] {
  return gateway.logs.filter((line) => line.msg === 'worker serving' && line.worker === worker)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('two workers, one port, one registry', async (t) => {
  const registry = await registryFixture(t)
  const work = await mkdtemp(join(tmpdir(), 'portier-workers-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, (await Promise.all(Object.entries(PASSWORDS).map(async ([user, password]) => `${user}:${await hashPassword(password, 5)}\n`))).join(''))
  const [port, adminPort] = [await freePort(), await freePort()]
  const gateway = await startGateway({
    config: {
      server: { listen: `127.0.0.1:${port}`, workers: 2 },
      admin: { listen: `127.0.0.1:${adminPort}` },
      upstreams: [{ url: registry.url }],
      auth: {
        mode: 'htpasswd',
        htpasswd: { path: htpasswd },
        acl: [{ match: { account: 'root' }, actions: ['*'] }, { match: { account: '*' }, actions: ['pull'] }],
        throttle: { max_failures: 3, window: '5m', lockout: '5m' },
      },
      limits: { rate: [{ name: 'dave', match: { account: 'dave' }, requests: RATE_BURST, per: '10m' }] },
    },
    readyTimeoutMs: 60_000,
  })
  let stopped = false
  t.teardown(async () => {
    if (!t.passing()) {
      process.stderr.write(`--- gateway stderr\n${gateway.stderr().slice(-3000)}\n--- gateway log (last 40)\n`)
      for (const line of gateway.logs.slice(-40)) process.stderr.write(`${JSON.stringify(line)}\n`)
    }
    if (!stopped) await gateway.stop()
  })
  await gateway.waitForLog((line) => line.msg === 'portier ready: every worker serves', 60_000)
  const pids = [1, 2].map((worker) => Number(serving(gateway, worker)[0]?.pid))
  t.ok(pids.every((pid) => pid > 0 && pid !== gateway.child.pid), `two worker processes (${pids.join(', ')}) besides the primary (${String(gateway.child.pid)})`)
  t.match(gateway.stderr(), /2 worker processes serving https:\/\/127\.0\.0\.1:\d+ \(server\.workers\)/)

  t.test('both workers answer on the one port; /metrics answers their sum', async (t) => {
    const seen = new Set<number>()
    for (let i = 0; i < 6; i++) {
      const { reply, worker } = await once(gateway, 'GET', '/v2/', { authorization: ROOT })
      t.equal(reply.status, 200)
      seen.add(worker)
    }
    t.same([...seen].sort(), [1, 2], 'connections go to both workers')
    t.equal(await metric(gateway, 'portier_requests_total{operation="base",method="GET",status_class="2xx"}'), 6, 'six GET /v2/ in all, whichever worker answered')
    t.equal(await metric(gateway, `portier_upstream_up{upstream="${new URL(registry.url).host}"}`), 1, 'a state gauge is not summed (up = 1, not 2)')
    t.equal(await metric(gateway, 'portier_shared_up{engine="cluster"}'), 1)
  })

  t.test('a lockout earned at both workers holds at both', async (t) => {
    const failedAt = new Set<number>()
    for (let attempt = 1; attempt <= 4; attempt++) {
      const { reply, worker } = await once(gateway, 'GET', '/v2/', { authorization: basic('carol', `guess-${attempt}`) })
      t.equal(reply.status, 401, `wrong password ${attempt} at worker ${worker}: 401`)
      failedAt.add(worker)
    }
    t.same([...failedAt].sort(), [1, 2], 'the four failures were counted by both workers (neither saw more than the limit alone)')
    const refusedAt = new Set<number>()
    for (let i = 0; i < 4; i++) {
      const { reply, worker } = await once(gateway, 'GET', '/v2/', { authorization: basic('carol', PASSWORDS.carol) })
      t.equal(reply.status, 429, `the right password is refused at worker ${worker}`)
      t.equal(reply.errorCode(), 'TOOMANYREQUESTS')
      refusedAt.add(worker)
    }
    t.same([...refusedAt].sort(), [1, 2], 'by both workers')
    t.equal((await once(gateway, 'GET', '/v2/', { authorization: ROOT })).reply.status, 200, 'another user is not affected')
  })

  t.test('a rate limit is one bucket across both workers: the burst is admitted once, not once per worker', async (t) => {
    const sent = 2 * RATE_BURST + 4
    const replies: Array<{ reply: Reply; worker: number }> = []
    for (let i = 0; i < sent; i++) replies.push(await once(gateway, 'GET', '/v2/', { authorization: DAVE }))
    const statuses = replies.map(({ reply }) => reply.status)
    t.comment(`statuses by worker: ${replies.map(({ reply, worker }) => `${worker}:${reply.status}`).join(' ')}`)
    // Each worker counting alone would admit 2 × RATE_BURST; one request refills every 100 s, so none does meanwhile.
    t.same(statuses, [...Array<number>(RATE_BURST).fill(200), ...Array<number>(sent - RATE_BURST).fill(429)], `${RATE_BURST} admitted (the bucket), then every request refused`)
    const admittedBy = new Set(replies.filter(({ reply }) => reply.status === 200).map(({ worker }) => worker))
    const refused = replies.filter(({ reply }) => reply.status === 429)
    const refusedBy = new Set(refused.map(({ worker }) => worker))
    t.same([...admittedBy].sort(), [1, 2], 'both workers admitted some of the burst')
    t.same([...refusedBy].sort(), [1, 2], 'both workers refused once it was spent')
    for (const { reply, worker } of refused) {
      const retryAfter = Number(reply.headers['retry-after'])
      t.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 100, `worker ${worker}: Retry-After ${String(reply.headers['retry-after'])} (one request refills in 100 s)`)
      t.equal(reply.errorCode(), 'TOOMANYREQUESTS', `worker ${worker}: the registry error code`)
      t.match(reply.json(), { errors: [{ code: 'TOOMANYREQUESTS', detail: { limit: 'rate', rule: 'dave', requests: RATE_BURST, per_seconds: 600 } }] })
    }
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="dave",by="user"}'), refused.length, `/metrics sums the ${refused.length} refusals of both workers`)
    t.equal((await once(gateway, 'GET', '/v2/', { authorization: ROOT })).reply.status, 200, 'another user is not limited')
    t.equal((await once(gateway, 'GET', '/v2/', { authorization: ROOT })).reply.status, 200, 'at either worker')
  })

  t.test('maintenance switched at one worker holds at both', async (t) => {
    const on = await fetch(`${gateway.adminUrl as string}/admin/api/maintenance`, { method: 'PUT', headers: { authorization: ROOT, 'content-type': 'application/json' }, body: JSON.stringify({ on: true, message: 'moving disks' }) })
    await on.arrayBuffer()
    t.equal(on.status, 200)
    const refusedAt = new Set<number>()
    t.ok(await waitUntil(async () => {
      const { reply, worker } = await once(gateway, 'POST', '/v2/maint/app/blobs/uploads/', { authorization: ROOT })
      if (reply.status === 405) refusedAt.add(worker)
      return refusedAt.size === 2
    }, 10_000), 'both workers refuse a push')
    const off = await fetch(`${gateway.adminUrl as string}/admin/api/maintenance`, { method: 'PUT', headers: { authorization: ROOT, 'content-type': 'application/json' }, body: JSON.stringify({ on: false }) })
    await off.arrayBuffer()
    t.equal(off.status, 200)
    const acceptedAt = new Set<number>()
    t.ok(await waitUntil(async () => {
      const { reply, worker } = await once(gateway, 'POST', '/v2/maint/app/blobs/uploads/', { authorization: ROOT })
      if (reply.status === 202) acceptedAt.add(worker)
      return acceptedAt.size === 2
    }, 10_000), 'both workers accept a push again')
  })

  t.test('skopeo push and pull through the workers keep every digest', async (t) => {
    const image = await makeOciLayout(join(work, 'src'), { layers: [24 * MiB, 3 * MiB, 1 * MiB] })
    const ref = `docker://${gateway.host}/e2e/workers:v1`
    const creds = { username: 'root', password: PASSWORDS.root }
    const push = await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir, destCreds: creds })
    t.equal(push.code, 0, 'push')
    const pull = await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: creds })
    t.equal(pull.code, 0, 'pull')
    const back = await readOciLayout(join(work, 'back'), 'latest')
    t.equal(back.manifestDigest, image.manifestDigest, 'manifest digest')
    t.same(back.layerDigests, image.layerDigests, 'layer digests')
    t.same(back.layerSizes, image.layerSizes, 'layer sizes')
    const answered = new Set(gateway.logs.filter((line) => line.msg === 'request' && line.repository === 'e2e/workers').map((line) => Number(line.worker)))
    t.comment(`push/pull requests answered by workers ${[...answered].sort().join(', ')}`)
  })

  t.test('a worker that dies is logged and replaced; the state it shared stays', async (t) => {
    const [, second] = pids as [number, number]
    const limitedBefore = await metric(gateway, 'portier_rate_limited_total{rule="dave",by="user"}')
    process.kill(second, 'SIGKILL')
    const exited = await gateway.waitForLog((line) => line.msg === 'worker exited unexpectedly; starting a new one' && line.worker === 2, 10_000)
    t.equal(exited.signal, 'SIGKILL')
    t.equal(exited.pid, second)
    t.equal(exited.level, 50, 'logged as an error')
    t.ok(await waitUntil(() => serving(gateway, 2).length === 2, 60_000), 'a new worker 2 serves')
    const replacement = Number(serving(gateway, 2)[1]?.pid)
    t.not(replacement, second)
    pids[1] = replacement
    // The dead worker's share stays in the sum: a total that went down would be a counter reset to Prometheus.
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="dave",by="user"}'), limitedBefore, `/metrics still sums the ${limitedBefore} refusals, the dead worker's included`)
    const refusedAt = new Set<number>()
    for (let i = 0; i < 4; i++) {
      const { reply, worker } = await once(gateway, 'GET', '/v2/', { authorization: basic('carol', PASSWORDS.carol) })
      t.equal(reply.status, 429, `carol is still locked out at worker ${worker}`)
      refusedAt.add(worker)
    }
    t.ok(refusedAt.has(2), 'the new worker too: the lockout lives in the primary')
    const limitedAt = new Set<number>()
    for (let i = 0; i < 4; i++) {
      const { reply, worker } = await once(gateway, 'GET', '/v2/', { authorization: DAVE })
      t.equal(reply.status, 429, `dave's bucket is still empty at worker ${worker}`)
      t.equal(reply.errorCode(), 'TOOMANYREQUESTS')
      limitedAt.add(worker)
    }
    t.ok(limitedAt.has(2), 'the new worker too: the rate-limit buckets live in the primary')
    t.equal(await metric(gateway, 'portier_rate_limited_total{rule="dave",by="user"}'), limitedBefore + 4, 'and the new refusals add to it')
  })

  t.test('SIGTERM drains both workers; the process exits 0', async (t) => {
    const result = await gateway.stop()
    stopped = true
    t.same(result, { code: 0, signal: null }, 'exit code 0')
    for (const worker of [1, 2]) {
      t.ok(gateway.logs.some((line) => line.msg === 'stopped' && line.worker === worker), `worker ${worker} drained and stopped`)
      t.ok(gateway.logs.some((line) => line.msg === 'worker stopped' && line.worker === worker && line.code === 0), `worker ${worker} exited 0`)
    }
    t.ok(await waitUntil(() => pids.every((pid) => !alive(pid)), 5000), 'no worker process is left')
  })
})

/** Processes whose parent is `parent`, with their command lines. */
function childrenOf(parent: number): Array<{ pid: number; command: string }> {
  const found: Array<{ pid: number; command: string }> = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== parent) continue
      found.push({ pid: Number(entry), command: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ') })
    } catch {
      // Ended while we looked.
    }
  }
  return found
}

t.test('the embedded registry runs once, in the primary; both workers serve what it stores', async (t) => {
  const [port, adminPort] = [await freePort(), await freePort()]
  const gateway = await startGateway({ config: { server: { listen: `127.0.0.1:${port}`, workers: 2 }, admin: { listen: `127.0.0.1:${adminPort}` } }, readyTimeoutMs: 60_000 })
  let stopped = false
  t.teardown(async () => {
    if (!stopped) await gateway.stop()
  })
  await gateway.waitForLog((line) => line.msg === 'portier ready: every worker serves', 60_000)
  const children = childrenOf(gateway.child.pid as number)
  const registries = children.filter((child) => child.command.includes('docker-registry'))
  t.equal(registries.length, 1, 'one registry process, a child of the primary')
  t.equal(children.length, 3, 'the registry and two workers')
  t.equal(gateway.logs.filter((line) => line.msg === 'embedded registry started').length, 1, 'started once')
  // A blob stored through one worker is read through the other (new connections alternate between them).
  const data = Buffer.from(`embedded-${randomUUID()}`)
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
  const started = await once(gateway, 'POST', `/v2/emb/app/blobs/uploads/?digest=${digest}`)
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  let stored = started.reply.status === 201
  if (!stored) {
    const location = client.pathOf(started.reply.headers.location)
    const put = await client.send('PUT', `${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, { headers: { 'content-type': 'application/octet-stream' }, body: data })
    stored = put.status === 201
  }
  t.ok(stored, 'stored through a worker')
  const readBy = new Set<number>()
  for (let i = 0; i < 4; i++) {
    const { reply, worker } = await once(gateway, 'GET', `/v2/emb/app/blobs/${digest}`)
    t.equal(reply.status, 200)
    t.equal(reply.body.toString(), data.toString(), `the bytes, from worker ${worker}`)
    readBy.add(worker)
  }
  t.same([...readBy].sort(), [1, 2], 'both workers read it')

  // An upload whose PATCH and PUT reach different workers (storage uploads: the embedded registry's default):
  // the PUT's worker asks the PATCH's for the running sha256 instead of reading the 3 MiB again.
  const peerBefore = await metric(gateway, 'portier_blob_storage_upload_digests_total{source="peer"}')
  let crossed = 0
  for (let attempt = 0; attempt < 4 && crossed === 0; attempt++) {
    const bytes = Buffer.alloc(3 * MiB, attempt + 1)
    const blob = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    const post = await once(gateway, 'POST', '/v2/emb/app/blobs/uploads/')
    t.equal(post.reply.status, 202, 'upload started')
    const patch = await once(gateway, 'PATCH', client.pathOf(post.reply.headers.location), { 'content-type': 'application/octet-stream' }, bytes)
    t.equal(patch.reply.status, 202, `PATCH at worker ${patch.worker}`)
    const at = client.pathOf(patch.reply.headers.location)
    const put = await once(gateway, 'PUT', `${at}${at.includes('?') ? '&' : '?'}digest=${blob}`)
    t.equal(put.reply.status, 201, `PUT at worker ${put.worker}`)
    t.equal(put.reply.headers['docker-content-digest'], blob)
    const back = await once(gateway, 'GET', `/v2/emb/app/blobs/${blob}`)
    t.ok(back.reply.body.equals(bytes), 'the blob reads back whole')
    if (patch.worker !== put.worker) crossed++
  }
  t.equal(crossed, 1, 'a PATCH and its PUT reached different workers')
  t.equal(await metric(gateway, 'portier_blob_storage_upload_digests_total{source="peer"}') - (Number.isNaN(peerBefore) ? 0 : peerBefore), 1, 'the sha256 came from the worker that hashed the upload')

  const result = await gateway.stop()
  stopped = true
  t.same(result, { code: 0, signal: null }, 'exit code 0')
  t.ok(await waitUntil(() => registries.every((registry) => !alive(registry.pid)), 5000), 'the registry is stopped with the primary')
})
