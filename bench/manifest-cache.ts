// Manifest GET and HEAD by digest through Portier with the manifest cache on and off (cache.manifests.max_bytes),
// authenticated (htpasswd, bcrypt cost 10, the credential cache warm), 32 connections, alternating rounds, medians.
// Run: npm run build && bash scripts/with-node.sh node --import=tsx bench/manifest-cache.ts [rounds] [seconds]
// Everything runs on 127.0.0.1; every run is bounded in time and every process started here is stopped.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { hashPassword } from '../src/auth/hashes.js'
import { abHead, wrk, type LoadResult } from './lib/load.js'
import { fmt, median } from './lib/stats.js'

const rounds = Number(process.argv[2] ?? 3)
const seconds = Number(process.argv[3] ?? 5)
const CONNECTIONS = 32
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

const work = await mkdtemp(join(tmpdir(), 'portier-bench-manifest-cache-'))
const registry = await startRegistry()
const gateways: GatewayHandle[] = []
try {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const started = await fetch(`${registry.url}/v2/bench/app/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', sha256(config))
  await fetch(location, { method: 'PUT', body: config })
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [] }))
  const pushed = await fetch(`${registry.url}/v2/bench/app/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST } })
  if (pushed.status !== 201) throw new Error(`manifest push: ${pushed.status}`)
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `bench:${await hashPassword('bench-password', 10)}\n`)
  const base = { upstreams: [{ url: registry.url }], auth: { mode: 'htpasswd', htpasswd: { path: htpasswd } } }
  const variants = [
    { name: 'cache off', gateway: await startGateway({ config: { ...base, cache: { manifests: { max_bytes: 0 } } } }) },
    { name: 'cache on', gateway: await startGateway({ config: { ...base, cache: { manifests: { max_bytes: '64MiB' } } } }) },
  ]
  gateways.push(...variants.map((variant) => variant.gateway))
  const headers = [`Authorization: Basic ${Buffer.from('bench:bench-password').toString('base64')}`, `Accept: ${OCI_MANIFEST}`]
  const results = new Map<string, LoadResult[]>()
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const url = `${variant.gateway.url}/v2/bench/app/manifests/${sha256(manifest)}`
      for (const [method, load] of [['GET', wrk], ['HEAD', abHead]] as const) {
        const result = await load({ url, seconds, connections: CONNECTIONS, headers })
        const key = `${method} ${variant.name}`
        results.set(key, [...(results.get(key) ?? []), result])
        console.log(`round ${round + 1} ${key}: ${fmt(result.requestsPerSecond)} req/s, p50 ${result.p50ms} ms, p99 ${result.p99ms} ms, errors ${result.errors}`)
      }
    }
  }
  console.log(`\n| request (by digest, ${CONNECTIONS} connections, ${rounds} rounds of ${seconds} s) | cache off req/s | cache on req/s | on/off |`)
  console.log('|---|---|---|---|')
  for (const method of ['GET', 'HEAD']) {
    const off = median((results.get(`${method} cache off`) ?? []).map((r) => r.requestsPerSecond))
    const on = median((results.get(`${method} cache on`) ?? []).map((r) => r.requestsPerSecond))
    console.log(`| ${method} manifest | ${fmt(off)} | ${fmt(on)} | ${(on / off).toFixed(2)}× |`)
  }
} finally {
  await Promise.all(gateways.map((gateway) => gateway.stop()))
  await registry.stop()
  await rm(work, { recursive: true, force: true })
}
