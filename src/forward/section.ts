// The `cache` config section: what the gateway keeps in memory to answer without the upstream.
import { z } from 'zod'
import { section, size } from '../config/fields.js'

export const cacheSection = section({
  /** Manifests by digest (immutable), answered after authorization; 0 turns the cache off. On by default: content by digest cannot change, and deletes through Portier evict. */
  manifests: section({
    max_bytes: size().default(64 * 1024 * 1024),
  }).prefault({}),
}).prefault({})

export type CacheConfig = z.output<typeof cacheSection>
