// Prometheus metrics of retention, registered on the gateway's metrics registry: manifests and tags deleted, runs by result, the last run and what a dry run would delete.
import { Counter, Gauge, type Registry } from 'prom-client'
import type { RetentionReport } from './retention-run.js'

export function registerRetentionMetrics(registry: Registry): (report: RetentionReport) => void {
  const registers = [registry]
  const deleted = new Counter({ name: 'portier_retention_deleted_total', help: 'What retention deleted, by kind: manifest (one DELETE by digest) and tag (the tags that went with them).', labelNames: ['kind'], registers })
  const failed = new Counter({ name: 'portier_retention_delete_failures_total', help: 'Manifest deletes retention tried that the registry (or an immutable-tag rule, or maintenance) refused.', registers })
  const runs = new Counter({ name: 'portier_retention_runs_total', help: 'Retention runs finished, by result (success, failure) and kind (apply, dry_run).', labelNames: ['result', 'kind'], registers })
  const last = new Gauge({ name: 'portier_retention_last_run_timestamp_seconds', help: 'When the last retention run finished (Unix time), by kind (apply, dry_run).', labelNames: ['kind'], registers })
  const wouldDelete = new Gauge({ name: 'portier_retention_would_delete_manifests', help: 'Manifests the last dry run would delete.', registers })
  for (const kind of ['manifest', 'tag']) deleted.inc({ kind }, 0)
  for (const result of ['success', 'failure']) for (const kind of ['apply', 'dry_run']) runs.inc({ result, kind }, 0)
  return (report) => {
    const kind = report.dryRun ? 'dry_run' : 'apply'
    runs.inc({ result: report.result, kind })
    last.set({ kind }, Date.parse(report.finishedAt) / 1000)
    if (report.dryRun) {
      wouldDelete.set(report.totals.manifestsDeleted)
      return
    }
    deleted.inc({ kind: 'manifest' }, report.totals.manifestsDeleted)
    deleted.inc({ kind: 'tag' }, report.totals.tagsDeleted)
    failed.inc(report.totals.failed)
  }
}
