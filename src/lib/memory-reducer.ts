// Keeps V8's memory reducer able to run: one small allocation on V8's C++ heap every POKE_EVERY_MS.
//
// A load of many small requests (32 connections of `GET /v2/` or `HEAD` at 6,000-10,000 a second) grows V8's
// old generation to 42-50 MB committed for ~25 MB alive and fills its pool of free pages. V8 gives that back
// in memory-reducing collections, which its memory reducer starts from an 8 s timer when the allocation
// rate is low: the young generation's, the old generation's, and the C++ heap's (cppgc, where Node keeps
// some of its own objects). It counts a rate of exactly zero as high (`--trace-mutator-utilization`:
// "Embedder mutator utilization = 0.000 (mutator_speed=0, gc_speed=1)"), and nothing Portier does while
// serving allocates on the C++ heap, so after start-up that rate fell to zero and the reducer answered
// "high alloc" for good, in a bare `node` script too: the memory stayed resident, and the next burst of
// uploads started from there (BENCHMARKS.md, "Peak RSS").
//
// A `vm.Script` is an object on the C++ heap, so compiling the one-character script `0` now and then keeps
// that rate above zero. The reducer's sample that covers the allocation reads it as high; the later ones read
// it as low, until the rate decays to zero again (about two minutes in V8's source, as read, not measured);
// the reducer then runs as soon as the process is quiet too. It compiles nothing else and collects nothing itself.
import { Script } from 'node:vm'

/** Between two allocations: several of the reducer's 8 s samples, well inside the ~2 minutes the rate lasts. */
export const POKE_EVERY_MS = 30_000

let pokes = 0

function poke(): void {
  pokes++
  new Script('0')
}

/** Allocates now and then every `everyMs`, on an unreferenced timer; returns what stops it. */
export function keepMemoryReducerAwake(everyMs = POKE_EVERY_MS): { stop(): void } {
  poke()
  const timer = setInterval(poke, everyMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

/** Allocations so far (for the tests). */
export function memoryReducerPokes(): number {
  return pokes
}
