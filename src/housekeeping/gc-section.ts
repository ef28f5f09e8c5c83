// The `gc` config section: where the registry's storage and collector are (for an upstream registry), the schedule, and how long a run waits for writes in flight.
import { z } from 'zod'
import { duration, flag, section, text } from '../config/fields.js'
import { parseSchedule } from './gc-schedule.js'

const schedule = text()
  .refine((value) => parseSchedule(value) !== undefined, {
    error: 'an interval like "24h" or "12h30m" (at least 10s), a daily UTC time like "03:30", or "" for no schedule',
  })
  .default('')

export const gcSection = section({
  /**
   * The config.yml of the registry whose storage Portier collects, when it is not the embedded one
   * (upstreams are configured): its storage (storage.filesystem.rootdirectory) must be mounted into Portier.
   */
  registry_config: text().default(''),
  /** The storage root as Portier sees it, when it is mounted elsewhere than the registry config says. */
  storage_root: text().default(''),
  /** The registry binary that runs `garbage-collect`; "" = embedded_registry.binary, else docker-registry or registry on PATH. */
  binary: text().default(''),
  /** When scheduled runs happen: "" (never), an interval ("24h"), or a daily UTC time ("03:30"). */
  schedule,
  /** Scheduled runs also delete untagged manifests (children of tagged multi-arch indexes are kept). */
  delete_untagged: flag().default(false),
  /** How long a run waits for uploads and writes in flight before collecting (those still open are refused). */
  drain_timeout: duration().default(5 * 60_000),
  /** How often the storage's disk usage and repository sizes are sampled into the store (the UI's storage chart); 0: only at start and after each run. */
  usage_interval: duration().default(60 * 60_000),
  /** How long those samples are kept; 0: for ever. */
  usage_keep: duration(100 * 365 * 86_400_000).default(400 * 86_400_000),
}).prefault({})

export type GcConfig = z.output<typeof gcSection>
