// The web UI's view of retention: the last dry run's "what would be deleted" for the status panel, a new dry run on request (one at a time, shared with the admin API's runs).
import type { RetentionPreview } from './types.js'

/** What the UI API needs of retention (src/app/retention.ts provides it). */
export interface UiRetention {
  /** The last dry run, or a new one when `refresh` or none was made yet. */
  preview(refresh: boolean, by: string): Promise<RetentionPreview>
}
