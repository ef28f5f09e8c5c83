// A young-generation collection after every few MiB of blob bytes streamed (request bodies read; upstream
// and pull-through remote response bodies relayed), so buffers already written on do not pile up in the
// malloc heap between V8's own collections.
//
// Each chunk read from a socket is a Buffer: a small object in V8's young generation holding a backing store
// from malloc (16 KiB from a TLS socket, up to 64 KiB from undici's reads). The store is freed only when V8 collects the object, and V8 collects the young
// generation by how much of it is used (a few hundred bytes per chunk), not by the malloc memory behind it:
// with 16 uploads streaming, tens of MiB of bytes already written to disk or upstream waited for the next
// collection, and the process's peak RSS grew with them (BENCHMARKS.md, "Peak RSS").
//
// Why 4 MiB: V8 (13.6, Node 24) counts buffer memory allocated since its last full collection as old-generation
// growth when it decides whether to start one (and starts one a little before the room is gone), and after a
// full collection it leaves the old generation 8-9 MiB of room. With 8 MiB of chunks between two young
// collections that room was used up by garbage a young collection frees, and V8 started a full collection
// (~50 ms of CPU, most on a second thread) up to 12 times a second while blobs streamed: 167 of them in
// `BENCH_ONLY=chunked,skopeo,concurrent` against 14 with 4 MiB (BENCHMARKS.md, "Full collections while blobs
// stream"). A young collection of the 1 MiB semi-space with little alive takes well under a millisecond; one per
// 4 MiB is ~70 a second at 300 MB/s.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** Bytes streamed between two collections. */
export const YOUNG_GC_EVERY_BYTES = 4 << 20

type Collect = (options: { type: 'minor' }) => void

let collect: Collect | null | undefined
let since = 0

/**
 * V8's `gc` function, taken from a fresh context after `--expose-gc` is set, so that the main context's
 * global object does not get one (no module can call a full collection by accident). Null where V8 refuses.
 */
function collector(): Collect | null {
  if (collect !== undefined) return collect
  try {
    setFlagsFromString('--expose-gc')
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined')
    collect = typeof gc === 'function' ? (gc as Collect) : null
  } catch {
    collect = null
  }
  return collect
}

/** Counts `bytes` of a body streamed through; past YOUNG_GC_EVERY_BYTES since the last collection, collects the young generation. */
export function streamedBytes(bytes: number): void {
  since += bytes
  if (since < YOUNG_GC_EVERY_BYTES) return
  since = 0
  collector()?.({ type: 'minor' })
}
