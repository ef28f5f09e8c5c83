// Helpers of the e2e tests that run several gateway instances (schedule-lock, shared-redis, gc-elsewhere): starting them, the scheduled times each ran (from their logs), their outcome counters, an image seeded straight into the registry.
import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import { gatewayFixture, type GatewayHandle, type LogLine } from './gateway.js'
import { GatewayClient, waitUntil } from './gwclient.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

export interface Instance {
  name: string
  gateway: GatewayHandle
  client: GatewayClient
  killed?: boolean
}

/** Gateways on one config, started one after another and named in order, each with a client closed at teardown. */
export async function startInstances(t: Test, names: readonly string[], config: Record<string, unknown>): Promise<Instance[]> {
  const instances: Instance[] = []
  for (const name of names) {
    const gateway = await gatewayFixture(t, { config })
    const client = new GatewayClient(gateway)
    t.teardown(() => client.close())
    instances.push({ name, gateway, client })
  }
  return instances
}

/** The scheduled times each instance ran a job at: turn (ISO time) → names of the instances whose log says they ran it. */
export function ranTurns(instances: readonly Instance[], job: string): Map<string, string[]> {
  const turns = new Map<string, string[]>()
  for (const instance of instances) {
    for (const line of instance.gateway.logs) {
      if (line.job !== job || line.outcome !== 'ran' || typeof line.turn !== 'string') continue
      turns.set(line.turn, [...(turns.get(line.turn) ?? []), instance.name])
    }
  }
  return turns
}

/** Sum of a job's outcome counter at an instance (portier_scheduled_runs_total). */
export async function outcomes(instance: Instance, job: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${instance.gateway.adminUrl as string}/metrics`)).text()
  const counts: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const match = /^portier_scheduled_runs_total\{job="([^"]+)",outcome="([^"]+)"\} (\d+)/.exec(line)
    if (match && match[1] === job) counts[match[2] as string] = Number(match[3])
  }
  return counts
}

export async function admin(instance: Instance, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${instance.gateway.adminUrl as string}${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  })
  return { status: response.status, json: (await response.json()) as Record<string, unknown> }
}

/** Pushes a one-config image straight to the registry (before the gateways start): something for the collector to mark. */
export async function seedImage(registryUrl: string, repository: string): Promise<void> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const digest = `sha256:${createHash('sha256').update(config).digest('hex')}`
  const started = await fetch(`${registryUrl}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  await started.arrayBuffer()
  const location = new URL(started.headers.get('location') ?? '', registryUrl)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  await put.arrayBuffer()
  if (put.status !== 201) throw new Error(`seeding a blob: ${put.status}`)
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest, size: config.length }, layers: [] })
  const stored = await fetch(`${registryUrl}/v2/${repository}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST } })
  await stored.arrayBuffer()
  if (stored.status !== 201) throw new Error(`seeding a manifest: ${stored.status}`)
}

export const isRan = (job: string) => (line: LogLine): boolean => line.job === job && line.outcome === 'ran'

/** Waits up to `timeoutMs` for an instance to start a run of `job` at a time not in `seen`: that instance and the time, or undefined. */
export async function nextRun(instances: readonly Instance[], job: string, seen: ReadonlySet<string>, timeoutMs: number): Promise<{ holder: Instance; turn: string } | undefined> {
  let found: { holder: Instance; turn: string } | undefined
  await waitUntil(() => {
    for (const instance of instances) {
      const line = instance.gateway.logs.find((entry) => isRan(job)(entry) && !seen.has(String(entry.turn)))
      if (line) {
        found = { holder: instance, turn: String(line.turn) }
        return true
      }
    }
    return false
  }, timeoutMs)
  return found
}

/**
 * Opens an upload session at an instance (POST), answered 202; a scheduled collection may hold maintenance on (405) for a
 * moment, so it is tried again for up to `timeoutMs`. Resolves with the last status.
 */
export async function openUpload(instance: Instance, repository: string, timeoutMs = 15_000): Promise<number> {
  const deadline = Date.now() + timeoutMs
  let status = 0
  for (let attempt = 0; attempt < 200; attempt++) {
    status = (await instance.client.send('POST', `/v2/${repository}/blobs/uploads/`)).status
    if (status !== 405 || Date.now() > deadline) break
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return status
}
