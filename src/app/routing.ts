// Builds the router from config: the strategy (with the upload-URL secret when it signs uploads), health as routing reads it, and the log lines and metrics of routing events.
import type { Config } from './config.js'
import type { Logger } from '../observe/log.js'
import type { Metrics } from '../observe/metrics.js'
import type { Forwarder } from '../forward/forward.js'
import type { HealthMonitor } from '../upstreams/health.js'
import { Router } from '../routing/router.js'
import type { PullThrough } from '../routing/pull-through.js'
import { TagCache } from '../forward/tag-cache.js'
import { BlobStorage } from '../storage/blob-server.js'
import { storageRoots } from '../storage/roots.js'
import { UploadServer } from '../storage/upload-server.js'
import { StorageUploads } from '../storage/upload-store.js'
import { runningHashChannel, shareRunningHashes } from '../storage/hash-exchange.js'
import type { Bus, SharedState } from '../shared/types.js'
import { createStrategy } from '../routing/strategies.js'
import { loadRoutingSecret, UploadTokens } from '../uploads/token.js'
import type { Upstream } from '../upstreams/upstreams.js'
import type { CacheInvalidation } from './shared.js'

export interface RoutingDeps {
  health: HealthMonitor
  forwarder: Forwarder
  log: Logger
  metrics: Metrics | undefined
  /** Pull-through caches served in front of the strategy (caches). */
  pullThrough?: PullThrough
  /** Tells the other instances (shared.redis) which tags a manifest write here may have moved, and hears theirs. */
  invalidation?: CacheInvalidation
  /** The shared state's engine and bus: uploads into storage ask the other workers (server.workers) or instances (shared.redis, sealed) for running hashes over it. */
  shared?: { engine: SharedState['engine']; bus: Bus; up: () => boolean } | undefined
}

export function createRouter(config: Config, upstreams: Upstream[], deps: RoutingDeps): Router {
  const { health, forwarder, log, metrics, invalidation } = deps
  // routing.secret, read (or generated) once, when something needs it.
  let secret: Buffer | undefined
  const routingSecret = (): Buffer => {
    if (secret) return secret
    const loaded = loadRoutingSecret(config.routing.secret, config.routing.secret_file)
    if (loaded.created) log.info({ file: config.routing.secret_file }, 'generated the key that signs upload URLs and seals running-hash answers; give every gateway instance the same one')
    secret = loaded.secret
    return secret
  }
  const strategy = createStrategy(config.routing, {
    upstreams,
    isAvailable: (upstream) => health.isAvailable(upstream),
    forwarder,
    // Only strategies that pin uploads to upstreams sign upload URLs; one upstream keeps the registry's own URLs.
    uploadTokens: () => new UploadTokens(routingSecret(), upstreams.map((upstream) => upstream.name)),
    onMirrorBranchFailure(operation, repository, failure) {
      metrics?.mirrorBranchFailures.inc({ upstream: failure.upstream, operation })
      log.warn({ operation, repository, ...failure }, 'upstream failed its part of a mirrored write')
    },
  })
  // Tag resolutions (cache.tags, 0 turns it off); every manifest write routed here (or, with shared.redis, at
  // another instance) forgets the tags it may move.
  const tagCache = config.cache.tags.ttl > 0
    ? new TagCache({ ttlMs: config.cache.tags.ttl, maxEntries: config.cache.tags.max_entries }, {
        hit: () => metrics?.tagCacheHits.inc(),
        miss: () => metrics?.tagCacheMisses.inc(),
        entries: (held) => metrics?.tagCacheEntries.set(held),
        ...(invalidation ? { moved: (repository: string, reference: string) => invalidation.tagMoved(repository, reference) } : {}),
      })
    : undefined
  if (tagCache) invalidation?.attachTags(tagCache)
  // With server.workers or shared.redis, a commit may reach another process than the upload's bytes did: it asks that one for the running hash.
  const channel = deps.shared && upstreams.some((upstream) => upstream.storageUploads === true) ? runningHashChannel(deps.shared.engine, deps.shared.bus, routingSecret, { keyPrefix: config.shared.redis.key_prefix, up: deps.shared.up }) : undefined
  const uploads: StorageUploads = new StorageUploads({
    ...(channel ? { peers: shareRunningHashes(channel, (dir, size) => uploads.takeRunning(dir, size)) } : {}),
    digested: (source) => metrics?.blobStorageUploadDigests.inc({ source }),
  })
  const router = new Router({
    strategy,
    forwarder,
    ...(deps.pullThrough ? { pullThrough: deps.pullThrough } : {}),
    ...(tagCache ? { tagCache } : {}),
    // GET /v2/ is answered by the gateway while the upstream it would go to answers its checks with 200.
    health,
    storage: new BlobStorage({
      served: (upstream, status) => metrics?.blobStorageReads.inc({ upstream, result: String(status) }),
      bytes: (upstream, count) => metrics?.blobStorageBytes.inc({ upstream }, count),
      fallback(upstream, reason, error) {
        metrics?.blobStorageReads.inc({ upstream, result: reason })
        // A missing link or file is the registry's 404 (or a blob being deleted): only a failing disk is worth a line.
        if (error !== undefined) log.warn({ upstream, reason, err: error instanceof Error ? error.message : 'unknown error' }, 'could not read a blob from the upstream\'s storage; the registry answers')
      },
    }),
    uploads: new UploadServer(uploads, {
      answered: (upstream, status) => metrics?.blobStorageUploads.inc({ upstream, result: String(status) }),
      bytes: (upstream, count) => metrics?.blobStorageUploadBytes.inc({ upstream }, count),
    }),
    events: {
      failover(from, to, reason, request) {
        metrics?.upstreamFailovers.inc({ upstream: from.name, reason })
        const line = { from: from.name, to: to.name, reason, operation: request.op, repository: request.repository }
        // Not finding content on one mirror is expected after a quorum push; an unreachable upstream is not.
        if (reason === 'connect') log.warn(line, 'read failed over to another upstream')
        else log.debug(line, 'read moved on to the next mirror')
      },
      catalogUpstreamFailed(upstream, reason) {
        log.warn({ upstream: upstream.name, reason }, 'upstream left out of the merged catalog')
      },
      tagsUpstreamFailed(upstream, reason) {
        log.warn({ upstream: upstream.name, reason }, 'upstream left out of the tag list')
      },
      referrersIndexFailed(repository, subject, reason) {
        log.warn({ repository, subject, reason }, 'referrer stored, but its subject\'s referrers index could not be updated')
      },
    },
  })
  for (const storage of storageRoots(upstreams)) {
    // A root that is not there is a wrong path or a missing mount: every blob then goes through the registry.
    if (storage.state === 'missing') log.warn(storage, 'upstreams[].storage: cannot read this directory; blobs go through the registry')
    else log.info(storage, 'blob GET/HEAD answered from the upstream\'s storage')
    if (storage.uploads === 'not_writable') log.warn(storage, 'upstreams[].storage_uploads: cannot write into this storage; uploads fail until it is writable (same user as the registry, a read-write mount)')
    else if (storage.uploads === 'writable') log.info(storage, 'blob uploads written into the upstream\'s storage')
  }
  const described = strategy.describe()
  if (described) {
    log.info(
      { strategy: strategy.name, ...described, upstreams: upstreams.map((upstream) => ({ name: upstream.name, weight: upstream.weight })) },
      'routing over several upstreams',
    )
  }
  return router
}
