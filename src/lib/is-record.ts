// The one test for "a JSON object" (a mapping, not null, not an array) used where untrusted JSON or YAML is read.

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
