// The admin API's maintenance routes: GET /admin/api/maintenance (the state) and PUT (switch it, with a message and an expected length).
import { parseDuration } from '../config/units.js'
import type { Maintenance, MaintenanceStatus } from '../housekeeping/maintenance.js'
import { AdminError } from '../observe/admin.js'
import type { Logger } from '../observe/log.js'
import type { AdminApi } from './api.js'

export const MAINTENANCE_PATH = '/admin/api/maintenance'

/** What a switch asks for: `{ on: true, message?: "...", retry_after?: "10m" }` or `{ on: false }`. */
export interface MaintenanceSwitch {
  on: boolean
  message?: string
  /** Milliseconds; 0: no expected end; undefined: the configured default. */
  retryAfterMs?: number
}

const MAX_MESSAGE_LENGTH = 500
// Control characters (a message goes into log lines, headers' neighbours and the UI banner).
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/

/** Reads a switch request (the admin API's and the web UI's); throws `invalid(message)` for what it cannot take. */
export function parseMaintenanceSwitch(body: Record<string, unknown>, invalid: (message: string) => Error): MaintenanceSwitch {
  const { on, message, retry_after: retryAfter } = body
  if (typeof on !== 'boolean') throw invalid('"on" must be true or false')
  const parsed: MaintenanceSwitch = { on }
  if (message !== undefined) {
    if (typeof message !== 'string' || message.length > MAX_MESSAGE_LENGTH || CONTROL_CHARACTER.test(message)) {
      throw invalid(`"message" must be a single line of at most ${MAX_MESSAGE_LENGTH} characters`)
    }
    parsed.message = message
  }
  if (retryAfter !== undefined) {
    const ms = parseDuration(retryAfter)
    if (ms === undefined || ms < 0) throw invalid('"retry_after" must be a duration like 30s, 10m or 1h (0: no expected end)')
    parsed.retryAfterMs = ms
  }
  return parsed
}

/** Applies a switch and logs who did it; the answer is the state afterwards. */
export function switchMaintenance(maintenance: Maintenance, request: MaintenanceSwitch, by: string, log: Logger, via: string): MaintenanceStatus {
  if (!request.on) {
    const wasOn = maintenance.isOn
    const status = maintenance.leave(by)
    if (wasOn) log.warn({ by, via }, 'maintenance off: writes accepted again')
    return status
  }
  const status = maintenance.enter({ by, ...(request.message === undefined ? {} : { message: request.message }), ...(request.retryAfterMs === undefined ? {} : { retryAfterMs: request.retryAfterMs }) })
  log.warn({ by, via, message: status.message, until: status.until, drain_until: status.drainUntil, in_flight: status.inFlight }, 'maintenance on: writes refused, reads go on')
  return status
}

export function registerMaintenanceRoutes(api: AdminApi, maintenance: Maintenance, log: Logger): void {
  api.route('GET', MAINTENANCE_PATH, async () => maintenance.status())
  api.route('PUT', MAINTENANCE_PATH, async (call) => {
    const request = parseMaintenanceSwitch(await call.json(), (message) => new AdminError('ADMIN_BAD_REQUEST', { message }))
    return switchMaintenance(maintenance, request, call.user, log, 'admin-api')
  })
}
