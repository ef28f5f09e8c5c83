// The pull-through caches' metrics, labelled by cache prefix (a handful of values, fixed by config).
import { Counter, Gauge, type Registry } from 'prom-client'

export type CachedKind = 'blob' | 'manifest'

export class CacheMetrics {
  readonly hits: Counter<'cache' | 'kind'>
  readonly misses: Counter<'cache' | 'kind'>
  readonly bytes: Counter<'cache' | 'source'>
  readonly remoteErrors: Counter<'cache' | 'reason'>
  readonly staleServes: Counter<'cache'>
  readonly evicted: Counter<'cache' | 'reason'>
  readonly storedBytes: Gauge<'cache'>

  constructor(registry: Registry) {
    const registers = [registry]
    this.hits = new Counter({
      name: 'portier_pull_through_hits_total',
      help: 'Pulls a cache answered from what it holds: blobs and manifests by digest already stored, tags inside their revalidation interval.',
      labelNames: ['cache', 'kind'],
      registers,
    })
    this.misses = new Counter({
      name: 'portier_pull_through_misses_total',
      help: 'Pulls a cache sent on to its remote: content not stored yet, tags due for revalidation.',
      labelNames: ['cache', 'kind'],
      registers,
    })
    this.bytes = new Counter({
      name: 'portier_pull_through_bytes_total',
      help: 'Body bytes of a cache: source="remote" fetched from its remote (by its registry, counted as they arrive), source="cache" sent to clients from what it held.',
      labelNames: ['cache', 'source'],
      registers,
    })
    this.remoteErrors = new Counter({
      name: 'portier_pull_through_remote_errors_total',
      help: 'A cache\'s remote failed: unreachable (reason="unreachable"), rate limited (429), or answered 5xx.',
      labelNames: ['cache', 'reason'],
      registers,
    })
    this.evicted = new Counter({
      name: 'portier_pull_through_evicted_repositories_total',
      help: 'Repositories taken out of a cache\'s storage (fetched again on their next pull): reason="size" to keep it under max_bytes, reason="age" not pulled within max_age.',
      labelNames: ['cache', 'reason'],
      registers,
    })
    this.storedBytes = new Gauge({
      name: 'portier_pull_through_stored_bytes',
      help: 'Bytes of blobs in a cache\'s storage when it was last measured (caches with max_bytes or max_age).',
      labelNames: ['cache'],
      registers,
    })
    this.staleServes = new Counter({
      name: 'portier_pull_through_stale_serves_total',
      help: 'Pulls by tag answered with the digest the cache held because its remote was unreachable.',
      labelNames: ['cache'],
      registers,
    })
  }
}
