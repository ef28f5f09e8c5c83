// skopeo push and pull of a fresh 3-layer image, directly against registry:2 (plain HTTP) and through
// Portier (HTTPS, verified), alternating rounds; prints medians, min–max, ratios and Portier's peak RSS.
// Run: npm run bench -- [rounds] [layer MiB,…]   (default 3 rounds, layers 100,100,100)
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway } from '../test/helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../test/helpers/oci.js'
import { skopeoCopy } from '../test/helpers/skopeo.js'

const MiB = 1024 * 1024
const rounds = Number(process.argv[2] ?? 3)
const layers = (process.argv[3] ?? '100,100,100').split(',').map((size) => Number(size) * MiB)

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

async function peakRss(pid: number): Promise<number> {
  const match = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return match ? Number(match[1]) * 1024 : 0
}

const work = await mkdtemp(join(tmpdir(), 'portier-bench-'))
const registry = await startRegistry()
const gateway = await startGateway({ config: { upstreams: [{ url: registry.url }], auth: { mode: 'none' } } })
const times = { directPush: [] as number[], directPull: [] as number[], portierPush: [] as number[], portierPull: [] as number[] }
try {
  for (let round = 0; round < rounds; round++) {
    for (const via of ['direct', 'portier'] as const) {
      // Fresh random layers every time, or skopeo would skip or mount blobs it has seen.
      const image = await makeOciLayout(join(work, `${via}-${round}`), { layers })
      const host = via === 'direct' ? `127.0.0.1:${registry.port}` : gateway.host
      const ref = `docker://${host}/bench/${via}${round}:latest`
      const tls = via === 'direct' ? { destTlsVerify: false } : { destCertDir: gateway.certDir }
      const push = await skopeoCopy(`oci:${image.dir}:latest`, ref, tls)
      const back = join(work, `${via}-${round}-back`)
      const pull = await skopeoCopy(ref, `oci:${back}:latest`, via === 'direct' ? { srcTlsVerify: false } : { srcCertDir: gateway.certDir })
      const pulled = await readOciLayout(back, 'latest')
      if (pulled.manifestDigest !== image.manifestDigest) throw new Error(`${via} round ${round}: digest mismatch`)
      times[`${via}Push`].push(push.ms)
      times[`${via}Pull`].push(pull.ms)
      await rm(join(work, `${via}-${round}`), { recursive: true, force: true })
      await rm(back, { recursive: true, force: true })
    }
  }
  const rss = await peakRss(gateway.child.pid as number)
  const line = (label: string, values: number[]): string =>
    `${label.padEnd(14)} median ${(median(values) / 1000).toFixed(2)} s  (min ${(Math.min(...values) / 1000).toFixed(2)}, max ${(Math.max(...values) / 1000).toFixed(2)})`
  console.log(`skopeo push/pull of ${layers.length} layers (${layers.map((l) => l / MiB).join('+')} MiB), ${rounds} rounds, alternating`)
  console.log(line('direct push', times.directPush))
  console.log(line('portier push', times.portierPush))
  console.log(line('direct pull', times.directPull))
  console.log(line('portier pull', times.portierPull))
  console.log(`ratio push ${(median(times.portierPush) / median(times.directPush)).toFixed(2)}x, pull ${(median(times.portierPull) / median(times.directPull)).toFixed(2)}x the direct wall time`)
  console.log(`portier peak RSS ${(rss / MiB).toFixed(1)} MiB`)
} finally {
  await gateway.stop()
  await registry.stop()
  await rm(work, { recursive: true, force: true })
}
