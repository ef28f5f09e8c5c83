// The store's metrics, registered on Portier's registry: writes committed, batch time, writes lost, the queue, and whether the engine answers (read at scrape time).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { StoreEngine } from './engine.js'

export function watchStore(store: StoreEngine, registry: Registry): void {
  const registers = [registry]
  const writes = new Counter({ name: 'portier_store_writes_total', help: 'Queued writes (pull times, audit entries, …) committed to the store.', registers })
  const batches = new Histogram({
    name: 'portier_store_batch_seconds',
    help: 'Time to commit one batch of queued writes (the main thread waits that long).',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  })
  const dropped = new Counter({ name: 'portier_store_writes_dropped_total', help: 'Queued writes lost: they failed, or a failed commit could not keep them queued.', registers })
  new Gauge({
    name: 'portier_store_queued_writes',
    help: 'Writes waiting for the next batch.',
    registers,
    collect() {
      this.set(store.queued)
    },
  })
  new Gauge({
    name: 'portier_store_up',
    help: 'Whether the store answers (1) or not (0: PostgreSQL unreachable; writes that can wait are queued, /readyz says not ready).',
    labelNames: ['engine'],
    registers,
    collect() {
      this.reset()
      this.set({ engine: store.kind }, store.health().up ? 1 : 0)
    },
  })
  store.watch({
    committed: (count, seconds) => {
      writes.inc(count)
      batches.observe(seconds)
    },
    dropped: (count) => dropped.inc(count),
  })
}

/** Counts the accepted logins the audit trail left out (audit.login_interval): what its rows do not show. */
export function countCoalescedLogins(registry: Registry): (action: string) => void {
  const coalesced = new Counter({
    name: 'portier_audit_logins_coalesced_total',
    help: 'Accepted logins not written to the audit trail because the same user, credential, address and user agent was recorded within audit.login_interval.',
    labelNames: ['action'],
    registers: [registry],
  })
  return (action) => coalesced.inc({ action })
}
