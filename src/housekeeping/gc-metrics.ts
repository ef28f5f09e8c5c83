// Prometheus metrics of garbage collection, registered on the gateway's metrics registry: runs by result, bytes freed, duration, last run.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { GcRun } from './gc.js'

/** A collection takes seconds on a small registry and can take an hour on a large one. */
const GC_BUCKETS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200]

export interface GcMetrics {
  running(on: boolean): void
  finished(run: GcRun): void
}

export function registerGcMetrics(registry: Registry): GcMetrics {
  const registers = [registry]
  const runs = new Counter({ name: 'portier_gc_runs_total', help: 'Garbage collections finished, by result (success, failure) and kind (collect, dry_run).', labelNames: ['result', 'kind'], registers })
  const freed = new Counter({ name: 'portier_gc_bytes_freed_total', help: 'Bytes of registry storage freed by garbage collection (disk usage before minus after).', registers })
  const blobs = new Counter({ name: 'portier_gc_blobs_deleted_total', help: 'Blobs the registry\'s collector deleted.', registers })
  const manifests = new Counter({ name: 'portier_gc_manifests_deleted_total', help: 'Untagged manifests the collector deleted (--delete-untagged).', registers })
  const duration = new Histogram({ name: 'portier_gc_duration_seconds', help: 'How long a garbage collection took, maintenance and waiting for writes included.', buckets: GC_BUCKETS, registers })
  const last = new Gauge({ name: 'portier_gc_last_run_timestamp_seconds', help: 'When the last garbage collection finished (Unix time), by result.', labelNames: ['result'], registers })
  const lastFreed = new Gauge({ name: 'portier_gc_last_bytes_freed', help: 'Bytes the last successful collection freed.', registers })
  const storage = new Gauge({ name: 'portier_gc_storage_bytes', help: 'Disk usage of the registry storage measured by the last garbage collection (after it).', registers })
  const active = new Gauge({ name: 'portier_gc_running', help: '1 while a garbage collection runs.', registers })
  for (const result of ['success', 'failure']) for (const kind of ['collect', 'dry_run']) runs.inc({ result, kind }, 0)
  return {
    running: (on) => active.set(on ? 1 : 0),
    finished(run) {
      runs.inc({ result: run.result, kind: run.dryRun ? 'dry_run' : 'collect' })
      duration.observe(run.durationSeconds)
      last.set({ result: run.result }, Date.parse(run.finishedAt) / 1000)
      if (run.bytesAfter > 0) storage.set(run.bytesAfter)
      if (run.dryRun) return
      freed.inc(run.bytesFreed)
      blobs.inc(run.blobsDeleted)
      manifests.inc(run.manifestsDeleted)
      if (run.result === 'success') lastFreed.set(run.bytesFreed)
    },
  }
}
