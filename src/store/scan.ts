// The start-up scan: every repository's tags read once through the router, so tags that existed before Portier (or were pushed around it) get a first-seen time.
import type { Logger } from '../observe/log.js'
import type { RegistryClient } from '../ui/registry-client.js'
import type { PushPullTimes } from './times.js'

export interface ScanDeps {
  registry: Pick<RegistryClient, 'catalog' | 'tags' | 'digestOf'>
  times: PushPullTimes
  log: Logger
  /** Manifest HEADs in flight at once. */
  concurrency: number
  /** Stops the scan between requests (shutdown). */
  signal?: AbortSignal
  /** How often progress is logged (ms). */
  progressEveryMs?: number
}

export interface ScanResult {
  repositories: number
  /** Tags the store did not know before this scan. */
  newTags: number
  /** Repositories whose tags could not be read (logged each). */
  failed: number
  aborted: boolean
}

/** Runs `work` over `items` with at most `limit` at once; stops taking new items once `stop()` says so. */
async function eachLimited<T>(items: readonly T[], limit: number, stop: () => boolean, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length && !stop()) {
      const item = items[next++] as T
      await work(item)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker))
}

/**
 * Walks the catalog page by page; for each repository lists its tags and HEADs only the tags the store
 * does not know yet (a restart costs one tags list per repository, not a HEAD per tag). Errors are logged
 * per repository and the scan goes on; it never throws.
 */
export async function scanTags(deps: ScanDeps): Promise<ScanResult> {
  const { registry, times, log, signal } = deps
  const result: ScanResult = { repositories: 0, newTags: 0, failed: 0, aborted: false }
  const stop = (): boolean => signal?.aborted === true
  const started = Date.now()
  let lastProgress = started
  const progressEvery = deps.progressEveryMs ?? 10_000
  log.info({}, 'store scan: reading every repository\'s tags for first-seen times (serving goes on)')
  let last: string | undefined
  try {
    for (;;) {
      if (stop()) break
      const page = await registry.catalog(last)
      for (const repository of page.repositories) {
        if (stop()) break
        result.repositories++
        try {
          const known = new Set((await times.tagTimes(repository)).map((entry) => entry.tag))
          const fresh = (await registry.tags(repository)).filter((tag) => !known.has(tag))
          await eachLimited(fresh, deps.concurrency, stop, async (tag) => {
            const digest = await registry.digestOf(repository, tag)
            // Gone between the list and the HEAD: nothing to record.
            if (digest === undefined) return
            times.seen(repository, tag, digest)
            result.newTags++
          })
        } catch (error) {
          result.failed++
          log.warn({ repository, err: error instanceof Error ? error.message : String(error) }, 'store scan: could not read the tags of a repository')
        }
        if (Date.now() - lastProgress >= progressEvery) {
          lastProgress = Date.now()
          log.info({ repositories: result.repositories, new_tags: result.newTags }, 'store scan: progress')
        }
      }
      const lastName = page.repositories.at(-1)
      if (!page.more || lastName === undefined) break
      last = lastName
    }
  } catch (error) {
    log.warn({ err: error instanceof Error ? error.message : String(error), repositories: result.repositories }, 'store scan: could not read the catalog; stopped (the next start scans again)')
    result.failed++
  }
  result.aborted = stop()
  log.info(
    { repositories: result.repositories, new_tags: result.newTags, failed: result.failed, aborted: result.aborted, ms: Date.now() - started },
    'store scan: done',
  )
  return result
}
