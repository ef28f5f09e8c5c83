// `portier retention [--dry-run]`: runs the retention rules on the running gateway through its admin API and prints what went (or would go) and why.
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand } from './args.js'

export const usage = `Usage: portier retention [--dry-run] [--all] [--json]

Applies retention.rules now: tags no keep condition keeps are deleted by digest through the registry
API (a manifest a kept or immutable tag points to stays), then a garbage collection frees the space.

Options:
  --dry-run   delete nothing: list exactly what would go, and why
  --all       list every tag's decision, the kept ones too
  --json      print the admin API's report as JSON
  -h, --help  this text

${adminClientUsage}`

/** How often the run's state is asked for while it goes on. */
const POLL_MS = 300

interface TagLine {
  tag?: unknown
  verdict?: unknown
  reason?: unknown
  digest?: unknown
}

interface DeletionLine {
  repository?: unknown
  digest?: unknown
  tags?: unknown
  reason?: unknown
  outcome?: unknown
  error?: unknown
}

interface ReportBody {
  dryRun?: unknown
  result?: unknown
  error?: unknown
  repositories?: Array<{ repository?: unknown; rule?: unknown; tags?: TagLine[]; skipped?: unknown }>
  deletions?: DeletionLine[]
  totals?: { repositories?: unknown; tagsKept?: unknown; tagsDeleted?: unknown; manifestsDeleted?: unknown; failed?: unknown }
  gc?: { id?: unknown; result?: unknown; error?: unknown }
}

/** Rows as aligned columns on a terminal, tab-separated for a pipe (cut, awk). */
function table(rows: string[][], aligned: boolean): string {
  if (!aligned) return rows.map((row) => row.join('\t')).join('\n')
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? []
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ')).join('\n')
}

function text(value: unknown): string {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return value === undefined || value === null ? '' : JSON.stringify(value)
}
const shortDigest = (value: unknown): string => text(value).replace(/^(sha256:[0-9a-f]{12})[0-9a-f]*$/, '$1')

export function describeReport(report: ReportBody, options: { all: boolean; aligned: boolean }): string {
  const dryRun = report.dryRun === true
  const lines: string[] = []
  for (const entry of report.repositories ?? []) if (entry.skipped !== undefined) lines.push(`${text(entry.repository)}: skipped (${text(entry.skipped)})`)
  if (options.all) {
    const rows = [['REPOSITORY', 'TAG', 'DIGEST', 'DECISION']]
    for (const entry of report.repositories ?? []) for (const tag of entry.tags ?? []) rows.push([text(entry.repository), text(tag.tag), shortDigest(tag.digest), text(tag.reason)])
    if (rows.length > 1) lines.push(table(rows, options.aligned), '')
  }
  const deletions = report.deletions ?? []
  if (deletions.length > 0) {
    const rows = [['REPOSITORY', 'TAGS', 'DIGEST', dryRun ? 'WOULD' : 'OUTCOME', 'WHY']]
    for (const entry of deletions) {
      const tags = Array.isArray(entry.tags) && entry.tags.length > 0 ? entry.tags.map(text).join(',') : '(untagged)'
      const outcome = entry.outcome === 'failed' ? `failed: ${text(entry.error)}` : dryRun ? 'delete' : text(entry.outcome)
      rows.push([text(entry.repository), tags, shortDigest(entry.digest), outcome, text(entry.reason).replace(/^deleted: /, '')])
    }
    lines.push(table(rows, options.aligned))
  }
  const totals = report.totals ?? {}
  const verb = dryRun ? 'would delete' : 'deleted'
  lines.push(`${dryRun ? 'dry run: ' : ''}${text(totals.repositories)} repositories governed; ${verb} ${text(totals.manifestsDeleted)} manifests (${text(totals.tagsDeleted)} tags); kept ${text(totals.tagsKept)} tags${Number(totals.failed) > 0 ? `; ${text(totals.failed)} deletes failed` : ''}`)
  if (report.result === 'failure') lines.push(`retention failed: ${text(report.error)}`)
  if (report.gc) lines.push(report.gc.result === 'started' ? `garbage collection ${text(report.gc.id)} started (portier gc status / GET /admin/api/gc)` : `garbage collection not run: ${text(report.gc.error)}`)
  return `${lines.join('\n')}\n`
}

export async function retention(args: string[]): Promise<number> {
  const { values } = parseCommand(
    'retention',
    args,
    { ...adminClientOptions, 'dry-run': { type: 'boolean' }, all: { type: 'boolean' }, json: { type: 'boolean' }, help: helpOption },
    0,
  )
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const client = await adminClient(values, 'retention')
  let body: unknown
  try {
    // The run goes on in the gateway; this polls until it is done (a large registry takes minutes).
    const started = await client.request('POST', '/admin/api/retention', { dry_run: values['dry-run'] === true })
    if (!started.ok) return client.fail(started)
    const poll = text((started.body as { poll?: unknown }).poll)
    if (!poll.startsWith('/admin/api/retention')) throw new Error('the admin API did not say where to follow the run')
    for (;;) {
      const polled = await client.request('GET', poll)
      if (!polled.ok) return client.fail(polled)
      const state = polled.body as { done?: unknown; report?: unknown }
      if (state.done === true) {
        body = state.report
        break
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS))
    }
  } catch (error) {
    process.stderr.write(`portier: could not reach the admin API: ${(error as Error).message}\n`)
    return 1
  }
  const report = (typeof body === 'object' && body !== null ? body : {}) as ReportBody
  if (values.json) process.stdout.write(`${JSON.stringify(body, null, 2)}\n`)
  else process.stdout.write(describeReport(report, { all: values.all === true, aligned: process.stdout.isTTY === true }))
  return report.result === 'failure' || Number(report.totals?.failed ?? 0) > 0 ? 1 : 0
}
