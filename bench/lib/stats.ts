// Medians and ranges of repeated measurements, and how the report prints numbers.

export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

export function range(values: number[]): { min: number; max: number } {
  return { min: Math.min(...values), max: Math.max(...values) }
}

/** 3 significant digits, thousands separated: 1,234 / 56.7 / 0.912 */
export function fmt(value: number): string {
  if (!Number.isFinite(value)) return '–'
  const abs = Math.abs(value)
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
}

export const MiB = 1024 * 1024
/** Throughput in MB/s (10^6 bytes per second), like curl and the anchor figures. */
export function mbps(bytes: number, seconds: number): number {
  return bytes / seconds / 1e6
}

/** The nearest-rank percentile `p` (0–100) of `values`; NaN for none. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN
}
