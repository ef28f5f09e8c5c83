// Turns one run's results into markdown: the comparison table, the engines, CPU use, memory, targets and the profile.
import type { TargetId } from './options.js'
import { ratioOf, type Results, type RowSpec, type Sample } from './results.js'
import { fmt, median, MiB, range, ratio } from './stats.js'
import { LABELS } from './targets.js'

export interface Check {
  what: string
  target: string
  measured: string
  met: boolean
}

function cell(results: Results, row: RowSpec, target: TargetId): string {
  const samples = results.get(row.key, target)
  if (samples.length === 0) return '–'
  const values = samples.map((sample) => sample.value)
  const { min, max } = range(values)
  let text = samples.length > 1 ? `${fmt(median(values))} (${fmt(min)}–${fmt(max)})` : fmt(values[0] as number)
  const p50 = results.median(row.key, target, (sample) => sample.p50ms)
  const p99 = results.median(row.key, target, (sample) => sample.p99ms)
  if (Number.isFinite(p50)) text += `, p50 ${fmt(p50)} ms`
  if (Number.isFinite(p99)) text += `, p99 ${fmt(p99)} ms`
  return text
}

function table(header: string[], lines: string[][]): string {
  const align = header.map((_, index) => (index === 0 ? '---' : '---:'))
  return [header, align, ...lines].map((line) => `| ${line.join(' | ')} |`).join('\n')
}

/** The better nginx variant on a row, by median. */
export function betterNginx(results: Results, key: string): TargetId | undefined {
  const spec = results.spec(key)
  const recipe = results.median(key, 'nginx-recipe')
  const tuned = results.median(key, 'nginx-tuned')
  if (!spec || (!Number.isFinite(recipe) && !Number.isFinite(tuned))) return undefined
  if (!Number.isFinite(recipe)) return 'nginx-tuned'
  if (!Number.isFinite(tuned)) return 'nginx-recipe'
  const recipeWins = spec.higherIsBetter ? recipe >= tuned : recipe <= tuned
  return recipeWins ? 'nginx-recipe' : 'nginx-tuned'
}

const MAIN: TargetId[] = ['direct', 'nginx-recipe', 'nginx-tuned', 'portier']
const ENGINES: TargetId[] = ['direct', 'undici', 'http-proxy', 'nginx-open', 'portier']

function present(results: Results, row: RowSpec, targets: TargetId[]): boolean {
  return targets.some((target) => results.get(row.key, target).length > 0)
}

export function mainTable(results: Results, keys: string[]): string {
  const rows = results.rows.filter((row) => keys.includes(row.key) && present(results, row, MAIN))
  const lines = rows.map((row) => {
    const nginx = betterNginx(results, row.key)
    return [
      `${row.title} (${row.unit})`,
      ...MAIN.map((target) => cell(results, row, target)),
      ratio(ratioOf(results, row.key, 'portier', 'direct')),
      nginx ? ratio(ratioOf(results, row.key, 'portier', nginx)) : '–',
    ]
  })
  return table(['workload', ...MAIN.map((target) => LABELS[target]), 'Portier ÷ direct', 'Portier ÷ better nginx'], lines)
}

const STORAGE: TargetId[] = ['direct', 'tls-memory', 'nginx-recipe', 'portier', 'portier-storage']

/** Portier reading blobs from the registry's storage next to Portier relaying them, nginx and direct. */
export function storageTable(results: Results, keys: string[]): string {
  const rows = results.rows.filter((row) => keys.includes(row.key) && present(results, row, ['portier-storage']))
  if (rows.length === 0) return ''
  const lines = rows.map((row) => [
    `${row.title} (${row.unit})`,
    ...STORAGE.map((target) => cell(results, row, target)),
    ratio(ratioOf(results, row.key, 'portier-storage', 'direct')),
    ratio(ratioOf(results, row.key, 'portier-storage', 'tls-memory')),
    ratio(ratioOf(results, row.key, 'portier-storage', 'nginx-recipe')),
    ratio(ratioOf(results, row.key, 'portier-storage', 'portier')),
  ])
  return table(['workload', ...STORAGE.map((target) => LABELS[target]), 'storage ÷ direct', 'storage ÷ ceiling', 'storage ÷ nginx recipe', 'storage ÷ relayed'], lines)
}

