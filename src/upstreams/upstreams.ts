// Owns the upstream registries: one pooled keep-alive undici dispatcher each (which of them serves a request is routing's choice).
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { rootCertificates } from 'node:tls'
import { Pool } from 'undici'
import type { UpstreamConfig } from './section.js'
import type { TimeoutsConfig } from '../pipeline/section.js'

export interface Upstream {
  name: string
  /** Authorization sent to this upstream in place of the client's (undefined: none). */
  authorization?: string
  /** Whether the client's own Authorization header goes through unchanged. */
  forwardAuthorization: boolean
  /** Origin without a trailing slash, e.g. "http://127.0.0.1:5000". */
  origin: string
  /** Relative share of repositories (by-repository) or requests (shared); 1 unless configured. */
  weight: number
  pool: Pool
  /** Health checks' own small pool: a check never queues behind client requests that fill `pool`. */
  healthPool: Pool
  /** The registry's filesystem storage root, when Portier may read it (blob GET/HEAD answered from it). */
  storage?: string
  /** Blob uploads are held by Portier and written into `storage` (upstreams[].storage_uploads). */
  storageUploads?: boolean
}

export interface UpstreamSet {
  all: Upstream[]
  close(): Promise<void>
}

export function createUpstreams(targets: Array<Partial<UpstreamConfig> & { url: string }>, timeouts: TimeoutsConfig): UpstreamSet {
  const all: Upstream[] = targets.map((target) => {
    const origin = new URL(target.url).origin
    const connect = { timeout: timeouts.upstream_connect, ...tlsOptions(target) }
    return {
      name: target.name || new URL(origin).host,
      forwardAuthorization: target.forward_authorization ?? false,
      ...(target.username ? { authorization: `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}` } : {}),
      origin,
      weight: target.weight ?? 1,
      ...(target.storage ? { storage: resolve(target.storage) } : {}),
      ...(target.storage && target.storage_uploads === true ? { storageUploads: true } : {}),
      pool: new Pool(origin, {
        connections: 128,
        pipelining: 1,
        // HTTP/1.1 only: undici 8 would negotiate HTTP/2 with an HTTPS registry that offers it (distribution does),
        // and the forwarding (hop-by-hop headers, streaming PATCH, one request per connection) is built on HTTP/1.1.
        allowH2: false,
        keepAliveTimeout: 30_000,
        connect,
        headersTimeout: timeouts.upstream_headers,
        // Blob bodies have no total timeout: only an idle timeout between chunks.
        bodyTimeout: timeouts.body_idle,
      }),
      healthPool: new Pool(origin, { connections: 1, pipelining: 1, allowH2: false, keepAliveTimeout: 30_000, connect }),
    }
  })
  if (all.length === 0) throw new Error('no upstream registry configured')
  return {
    all,
    close: async () => {
      await Promise.all(all.flatMap((upstream) => [upstream.pool, upstream.healthPool]).map((pool) => pool.close().catch(() => undefined)))
    },
  }
}

/** TLS options toward one upstream: extra CA certificates (added to the system roots) and a client certificate. */
function tlsOptions(target: Partial<UpstreamConfig>): { ca?: string[]; cert?: string; key?: string } {
  const options: { ca?: string[]; cert?: string; key?: string } = {}
  if (target.ca_bundle) options.ca = [...rootCertificates, readFileSync(target.ca_bundle, 'utf8')]
  if (target.client_cert && target.client_key) {
    options.cert = readFileSync(target.client_cert, 'utf8')
    options.key = readFileSync(target.client_key, 'utf8')
  }
  return options
}
