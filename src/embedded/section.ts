// The `embedded_registry` config section: the registry Portier runs itself when no upstream is configured.
import { z } from 'zod'
import { duration, flag, section, text } from '../config/fields.js'

export const embeddedRegistrySection = section({
  binary: text().default(''),
  data_dir: text().default('data/registry'),
  restart_max_backoff: duration().default(30_000),
  /** Portier writes blob uploads into the embedded registry's storage itself (it owns that storage); false relays them. */
  storage_uploads: flag().default(true),
}).prefault({})

export type EmbeddedRegistryConfig = z.output<typeof embeddedRegistrySection>
