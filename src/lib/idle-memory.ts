// Lets V8 give back what a busy stretch grew, once requests stop.
//
// A load of many small requests (32 connections of `GET /v2/` or `HEAD` at 6,000-10,000 a second) grows V8's
// old generation to 42-50 MB committed for ~25 MB alive and fills its pool of free pages. V8 gives that back
// in memory-reducing collections, which its memory reducer starts from an 8 s timer when the allocation
// rate is low. It takes three rates (young generation, old generation, and the C++ heap, cppgc, where Node
// keeps some of its own objects), each decayed with a 100 ms half-life, and counts a rate of exactly zero
// as high. Nothing Portier does while serving allocates on the C++ heap, so that rate decays to zero and the
// reducer answers "high alloc" for good (`--trace-memory-reducer --trace-mutator-utilization`: "Embedder
// mutator utilization = 0.000 (mutator_speed=0, ...)"), in a bare `node` script too: the memory stayed
// resident, and the next burst of uploads started from there (BENCHMARKS.md, "Peak RSS").
//
// So once requests stop, Portier compiles a one-character script: a `vm.Script` is one small object on the
// C++ heap. At the reducer's next timer at least a second later the three rates are low, and it runs its
// own incremental, memory-reducing collections. Once per idle stretch; costs microseconds.
import { Script } from 'node:vm'

/** How often idleness is checked: the allocation comes one to two periods after the last request ended. */
export const IDLE_CHECK_MS = 1000

let active = 0
let started = 0
let seen = 0
let busy = false
let stretches = 0
let timer: NodeJS.Timeout | undefined

function check(): void {
  if (started !== seen) {
    seen = started
    busy = true
    return
  }
  if (active > 0) return
  if (busy) {
    busy = false
    stretches++
    new Script('0')
  }
  // Idle and done: no timer until the next request.
  clearInterval(timer)
  timer = undefined
}

/** A request began: counted until `requestEnded`. */
export function requestStarted(): void {
  active++
  started++
  if (timer === undefined) {
    timer = setInterval(check, IDLE_CHECK_MS)
    timer.unref()
  }
}

/** A request counted by `requestStarted` ended (body sent or the connection gone). */
export function requestEnded(): void {
  if (active > 0) active--
}

/** Idle stretches seen since start-up (each got its allocation). */
export function idleStretches(): number {
  return stretches
}
