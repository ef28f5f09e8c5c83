// The `maintenance` config section: whether the gateway starts read-only, what refused writers are told, how long uploads in flight may finish.
import { z } from 'zod'
import { duration, flag, section, text } from '../config/fields.js'

export const maintenanceSection = section({
  /** Start in maintenance (read-only); switched at run time with `portier maintenance on|off` or the admin API. */
  enabled: flag().default(false),
  /** Told to clients whose writes are refused (the registry error's message) and shown in the UI's banner. */
  message: text().default('the registry is in maintenance: pushes and deletes are paused, pulls work'),
  /** The default expected length of a maintenance (Retry-After); 0: no estimate, no Retry-After. */
  retry_after: duration().default(0),
  /** How long uploads begun before maintenance may go on finishing; after it their chunks are refused too. */
  drain_timeout: duration().default(5 * 60_000),
}).prefault({})

export type MaintenanceConfig = z.output<typeof maintenanceSection>
