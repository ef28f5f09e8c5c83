// A 3 x 100 MiB image pulled with skopeo: from the remote directly (TLS + basic auth) vs through a Portier pull-through cache, cold (first pull) and warm (cached), alternating rounds, medians.
// Run: npm run bench:pull-through -- [rounds] [layer MiB]
// Everything runs on 127.0.0.1; every process started here is stopped, every directory removed.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../test/helpers/exec.js'
import { startRegistry, type RegistryHandle } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { buildLayout } from '../test/helpers/oci-build.js'
import { skopeoCopy, type SkopeoCopyOptions } from '../test/helpers/skopeo.js'
import { fmt, median } from './lib/stats.js'

const rounds = Number(process.argv[2] ?? 3)
const layerMiB = Number(process.argv[3] ?? 100)
const work = join(tmpdir(), `portier-bench-pt-${process.pid}`)
await mkdir(work, { recursive: true })
const file = (name: string): string => join(work, name)
let remote: RegistryHandle | undefined
let gateway: GatewayHandle | undefined
let local: RegistryHandle | undefined

async function openssl(...args: string[]): Promise<void> {
  const result = await run('openssl', args, { cwd: work })
  if (result.code !== 0) throw new Error(`openssl: ${result.stderr}`)
}

/** One skopeo pull into a fresh oci: directory, in ms; the directory is removed after. */
async function pull(source: string, options: SkopeoCopyOptions): Promise<number> {
  const target = file(`pulled-${Math.random().toString(36).slice(2)}`)
  const started = process.hrtime.bigint()
  const copied = await skopeoCopy(source, `oci:${target}:v1`, { ...options, timeoutMs: 600_000 })
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  await rm(target, { recursive: true, force: true })
  if (copied.code !== 0) throw new Error(`pull ${source}: ${copied.stderr}`)
  return ms
}

try {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  await openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=bench remote CA', '-days', '2')
  await writeFile(file('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  await openssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=bench remote')
  await openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext')
  await mkdir(file('remote-certs'))
  await writeFile(file('remote-certs/ca.crt'), await readFile(file('ca.crt')))
  await writeFile(file('remote.htpasswd'), (await run('htpasswd', ['-Bbn', 'bench', 'bench-secret'])).stdout)
  await writeFile(file('remote.password'), 'bench-secret\n')
  remote = await startRegistry({ tls: { certificate: file('server.crt'), key: file('server.key'), ca: file('ca.crt') }, htpasswd: file('remote.htpasswd') })
  const remoteCreds = { srcCreds: 'bench:bench-secret', srcCertDir: file('remote-certs'), destCreds: 'bench:bench-secret', destCertDir: file('remote-certs') }
  const layout = await buildLayout(file('layout'), 'v1', [{ layers: [layerMiB, layerMiB, layerMiB].map((mib) => mib * 1024 * 1024) }])
  const pushed = await skopeoCopy(`oci:${layout.dir}:v1`, `docker://${remote.url.slice('https://'.length)}/bench/big:v1`, { ...remoteCreds, timeoutMs: 600_000 })
  if (pushed.code !== 0) throw new Error(`push: ${pushed.stderr}`)
  await rm(layout.dir, { recursive: true, force: true })

  gateway = await startGateway({
    config: {
      auth: { mode: 'none' },
      upstreams: [{ url: (local = await startRegistry()).url }],
      caches: [{ prefix: 'hub', remote: remote.url, username: 'bench', password_file: file('remote.password'), ca_file: file('ca.crt') }],
    },
  })
  const viaCache = { srcCertDir: gateway.certDir }
  const direct = `docker://${remote.url.slice('https://'.length)}/bench/big:v1`
  const cached = `docker://${gateway.host}/hub/bench/big:v1`

  const cold = await pull(cached, viaCache)
  // The cache's registry stores what it served in the background: give it time to finish before warm pulls.
  await new Promise((resolve) => setTimeout(resolve, 5000))
  const times: Record<'direct' | 'warm', number[]> = { direct: [], warm: [] }
  for (let round = 0; round < rounds; round++) {
    times.direct.push(await pull(direct, { srcCreds: remoteCreds.srcCreds, srcCertDir: remoteCreds.srcCertDir }))
    times.warm.push(await pull(cached, viaCache))
  }
  const size = `${3 * layerMiB} MiB`
  console.log(`pull of a 3 x ${layerMiB} MiB image (${size}), skopeo to an oci: directory, ${rounds} alternating rounds, medians:`)
  console.log(`  remote directly (TLS, basic auth)   ${fmt(median(times.direct))} ms   runs ${times.direct.map((ms) => fmt(ms)).join(', ')}`)
  console.log(`  through the cache, first pull       ${fmt(cold)} ms   (one run)`)
  console.log(`  through the cache, cached           ${fmt(median(times.warm))} ms   runs ${times.warm.map((ms) => fmt(ms)).join(', ')}`)
  console.log(`  cached / direct                     ${(median(times.warm) / median(times.direct)).toFixed(2)}x`)
} finally {
  await gateway?.stop()
  await remote?.stop()
  await local?.stop()
  await rm(work, { recursive: true, force: true })
}
