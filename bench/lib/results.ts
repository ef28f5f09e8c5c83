// The measurements of one run: one row per measured quantity, one list of samples per target and row.
import type { TargetId } from './options.js'
import { median } from './stats.js'

export interface Sample {
  value: number
  /** Wall time of the measured step. */
  seconds: number
  /** CPU seconds of the proxy process(es) and of the registry during the step. */
  proxyCpu: number
  registryCpu: number
  p50ms?: number
  p99ms?: number
  /** Peak RSS of the target's main process during the step (bytes). */
  peakRss?: number
}

export interface RowSpec {
  key: string
  title: string
  unit: string
  /** true: more is better (MB/s, req/s); false: less is better (seconds, ms). */
  higherIsBetter: boolean
}

export class Results {
  readonly rows: RowSpec[] = []
  private readonly samples = new Map<string, Map<TargetId, Sample[]>>()

  row(spec: RowSpec): RowSpec {
    if (!this.rows.some((row) => row.key === spec.key)) this.rows.push(spec)
    return spec
  }

  add(row: RowSpec, target: TargetId, sample: Sample): void {
    this.row(row)
    let byTarget = this.samples.get(row.key)
    if (!byTarget) {
      byTarget = new Map()
      this.samples.set(row.key, byTarget)
    }
    const list = byTarget.get(target) ?? []
    list.push(sample)
    byTarget.set(target, list)
  }

  get(key: string, target: TargetId): Sample[] {
    return this.samples.get(key)?.get(target) ?? []
  }

  /** Median of one field over a target's samples of a row (NaN when there are none). */
  median(key: string, target: TargetId, field: (sample: Sample) => number | undefined = (sample) => sample.value): number {
    const values = this.get(key, target).map(field).filter((value): value is number => value !== undefined && Number.isFinite(value))
    return median(values)
  }

  spec(key: string): RowSpec | undefined {
    return this.rows.find((row) => row.key === key)
  }
}

/** median(target) ÷ median(base) on a row: a share of base's throughput, or a multiple of base's time. */
export function ratioOf(results: Results, key: string, target: TargetId, base: TargetId): number {
  const a = results.median(key, target)
  const b = results.median(key, base)
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : Number.NaN
}
