// The small-request benches' fixture: one tagged manifest pushed straight to the registry, and HEAD load on it
// through a gateway with the gateway's CPU per request (steadier than req/s on a loaded machine).
import { createHash } from 'node:crypto'
import type { GatewayHandle } from '../../test/helpers/gateway.js'
import { abHead, type LoadResult } from './load.js'
import { cpuSeconds } from './procs.js'

export const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json'
/** The manifest every HEAD asks for. */
export const MANIFEST_PATH = '/v2/bench/app/manifests/v1'

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** Pushes bench/app:v1 (a config blob and a manifest without layers) to the registry directly. */
export async function pushManifest(registryUrl: string): Promise<void> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  const started = await fetch(`${registryUrl}/v2/bench/app/blobs/uploads/`, { method: 'POST' })
  const location = new URL(started.headers.get('location') ?? '', registryUrl)
  location.searchParams.set('digest', sha256(config))
  const put = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (put.status !== 201) throw new Error(`config blob: ${put.status}`)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length }, layers: [] }))
  const stored = await fetch(`${registryUrl}${MANIFEST_PATH}`, { method: 'PUT', body: manifest, headers: { 'content-type': MANIFEST_TYPE } })
  if (stored.status !== 201) throw new Error(`manifest: ${stored.status}`)
}

export interface HeadLoad extends LoadResult {
  /** Gateway CPU per request, microseconds. */
  cpuUsPerRequest: number
}

/** `seconds` of authenticated HEADs on `connections` connections (ab), with the gateway's CPU per request. */
export async function headLoad(gateway: GatewayHandle, authorization: string, seconds: number, connections: number): Promise<HeadLoad> {
  const pid = gateway.child.pid ?? 0
  const before = await cpuSeconds(pid)
  const result = await abHead({ url: `${gateway.url}${MANIFEST_PATH}`, seconds, connections, headers: [`Authorization: ${authorization}`, `Accept: ${MANIFEST_TYPE}`] })
  const used = (await cpuSeconds(pid)) - before
  return { ...result, cpuUsPerRequest: (used * 1e6) / Math.max(1, result.requestsPerSecond * seconds) }
}
