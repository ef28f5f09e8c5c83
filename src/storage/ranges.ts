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
  const first = trimSpaces(spec.slice(0, dash))
  const last = trimSpaces(spec.slice(dash + 1))
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

/** int64's largest value, as Go's strconv.ParseInt takes it: a longer number is no range. */
const INT64_MAX = 9_223_372_036_854_775_807n

/** A decimal byte position Go's ParseInt reads (without the sign it would take too: RFC 9110 has digits only). */
function position(text: string): boolean {
  return /^[0-9]+$/.test(text) && BigInt(text) <= INT64_MAX
}

/**
 * Whether a blob read's `Range` header is one registry 2.8 refuses as malformed ("invalid range": no
 * `bytes=`, a part without `-`, a position that is no number or overflows, an end before its start) or
 * answers with a `206` whose `Content-Range` is impossible (`bytes=-0`). Its 416 goes out under the
 * blob's `Content-Length` with a 14-byte body, which breaks the connection (a client sees a broken
 * transfer, the gateway an upstream reset): the gateway refuses these itself, framed right. Ranges past
 * the end are not malformed (the registry's `416` names the size; Portier's storage path sends it framed right).
 */
export function malformedRange(headers: IncomingHttpHeaders): boolean {
  const range = headers.range
  if (range === undefined || range === '') return false
  // With a condition ServeContent may answer 200 (If-Range that does not match) or 304 before it reads the Range.
  if (CONDITIONAL.some((name) => headers[name] !== undefined)) return false
  if (!range.startsWith('bytes=')) return true
  for (const raw of range.slice('bytes='.length).split(',')) {
    const part = trimSpaces(raw)
    if (part === '') continue
    const dash = part.indexOf('-')
    if (dash < 0) return true
    const first = trimSpaces(part.slice(0, dash))
    const last = trimSpaces(part.slice(dash + 1))
    if (first === '') {
      // A suffix: the last N bytes, N a number above 0.
      if (!position(last) || BigInt(last) === 0n) return true
      continue
    }
    if (!position(first)) return true
    if (last === '') continue
    if (!position(last) || BigInt(last) < BigInt(first)) return true
  }
  return false
}

/** Spaces and tabs off both ends, as Go's textproto.TrimString (String.trim would take U+00A0 and line breaks too, which Go keeps). */
function trimSpaces(text: string): string {
  return text.replace(/^[ \t]+|[ \t]+$/g, '')
}
