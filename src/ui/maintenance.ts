// The web UI's view of maintenance mode: its state for the banner, and the switch (read and applied as the admin API does).
import { parseMaintenanceSwitch, switchMaintenance } from '../admin/maintenance-routes.js'
import type { Maintenance } from '../housekeeping/maintenance.js'
import type { Logger } from '../observe/log.js'
import { RegistryError } from '../registry/errors.js'
import type { UiMaintenance } from './api.js'

export function uiMaintenance(maintenance: Maintenance, log: Logger): UiMaintenance {
  return {
    status: () => maintenance.status(),
    switch: (body, by) =>
      switchMaintenance(maintenance, parseMaintenanceSwitch(body, (reason) => new RegistryError('UNSUPPORTED', { reason }, {}, reason)), by, log, 'ui'),
  }
}
