// `portier repo delete NAME [--gc] [--yes]`: deletes a whole repository (every manifest) on the running gateway through its admin API.
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'
import { confirm, followRun, summary } from './gc.js'

export const usage = `Usage: portier repo delete NAME [--gc] [--yes] [--json]

Deletes every manifest of repository NAME (its tags go with them) through the registry API, as
routed by the gateway. The blobs stay on disk until a garbage collection: give --gc to run one
right after, or run \`portier gc\` later.

Options:
  --gc          run a garbage collection right after (pauses pushes while it runs)
  -y, --yes     do not ask (needed when stdin is not a terminal)
  --json        print the admin API's answer as JSON
  -h, --help    this text

${adminClientUsage}`

interface Deleted {
  tags?: unknown
  manifests?: unknown
  alreadyGone?: unknown
  untaggedFromStorage?: unknown
  hint?: unknown
  gc?: { run_id?: unknown }
}

export async function repo(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand('repo', args, { ...adminClientOptions, gc: { type: 'boolean' }, yes: { type: 'boolean', short: 'y' }, json: { type: 'boolean' }, help: helpOption }, 2)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const [action, repository] = positionals
  if (action !== 'delete') throw new UsageError(action ? `unknown action ${action} (delete)` : 'repo needs an action: delete NAME', 'repo')
  if (!repository) throw new UsageError('repo delete needs the repository name, e.g. library/alpine', 'repo')
  if (values.yes !== true) {
    if (!process.stdin.isTTY) throw new UsageError('deleting a repository cannot be undone: give --yes to do it without asking', 'repo')
    if (!(await confirm(`Delete every image of ${repository}? This cannot be undone.`))) {
      process.stderr.write('nothing deleted\n')
      return 1
    }
  }
  const client = await adminClient(values, 'repo')
  try {
    const answer = await client.request('POST', '/admin/api/repositories/delete', { repository, gc: values.gc === true })
    if (!answer.ok) return client.fail(answer)
    const deleted = answer.body as Deleted
    if (values.json) process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`)
    else {
      const tags = Array.isArray(deleted.tags) ? deleted.tags.map(String) : []
      const manifests = Array.isArray(deleted.manifests) ? deleted.manifests.length : 0
      process.stdout.write(`deleted ${repository}: ${manifests} manifest(s), tags ${tags.length > 0 ? tags.join(', ') : '(none)'}\n`)
      if (deleted.untaggedFromStorage !== true) process.stdout.write('note: only tagged manifests were found (the registry API lists no others; configure gc.registry_config)\n')
      if (typeof deleted.hint === 'string') process.stdout.write(`${deleted.hint}\n`)
    }
    const runId = deleted.gc?.run_id
    if (typeof runId !== 'string') return 0
    const run = await followRun(client, runId, values.json === true)
    process.stdout.write(values.json ? `${JSON.stringify(run, null, 2)}\n` : summary(run))
    return run.result === 'success' ? 0 : 1
  } catch (error) {
    process.stderr.write(`portier: ${(error as Error).message}\n`)
    return 1
  }
}
