// Mirrored push cost: one blob pushed with curl (POST, then one streamed PUT ?digest=) directly to
// registry:2, through Portier to one upstream, and through Portier mirroring to 2 and 3 upstreams
// (routing.strategy mirror, require all). Rounds alternate the order; prints medians of wall time.
// Run: npm run bench:mirror -- [rounds] [MiB] [storage dir]   (default 3 rounds, 512 MiB, /dev/shm:
// registry storage in memory, so the figure is Portier's fan-out, not three writers sharing one disk)
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { run } from '../test/helpers/exec.js'

const MiB = 1024 * 1024
const rounds = Number(process.argv[2] ?? 3)
const size = Number(process.argv[3] ?? 512) * MiB
const storageRoot = process.argv[4] ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir())

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

/** Random bytes written to `path` in 4 MiB pieces; returns the digest. */
async function writeBlob(path: string): Promise<string> {
  const out = createWriteStream(path)
  const hash = createHash('sha256')
  for (let left = size; left > 0; left -= 4 * MiB) {
    const piece = randomBytes(Math.min(4 * MiB, left))
    hash.update(piece)
    if (!out.write(piece)) await once(out, 'drain')
  }
  out.end()
  await once(out, 'finish')
  return `sha256:${hash.digest('hex')}`
}

interface Target {
  label: string
  origin: string
  curlTls: string[]
  registries: RegistryHandle[]
  /** The gateway process, whose CPU time is measured (none for the direct target). */
  pid?: number
}

/** User + system CPU seconds a process has used so far (Linux /proc). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** POST to start the upload, then one PUT ?digest= streaming the file; returns the wall time of both in ms. */
async function push(target: Target, repository: string, file: string, digest: string): Promise<number> {
  const started = performance.now()
  const post = await run('curl', ['-sS', ...target.curlTls, '-X', 'POST', '-o', '/dev/null', '-D', '-', `${target.origin}/v2/${repository}/blobs/uploads/`])
  const location = /^location: (\S+)/im.exec(post.stdout)?.[1]
  if (!location) throw new Error(`${target.label}: no upload Location\n${post.stdout}${post.stderr}`)
  const url = new URL(location, target.origin)
  url.searchParams.set('digest', digest)
  const put = await run('curl', ['-sS', ...target.curlTls, '-T', file, '-H', 'Content-Type: application/octet-stream', '-o', '/dev/null', '-w', '%{http_code}', url.toString()], { timeoutMs: 600_000 })
  const ms = performance.now() - started
  if (put.stdout !== '201') throw new Error(`${target.label}: PUT answered ${put.stdout}\n${put.stderr}`)
  return ms
}

/** Checks every registry behind the target holds the whole blob, then empties their storage for the next push. */
async function verifyAndClear(target: Target, repository: string, digest: string): Promise<void> {
  for (const registry of target.registries) {
    const head = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' })
    if (head.status !== 200 || Number(head.headers.get('content-length')) !== size) throw new Error(`${target.label}: ${registry.url} lacks the blob`)
    await rm(join(registry.storageDir, 'docker'), { recursive: true, force: true })
  }
}

const work = await mkdtemp(join(tmpdir(), 'portier-bench-mirror-'))
const storage = await mkdtemp(join(storageRoot, 'portier-bench-mirror-storage-'))
const registries: RegistryHandle[] = []
const gateways: GatewayHandle[] = []
try {
  for (let index = 0; index < 3; index++) registries.push(await startRegistry({ storageDir: join(storage, `r${index}`) }))
  const [r0, r1, r2] = registries as [RegistryHandle, RegistryHandle, RegistryHandle]
  const gateway = async (upstreams: RegistryHandle[]): Promise<GatewayHandle> => {
    const config: Record<string, unknown> = {
      upstreams: upstreams.map((registry, index) => ({ url: registry.url, name: `r${index}` })),
      auth: { mode: 'none' },
    }
    if (upstreams.length > 1) config.routing = { strategy: 'mirror', secret: 'bench secret, at least thirty-two characters long', mirror: { require: 'all' } }
    const started = await startGateway({ config })
    gateways.push(started)
    return started
  }
  const one = await gateway([r0])
  const two = await gateway([r0, r1])
  const three = await gateway([r0, r1, r2])
  const viaPortier = (label: string, handle: GatewayHandle, behind: RegistryHandle[]): Target => ({
    label,
    origin: handle.url,
    curlTls: ['--cacert', handle.caFile],
    registries: behind,
    pid: handle.child.pid as number,
  })
  const targets: Target[] = [
    { label: 'direct (HTTP)', origin: r0.url, curlTls: [], registries: [r0] },
    viaPortier('portier, 1 upstream', one, [r0]),
    viaPortier('portier mirror, 2', two, [r0, r1]),
    viaPortier('portier mirror, 3', three, [r0, r1, r2]),
  ]
  const times = new Map(targets.map((target) => [target.label, [] as number[]]))
  const cpu = new Map(targets.map((target) => [target.label, [] as number[]]))
  const registryCpu = new Map(targets.map((target) => [target.label, [] as number[]]))
  const registriesCpu = (target: Target): number => target.registries.reduce((sum, registry) => sum + cpuSeconds(registry.child.pid as number), 0)
  for (let round = 0; round < rounds; round++) {
    const file = join(work, `blob-${round}`)
    const digest = await writeBlob(file)
    const order = round % 2 === 0 ? targets : [...targets].reverse()
    for (const target of order) {
      const repository = `bench/mirror-${round}`
      const cpuBefore = target.pid ? cpuSeconds(target.pid) : 0
      const registriesBefore = registriesCpu(target)
      const ms = await push(target, repository, file, digest)
      if (target.pid) cpu.get(target.label)?.push(cpuSeconds(target.pid) - cpuBefore)
      registryCpu.get(target.label)?.push(registriesCpu(target) - registriesBefore)
      await verifyAndClear(target, repository, digest)
      times.get(target.label)?.push(ms)
    }
    await rm(file, { force: true })
  }
  console.log(`push of one ${size / MiB} MiB blob with curl (POST + streamed PUT ?digest=), ${rounds} rounds, order alternating`)
  console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), load average ${loadavg().map((load) => load.toFixed(2)).join(' ')}, registry storage under ${storageRoot}`)
  const single = median(times.get('portier, 1 upstream') ?? [])
  for (const [label, values] of times) {
    const seconds = median(values) / 1000
    console.log(
      `${label.padEnd(22)} median ${seconds.toFixed(2)} s  ${((size / MiB) / seconds).toFixed(0).padStart(4)} MiB/s  ` +
        `(min ${(Math.min(...values) / 1000).toFixed(2)}, max ${(Math.max(...values) / 1000).toFixed(2)})  ${(median(values) / single).toFixed(2)}x one upstream` +
        `  CPU: registries ${median(registryCpu.get(label) ?? []).toFixed(2)} s` +
        ((cpu.get(label) ?? []).length > 0 ? `, Portier ${median(cpu.get(label) ?? []).toFixed(2)} s` : ''),
    )
  }
} finally {
  for (const gateway of gateways) await gateway.stop()
  for (const registry of registries) await registry.stop()
  await rm(storage, { recursive: true, force: true })
  await rm(work, { recursive: true, force: true })
}
