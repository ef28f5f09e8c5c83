// Starts the pull-through caches: one embedded registry in proxy mode per cache (its own data directory, the remote's credentials and CA), and the routes in front of the configured routing.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { rootCertificates } from 'node:tls'
import type { Registry } from 'prom-client'
import { startEmbeddedRegistry, type EmbeddedRegistry } from '../embedded/registry.js'
import type { Logger } from '../observe/log.js'
import type { TimeoutsConfig } from '../pipeline/section.js'
import { createUpstreams, type UpstreamSet } from '../upstreams/upstreams.js'
import { CacheMetrics } from './metrics.js'
import { RemoteProbe } from './remote.js'
import { RemoteRelay } from './relay.js'
import { evict, EvictionMemory } from './eviction.js'
import { CacheRoutes, type PullThroughCache } from './routes.js'
import { isDockerHub, mirrorsOf, type CacheConfig } from './section.js'

export { cachesSection, cachesProblems, cacheSourceOf, type CacheConfig } from './section.js'
export type { CacheRoutes } from './routes.js'

export interface CachesDeps {
  /** embedded_registry.binary and restart_max_backoff: the caches run the same registry binary. */
  binary: string
  maxBackoffMs: number
  timeouts: TimeoutsConfig
  log: Logger
  /** Where the metrics are registered; none without metrics. */
  metricsRegistry?: Registry
}

export interface PullThroughCaches {
  routes: CacheRoutes
  /** Each cache's prefix, remote and registry, for the start-up log and the UI. */
  describe(): Array<{ prefix: string; remote: string; registry: string }>
  stop(): Promise<void>
}

