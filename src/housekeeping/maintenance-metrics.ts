// Maintenance metrics: portier_maintenance (1 while writes are refused) and the writes in flight it waits for, read at every scrape.
import { Gauge, type Registry } from 'prom-client'
import type { Maintenance } from './maintenance.js'

export function registerMaintenanceMetrics(registry: Registry, maintenance: Maintenance): void {
  const registers = [registry]
  new Gauge({
    name: 'portier_maintenance',
    help: '1 while maintenance mode is on (writes refused, reads served), else 0.',
    registers,
    collect() {
      this.set(maintenance.isOn ? 1 : 0)
    },
  })
  new Gauge({
    name: 'portier_writes_in_flight',
    help: 'Writes a maintenance waits for, by kind: upload (sessions begun and not finished or cancelled), other (manifest PUTs, deletes, mounts being served).',
    labelNames: ['kind'],
    registers,
    collect() {
      const inFlight = maintenance.inFlight()
      this.set({ kind: 'upload' }, inFlight.uploads)
      this.set({ kind: 'other' }, inFlight.writes)
    },
  })
}