/** server.workers: 2 next to 1, relaying and from storage (rows where a -workers target ran). */
export function workersTable(results: Results, keys: string[]): string {
  const rows = results.rows.filter((row) => keys.includes(row.key) && present(results, row, ['portier-workers', 'portier-storage-workers']))
  if (rows.length === 0) return ''
  const targets: TargetId[] = ['direct', 'portier', 'portier-workers', 'portier-storage', 'portier-storage-workers']
  const lines = rows.map((row) => [
    `${row.title} (${row.unit})`,
    ...targets.map((target) => cell(results, row, target)),
    ratio(ratioOf(results, row.key, 'portier-workers', 'portier')),
    ratio(ratioOf(results, row.key, 'portier-storage-workers', 'portier-storage')),
  ])
  return table(['workload', ...targets.map((target) => LABELS[target]), '2 workers ÷ 1 (relayed)', '2 workers ÷ 1 (from storage)'], lines)
}

export function enginesTable(results: Results, keys: string[]): string {
  const rows = results.rows.filter((row) => keys.includes(row.key) && present(results, row, ['undici', 'http-proxy', 'nginx-open']))
  if (rows.length === 0) return ''
  const lines = rows.map((row) => [
    `${row.title} (${row.unit})`,
    ...ENGINES.map((target) => cell(results, row, target)),
    ratio(ratioOf(results, row.key, 'http-proxy', 'undici')),
  ])
  return table(['workload', ...ENGINES.map((target) => LABELS[target]), 'http-proxy ÷ undici'], lines)
}

function percent(samples: Sample[], field: (sample: Sample) => number): number {
  return median(samples.filter((sample) => sample.seconds > 0).map((sample) => (field(sample) / sample.seconds) * 100))
}

/** CPU the proxy (and the registry) used while each step ran, as % of one core: 100 % means one core was busy all along. */
export function cpuTable(results: Results, targets: TargetId[]): string {
  const lines = results.rows
    .filter((row) => present(results, row, targets))
    .map((row) => [
      row.title,
      ...targets.map((target) => {
        const samples = results.get(row.key, target)
        if (samples.length === 0) return '–'
        const registry = percent(samples, (sample) => sample.registryCpu)
        if (target === 'direct') return `– / ${fmt(registry)} %`
        return `${fmt(percent(samples, (sample) => sample.proxyCpu))} % / ${fmt(registry)} %`
      }),
    ])
  return table(['workload', ...targets.map((target) => `${LABELS[target]}: proxy / registry`)], lines)
}

export function rssTable(results: Results, keys: string[]): string {
  const rows = results.rows.filter((row) => keys.includes(row.key))
  const lines = rows.flatMap((row) => {
    const out: string[][] = []
    for (const target of ['direct', 'portier', 'portier-storage'] as TargetId[]) {
      const samples = results.get(row.key, target)
      if (samples.length === 0) continue
      const rss = median(samples.map((sample) => sample.peakRss ?? Number.NaN))
      out.push([row.title, LABELS[target], `${fmt(median(samples.map((sample) => sample.value)))} ${row.unit}`,
        target === 'direct' ? `(registry ${fmt(rss / MiB)} MiB)` : `${fmt(rss / MiB)} MiB`])
    }
    return out
  })
  return table(['workload', 'target', 'throughput (all uploads together)', 'peak RSS'], lines)
}

export function checksTable(checks: Check[]): string {
  return table(['target (from the issue)', 'wanted', 'measured', 'met'], checks.map((check) => [check.what, check.target, check.measured, check.met ? 'yes' : '**no**']))
}
