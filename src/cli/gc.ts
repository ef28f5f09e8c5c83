// `portier gc [--dry-run] [--delete-untagged] [--yes]`: runs a garbage collection on the running gateway through its admin API and shows its progress.
import { createInterface } from 'node:readline/promises'
import { adminClient, adminClientOptions, adminClientUsage, type AdminClient } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'

export const usage = `Usage: portier gc [--dry-run] [--delete-untagged] [--yes] [--json]

Collects the registry's garbage without stopping it: the gateway enters maintenance (pushes and
deletes refused, pulls go on), waits for uploads in flight (gc.drain_timeout), runs the registry's own
\`garbage-collect\` on its storage, leaves maintenance, and reports the bytes freed on disk.

Options:
  --dry-run           list what would be deleted; deletes nothing and leaves writes on
  --delete-untagged   also delete manifests no tag points at (the platform manifests of tagged
                      multi-arch images are kept: registry 2.8 would delete them)
  -y, --yes           do not ask before a real run (needed when stdin is not a terminal)
  --json              print the finished run's report as JSON
  -h, --help          this text

${adminClientUsage}`

interface ProgressLine {
  phase?: unknown
  message?: unknown
}

export interface GcReport {
  result?: unknown
  error?: unknown
  dryRun?: unknown
  bytesBefore?: unknown
  bytesAfter?: unknown
  bytesFreed?: unknown
  blobsDeleted?: unknown
  blobsEligible?: unknown
  manifestsDeleted?: unknown
  manifestsEligible?: unknown
  protectedManifests?: unknown
  durationSeconds?: unknown
  maintenanceSeconds?: unknown
}

const POLL_MS = 250
/** Polls that may fail in a row (the gateway restarting) before the command gives up. */
const MAX_FAILED_POLLS = 20

function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : value === undefined ? fallback : JSON.stringify(value)
}

function mib(value: unknown): string {
  return `${(Number(value ?? 0) / (1024 * 1024)).toFixed(1)} MiB`
}

export function summary(run: GcReport): string {
  if (run.result !== 'success') return `garbage collection failed: ${str(run.error, 'see the gateway log')}\n`
  const seconds = Number(run.durationSeconds ?? 0).toFixed(1)
  if (run.dryRun === true) {
    return `dry run: ${Number(run.blobsEligible ?? 0)} blob(s) and ${Number(run.manifestsEligible ?? 0)} manifest(s) would be deleted; nothing was (${seconds} s)\n`
  }
  const kept = Number(run.protectedManifests ?? 0)
  return (
    `freed ${mib(run.bytesFreed)} (storage ${mib(run.bytesBefore)} → ${mib(run.bytesAfter)}); ` +
    `deleted ${Number(run.blobsDeleted ?? 0)} blob(s) and ${Number(run.manifestsDeleted ?? 0)} manifest(s)` +
    `${kept > 0 ? `; kept ${kept} platform manifest(s) of tagged multi-arch images` : ''}; ` +
    `took ${seconds} s, writes paused ${Number(run.maintenanceSeconds ?? 0).toFixed(1)} s\n`
  )
}

/** Polls a run's progress lines until it is done; prints them (one updating line per phase on a terminal). Returns the report. */
export async function followRun(client: AdminClient, runId: string, quiet: boolean): Promise<GcReport> {
  const tty = process.stderr.isTTY === true && !quiet
  let since = 0
  let failures = 0
  let lastPhase = ''
  let open = false
  for (;;) {
    let answer
    try {
      answer = await client.request('GET', `/admin/api/gc?run=${encodeURIComponent(runId)}&since=${since}`)
    } catch (error) {
      if (++failures > MAX_FAILED_POLLS) throw error
      await new Promise((resolve) => setTimeout(resolve, POLL_MS * 4))
      continue
    }
    failures = 0
    if (!answer.ok) throw new Error(`the admin API answered ${answer.status} while following run ${runId}: ${JSON.stringify(answer.body)}`)
    const body = answer.body as { events?: ProgressLine[]; next?: unknown; done?: unknown; run?: GcReport }
    for (const event of body.events ?? []) {
      if (quiet) continue
      const phase = str(event.phase)
      const message = str(event.message)
      if (phase === 'done' || phase === 'failed') continue
      if (tty) {
        // One line per phase: the collector's counts overwrite each other.
        if (phase === lastPhase && open) process.stderr.write(`\r\x1b[2K  ${phase}: ${message}`)
        else process.stderr.write(`${open ? '\n' : ''}  ${phase}: ${message}`)
        open = true
      } else {
        process.stderr.write(`${phase}: ${message}\n`)
      }
      lastPhase = phase
    }
    since = Number(body.next ?? since)
    if (body.done === true && body.run) {
      if (open) process.stderr.write('\n')
      return body.run
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS))
  }
}

/** Asks on the terminal; false when the answer is not yes. */
export async function confirm(question: string): Promise<boolean> {
  const lines = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = await lines.question(`${question} [y/N] `)
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    lines.close()
  }
}

export async function gc(args: string[]): Promise<number> {
  const { values } = parseCommand(
    'gc',
    args,
    { ...adminClientOptions, 'dry-run': { type: 'boolean' }, 'delete-untagged': { type: 'boolean' }, yes: { type: 'boolean', short: 'y' }, json: { type: 'boolean' }, help: helpOption },
    0,
  )
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const dryRun = values['dry-run'] === true
  if (!dryRun && values.yes !== true) {
    if (!process.stdin.isTTY) throw new UsageError('a garbage collection pauses pushes while it runs: give --yes to run it without asking', 'gc')
    if (!(await confirm('Pushes and deletes are refused while the collection runs (pulls go on). Run it now?'))) {
      process.stderr.write('not run\n')
      return 1
    }
  }
  const client = await adminClient(values, 'gc')
  try {
    const started = await client.request('POST', '/admin/api/gc', { dry_run: dryRun, delete_untagged: values['delete-untagged'] === true })
    if (!started.ok) return client.fail(started)
    const runId = String((started.body as { run_id?: unknown }).run_id)
    if (!values.json) process.stderr.write(`garbage collection ${runId}${dryRun ? ' (dry run)' : ''}\n`)
    const run = await followRun(client, runId, values.json === true)
    process.stdout.write(values.json ? `${JSON.stringify(run, null, 2)}\n` : summary(run))
    return run.result === 'success' ? 0 : 1
  } catch (error) {
    process.stderr.write(`portier: ${(error as Error).message}\n`)
    return 1
  }
}
