// Portier's own housekeeping events: manifests retention deleted (retention_delete) and finished garbage collections (gc), for endpoints that ask.
import type { RetentionTimes } from '../housekeeping/retention-run.js'
import type { Events } from './index.js'

/**
 * Retention's times, telling the events module of each manifest a run deletes: those deletes do not pass the
 * request recorder, so without this no listener would hear of them.
 */
export function announceRetentionDeletes(times: RetentionTimes, events: Events): RetentionTimes {
  return {
    tagTimes: (repository) => times.tagTimes(repository),
    manifestTimes: (repository) => times.manifestTimes(repository),
    deleted(repository, reference) {
      times.deleted(repository, reference)
      events.publish('retention_delete', reference.includes(':') ? { digest: reference, repository } : { repository, tag: reference }, 'portier-retention')
    },
  }
}

/** A finished (not dry-run) collection: who ran it is the actor; registry:2's target has no field for what was freed. */
export function announceGc(events: Events, run: { dryRun: boolean; result: string; by?: string | undefined; trigger: string }): void {
  if (run.dryRun || run.result !== 'success') return
  events.publish('gc', {}, run.by ?? `portier-${run.trigger}`)
}