/** Starts every cache's registry (a failure stops the ones already started) and builds the routes. */
export async function startCaches(configs: readonly CacheConfig[], deps: CachesDeps): Promise<PullThroughCaches> {
  const registries: EmbeddedRegistry[] = []
  const probes: RemoteProbe[] = []
  const relays: RemoteRelay[] = []
  let upstreams: UpstreamSet | undefined
  const timers: NodeJS.Timeout[] = []
  const stop = async (): Promise<void> => {
    for (const timer of timers) clearInterval(timer)
    await upstreams?.close()
    await Promise.all(probes.map((probe) => probe.close().catch(() => undefined)))
    await Promise.all(registries.map((registry) => registry.stop()))
    await Promise.all(relays.map((relay) => relay.close()))
  }
  const metrics = deps.metricsRegistry ? new CacheMetrics(deps.metricsRegistry) : undefined
  try {
    const started: Array<{ config: CacheConfig; registry: EmbeddedRegistry; dataDir: string; relay: RemoteRelay }> = []
    for (const config of configs) {
      const dataDir = resolve(config.data_dir || join('data/caches', config.prefix))
      mkdirSync(dataDir, { recursive: true })
      const env: Record<string, string> = {}
      // registry:2 trusts the system pool only; Go reads SSL_CERT_FILE in its place, so the bundle carries the system roots too.
      if (config.ca_file) {
        const bundle = join(dataDir, 'remote-ca.pem')
        writeFileSync(bundle, [...rootCertificates, readFileSync(config.ca_file, 'utf8')].join('\n'))
        env.SSL_CERT_FILE = bundle
      }
      const password = config.password_file ? readFileSync(config.password_file, 'utf8').replace(/\r?\n$/, '') : ''
      const relay = new RemoteRelay(
        {
          remote: config.remote,
          username: config.username,
          password,
          caFile: config.ca_file,
          connectTimeoutMs: deps.timeouts.upstream_connect,
          headersTimeoutMs: deps.timeouts.upstream_headers,
          bodyIdleMs: deps.timeouts.body_idle,
        },
        {
          bytes: (count) => metrics?.bytes.inc({ cache: config.prefix, source: 'remote' }, count),
          failed: (reason) => metrics?.remoteErrors.inc({ cache: config.prefix, reason }),
        },
      )
      relays.push(relay)
      await relay.start()
      const registry = await startEmbeddedRegistry({
        binary: deps.binary,
        dataDir,
        maxBackoffMs: deps.maxBackoffMs,
        log: deps.log.child({ cache: config.prefix }),
        // The registry asks the relay; it uses the credentials itself only for a token service the remote names (Docker Hub's).
        proxy: { remoteurl: relay.url, username: config.username, password },
        env,
        component: 'pull-through-cache',
      })
      registries.push(registry)
      started.push({ config, registry, dataDir, relay })
    }
    upstreams = createUpstreams(
      // Its storage is Portier's to read: a cached blob is sent from disk (upstreams[].storage's fast path), not through the registry.
      started.map(({ config, registry, dataDir }) => ({ name: `cache:${config.prefix}`, url: registry.url, storage: join(dataDir, 'storage') })),
      deps.timeouts,
    )
    const caches: PullThroughCache[] = started.map(({ config, dataDir, relay }, index) => {
      const probe = new RemoteProbe(new URL(config.remote).origin, config.ca_file, Math.min(deps.timeouts.upstream_connect, 5000))
      probes.push(probe)
      const upstream = upstreams?.all[index]
      if (!upstream) throw new Error(`no upstream for cache ${config.prefix}`)
      return {
        prefix: config.prefix,
        remote: config.remote,
        upstream,
        storage: join(dataDir, 'storage'),
        dockerHub: isDockerHub(config),
        mirrorOf: mirrorsOf(config),
        unprefixed: config.unprefixed,
        revalidateMs: config.revalidate,
        probe,
        relay,
      }
    })
    const log = deps.log.child({ component: 'pull-through-cache' })
    const routes = new CacheRoutes(caches, { log, ...(metrics ? { metrics } : {}) })
    for (const [index, { config }] of started.entries()) {
      const storage = caches[index]?.storage
      if ((config.max_bytes <= 0 && config.max_age <= 0) || storage === undefined) continue
      let running = false
      const memory = new EvictionMemory()
      const check = async (): Promise<void> => {
        const limits = { maxBytes: config.max_bytes, maxAgeMs: config.max_age }
        const result = await evict(storage, limits, config.eviction_interval, (name) => routes.lastPulled(config.prefix, name), memory)
        for (const name of [...result.aged, ...result.repositories]) routes.forget(config.prefix, name)
        metrics?.storedBytes.set({ cache: config.prefix }, result.bytesAfter + result.bytesPending)
        if (result.aged.length > 0) {
          metrics?.evicted.inc({ cache: config.prefix, reason: 'age' }, result.aged.length)
          log.info({ cache: config.prefix, max_age_ms: config.max_age, bytes_before: result.bytesBefore, bytes_after: result.bytesAfter, bytes_pending: result.bytesPending, repositories: result.aged, blobs: result.blobs }, 'pull-through cache: repositories not pulled within max_age evicted')
        }
        if (result.repositories.length > 0) {
          metrics?.evicted.inc({ cache: config.prefix, reason: 'size' }, result.repositories.length)
          log.info({ cache: config.prefix, max_bytes: config.max_bytes, bytes_before: result.bytesBefore, bytes_after: result.bytesAfter, bytes_pending: result.bytesPending, repositories: result.repositories, blobs: result.blobs }, 'pull-through cache over max_bytes: repositories pulled longest ago evicted')
        }
      }
      const timer = setInterval(() => {
        if (running) return
        running = true
        const done = (): void => {
          running = false
        }
        check()
          .catch((error: unknown) => log.warn({ cache: config.prefix, err: error instanceof Error ? error.message : String(error) }, 'pull-through cache eviction failed'))
          .then(done, done)
      }, config.eviction_interval)
      timer.unref()
      timers.push(timer)
    }
    return {
      routes,
      describe: () => started.map(({ config, registry }) => ({ prefix: config.prefix, remote: config.remote, registry: registry.url })),
      stop,
    }
  } catch (error) {
    await stop()
    throw error
  }
}
