// Prometheus gauges of the registry storage from the last sample (src/app/usage.ts): bytes on disk, bytes of the images, repositories.
import { Gauge, type Registry } from 'prom-client'

export interface UsageMetrics {
  sampled(sample: { diskBytes: number; blobBytes: number; repositories: number }): void
}

export function registerUsageMetrics(registry: Registry): UsageMetrics {
  const registers = [registry]
  const bytes = new Gauge({
    name: 'portier_storage_bytes',
    help: 'The registry storage at the last sample (gc.usage_interval, and after each GC): kind="disk" allocated under the storage root (du), kind="blobs" the blobs some manifest references, each counted once.',
    labelNames: ['kind'],
    registers,
  })
  const repositories = new Gauge({ name: 'portier_storage_repositories', help: 'Repositories in the registry storage at the last sample.', registers })
  return {
    sampled(sample) {
      bytes.set({ kind: 'disk' }, sample.diskBytes)
      bytes.set({ kind: 'blobs' }, sample.blobBytes)
      repositories.set(sample.repositories)
    },
  }
}
