// The `cache` config section: what the gateway keeps in memory to answer without the upstream.
import { z } from 'zod'
import { duration, section, size, whole } from '../config/fields.js'

export const cacheSection = section({
  /** Manifests by digest (immutable), answered after authorization; 0 turns the cache off. On by default: content by digest cannot change, and deletes through Portier evict. */
  manifests: section({
    max_bytes: size().default(64 * 1024 * 1024),
  }).prefault({}),
  /** Tag → digest resolutions (manifest HEAD/GET by tag), kept `ttl`; writes through Portier forget them at once, a change made on the registry directly is seen within `ttl`. 0 turns the cache off. */
  tags: section({
    ttl: duration().default(2_000),
    max_entries: whole({ min: 1 }).default(10_000),
  }).prefault({}),
}).prefault({})

export type CacheConfig = z.output<typeof cacheSection>
