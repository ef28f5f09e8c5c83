// `portier audit`: reads the audit trail from the store file directly (read-only; beside a running gateway too, thanks to WAL) and prints it as a table or JSON lines.
import { AUDIT_ACTIONS, AuditTrail, sinceTime, type AuditEntry, type AuditQuery } from '../store/audit.js'
import { listedEntry } from '../store/routes.js'
import { configOption, configPath, helpOption, parseCommand, UsageError } from './args.js'
import { load } from './load.js'
import { withStoreFile } from './store-file.js'

export const usage = `Usage: portier audit [--config FILE] [--repo REPOSITORY] [--user USER] [--since WHEN]
                    [--action ACTION] [--limit N] [--json]

Prints the audit trail (state-changing requests and login attempts), newest first, from the store
file (store.path of the configuration). Reads only: safe while the gateway runs. With a PostgreSQL
store (store.url) read it through a gateway's admin API instead (GET /admin/api/audit).

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -r, --repo REPO     only this repository; * and ? match like shell globs (team/*)
  -u, --user USER     only this user (the failed logins naming it included)
  -s, --since WHEN    only entries since a duration ago (24h, 7d, 90m) or a time (2026-01-31, ISO 8601)
  -a, --action NAME   only one action: blob.push, blob.mount, blob.delete, upload.cancel,
                      manifest.push, manifest.delete, repository.delete, login,
                      login.token, login.ui, token.create, token.revoke, token.refused,
                      user.create, user.password, user.delete, group.create, group.update,
                      group.delete, grant.create, grant.delete
  -n, --limit N       at most N entries (default 100)
      --json          one JSON object per line (for jq and log tools) instead of a table
  -h, --help          this text
`

const ACTIONS: ReadonlySet<string> = new Set(AUDIT_ACTIONS)

/** --since: a duration back from now, or a date/time. */
export function parseSince(value: string, now = Date.now()): number {
  const at = sinceTime(value, now)
  if (at === undefined) throw new UsageError(`--since needs a duration like 24h or 7d, or a time like 2026-01-31T12:00:00Z (got ${JSON.stringify(value)})`, 'audit')
  return at
}

function row(entry: AuditEntry): string[] {
  const what = entry.repository ? `${entry.repository}${entry.tag ? `:${entry.tag}` : ''}${entry.digest ? `@${entry.digest.slice(0, 19)}` : ''}` : (entry.subject ?? '')
  return [
    new Date(entry.at).toISOString(),
    entry.action,
    entry.outcome,
    String(entry.status),
    entry.user ?? '-',
    entry.client,
    what + (entry.sourceRepository ? ` (from ${entry.sourceRepository})` : ''),
    entry.size === undefined ? '' : String(entry.size),
  ]
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, column) => Math.max(...rows.map((cells) => (cells[column] ?? '').length))) ?? []
  return rows.map((cells) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

export async function audit(args: string[]): Promise<number> {
  const { values } = parseCommand('audit', args, {
    config: configOption,
    help: helpOption,
    repo: { type: 'string', short: 'r' },
    user: { type: 'string', short: 'u' },
    since: { type: 'string', short: 's' },
    action: { type: 'string', short: 'a' },
    limit: { type: 'string', short: 'n' },
    json: { type: 'boolean' },
  }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const query: AuditQuery = {}
  if (values.repo !== undefined) query.repository = values.repo
  if (values.user !== undefined) query.user = values.user
  if (values.since !== undefined) query.since = parseSince(values.since)
  if (values.action !== undefined) {
    if (!ACTIONS.has(values.action)) throw new UsageError(`--action needs one of ${[...ACTIONS].join(', ')}`, 'audit')
    query.action = values.action
  }
  if (values.limit !== undefined) {
    const limit = Number(values.limit)
    if (!Number.isSafeInteger(limit) || limit < 1) throw new UsageError('--limit needs a whole number ≥ 1', 'audit')
    query.limit = limit
  }
  const read = { what: 'the audit trail', adminRoute: 'GET /admin/api/audit', table: 'audit', missingHint: 'audit.enabled is false' }
  return withStoreFile(load(configPath(values.config)).config.store, read, async (store) => {
    const entries = await new AuditTrail(store).query(query)
    if (values.json) {
      process.stdout.write(entries.map((entry) => JSON.stringify(listedEntry(entry))).join('\n') + (entries.length > 0 ? '\n' : ''))
    } else if (entries.length === 0) {
      process.stdout.write('no entries\n')
    } else {
      process.stdout.write(table([['TIME', 'ACTION', 'OUTCOME', 'STATUS', 'USER', 'CLIENT', 'WHAT', 'SIZE'], ...entries.map(row)]))
    }
    return 0
  })
}
