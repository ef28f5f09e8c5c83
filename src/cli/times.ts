// `portier times`: push and pull times per tag from the store file (read-only; beside a running gateway too), as a table or JSON lines.
import { PushPullTimes, type TagTimes } from '../store/times.js'
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { load } from './load.js'
import { withStoreFile } from './store-file.js'

export const usage = `Usage: portier times [--config FILE] [--repo REPOSITORY] [--json]

Prints, per repository and tag, when Portier first saw it, when it was last pushed and last pulled,
and how often it was pulled by tag, from the store file (store.path). Reads only: safe while the
gateway runs. Pulls are manifest GETs; "pulled" counts pulls of the tag's manifest by digest too.
With a PostgreSQL store (store.url) read them through a gateway's admin API (GET /admin/api/times).

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -r, --repo REPO     only this repository (default: every repository with recorded times)
      --json          one JSON object per line (times as ISO 8601, absent when never)
  -h, --help          this text
`

const iso = (at: number | undefined): string | undefined => (at === undefined ? undefined : new Date(at).toISOString())

export async function times(args: string[]): Promise<number> {
  const { values } = parseCommand('times', args, { config: configOption, help: helpOption, repo: { type: 'string', short: 'r' }, json: { type: 'boolean' } }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const read = { what: 'the times', adminRoute: 'GET /admin/api/times', table: 'times' }
  return withStoreFile(load(configPath(values.config)).config.store, read, async (store) => {
    const recorded = new PushPullTimes(store)
    const repositories = values.repo !== undefined ? [values.repo] : await recorded.repositories()
    const rows: Array<{ repository: string } & TagTimes> = []
    for (const repository of repositories) for (const tag of await recorded.tagTimes(repository)) rows.push({ repository, ...tag })
    if (values.json) {
      for (const entry of rows) {
        process.stdout.write(JSON.stringify({
          repository: entry.repository, tag: entry.tag, digest: entry.digest,
          firstSeenAt: iso(entry.firstSeenAt), firstPushedAt: iso(entry.firstPushedAt), pushedAt: iso(entry.pushedAt),
          pulledAt: iso(entry.pulledAt), tagPulledAt: iso(entry.tagPulledAt), pulls: entry.pulls,
        }) + '\n')
      }
    } else if (rows.length === 0) {
      process.stdout.write('no times recorded\n')
    } else {
      const cells = [['REPOSITORY', 'TAG', 'FIRST SEEN', 'PUSHED', 'PULLED', 'PULLS'], ...rows.map((entry) => [entry.repository, entry.tag, iso(entry.firstSeenAt) ?? '-', iso(entry.pushedAt) ?? '-', iso(entry.pulledAt) ?? '-', String(entry.pulls)])]
      const widths = (cells[0] ?? []).map((_, column) => Math.max(...cells.map((line) => (line[column] ?? '').length)))
      process.stdout.write(cells.map((line) => line.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()).join('\n') + '\n')
    }
    return 0
  })
}
