// The one Range form Portier answers itself, parsed as Go's http.ServeContent (which the registry uses) parses it; everything else is left to the registry.
import type { IncomingHttpHeaders } from 'node:http'

export type RangePlan =
  | { kind: 'whole' }
  | { kind: 'part'; start: number; end: number }
  | { kind: 'unsatisfiable' }
  /** A form the registry answers its own way (several ranges, conditions, anything odd): proxy. */
  | { kind: 'registry' }

const DIGITS = /^[0-9]{1,15}$/

/** Headers that make ServeContent compare validators first: rare on blobs, so the registry answers them. */
const CONDITIONAL = ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-range'] as const

export function planRange(headers: IncomingHttpHeaders, size: number): RangePlan {
  if (CONDITIONAL.some((name) => headers[name] !== undefined)) return { kind: 'registry' }
  const range = headers.range
  if (range === undefined || range === '') return { kind: 'whole' }
  const spec = /^bytes=(.*)$/.exec(range)?.[1]
  if (spec === undefined || spec.includes(',')) return { kind: 'registry' }
  const dash = spec.indexOf('-')
  if (dash < 0) return { kind: 'registry' }
  const first = spec.slice(0, dash).trim()
  const last = spec.slice(dash + 1).trim()
  if (first === '') {
    // A suffix: the last N bytes (N > 0; ServeContent's answer to "-0" differs between Go versions).
    if (!DIGITS.test(last)) return { kind: 'registry' }
    const count = Math.min(Number(last), size)
    if (count === 0) return { kind: 'registry' }
    return { kind: 'part', start: size - count, end: size - 1 }
  }
  if (!DIGITS.test(first)) return { kind: 'registry' }
  const start = Number(first)
  // A start past the end overlaps nothing: 416 with `Content-Range: bytes */size`.
  if (start >= size) return { kind: 'unsatisfiable' }
  if (last === '') return { kind: 'part', start, end: size - 1 }
  if (!DIGITS.test(last)) return { kind: 'registry' }
  const end = Number(last)
  if (end < start) return { kind: 'registry' }
  return { kind: 'part', start, end: Math.min(end, size - 1) }
}
