// The start-up scan: every repository's tags read once through the router, so tags that existed before Portier (or were pushed around it) get a first-seen time.
import { setTimeout as sleep } from 'node:timers/promises'
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
    log.warn({ err: error instanceof Error ? error.message : String(error), repositories: result.repositories }, 'store scan: could not read the catalog; stopped')
    result.failed++
  }
  result.aborted = stop()
  log.info(
    { repositories: result.repositories, new_tags: result.newTags, failed: result.failed, aborted: result.aborted, ms: Date.now() - started },
    'store scan: done',
  )
  return result
}

/** How one attempt of the start-up scan ended: everything read, not all of it (try again), or another instance's to run. */
export type ScanAttempt = 'complete' | 'incomplete' | 'skipped'

export interface ScanRetries {
  /** The first wait after an incomplete scan; each next one doubles, up to maxDelayMs. 0: no retry. */
  retryMs: number
  /** Attempts in all, the first included. */
  maxAttempts: number
  maxDelayMs: number
  /** Shutdown: no further attempt, and a wait ends at once. */
  signal: AbortSignal
  log: Logger
}

/**
 * Runs `attempt` (the start-up scan) until it reads everything: a scan that could not read the catalog or a
 * repository's tags (the registry not up yet when the gateway started, as in a compose project) runs again
 * after `retryMs`, then twice as long each time, at most `maxAttempts` times in all. Never rejects.
 */
export async function scanUntilComplete(attempt: () => Promise<ScanAttempt>, options: ScanRetries): Promise<void> {
  const { signal, log } = options
  for (let done = 1; ; done++) {
    let ended: ScanAttempt
    try {
      ended = await attempt()
    } catch (error) {
      log.error({ err: error instanceof Error ? error.message : String(error) }, 'store scan failed')
      ended = 'incomplete'
    }
    if (ended !== 'incomplete' || signal.aborted) return
    if (!(options.retryMs > 0) || done >= options.maxAttempts) {
      log.warn({ attempts: done }, 'store scan: not every repository was read; no more attempts until the next start')
      return
    }
    const delay = Math.min(options.retryMs * 2 ** (done - 1), options.maxDelayMs)
    log.info({ attempt: done, retry_in_ms: delay }, 'store scan: not every repository was read; scanning again later')
    // Shutdown ends the wait at once (the timer rejects with an AbortError).
    const waited = await sleep(delay, undefined, { signal }).then(() => true, () => false)
    if (!waited) return
  }
}
