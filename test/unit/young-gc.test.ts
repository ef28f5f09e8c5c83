// The young-generation collection per few MiB of body streamed: it runs (V8 reports it as a minor GC), and the main context gets no global gc.
import t from 'tap'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { streamedBytes, YOUNG_GC_EVERY_BYTES } from '../../src/lib/young-gc.js'

/** Minor collections V8 reports while `work` runs (entries arrive asynchronously, so wait a little after it). */
async function minorCollections(work: () => void): Promise<number> {
  let count = 0
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) count++
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  work()
  await new Promise((resolve) => setTimeout(resolve, 100))
  observer.disconnect()
  return count
}

t.test('one minor collection per YOUNG_GC_EVERY_BYTES streamed, none before', async (t) => {
  // Ten times the threshold with nothing allocated in between: V8 would not collect ten times on its own.
  const collected = await minorCollections(() => {
    for (let i = 0; i < 10; i++) streamedBytes(YOUNG_GC_EVERY_BYTES)
  })
  t.ok(collected >= 10, `ten thresholds streamed → at least ten minor collections (saw ${collected})`)

  // In chunks: the count carries over between calls.
  const chunked = await minorCollections(() => {
    for (let i = 0; i < 40; i++) streamedBytes(YOUNG_GC_EVERY_BYTES / 4)
  })
  t.ok(chunked >= 10, `forty quarter-thresholds → at least ten (saw ${chunked})`)
  t.ok(chunked <= 13, `and not one per call (saw ${chunked})`)
})

t.test('the main context gets no global gc function', async (t) => {
  streamedBytes(YOUNG_GC_EVERY_BYTES)
  t.equal((globalThis as { gc?: unknown }).gc, undefined)
})
