// `portier maintenance on|off|status`: switches the running gateway's maintenance mode through its admin API.
import { parseDuration } from '../config/units.js'
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'

export const usage = `Usage: portier maintenance on|off|status [--message TEXT] [--retry-after DURATION] [--json]

Maintenance mode makes the registry read-only at the gateway, without a restart: pulls go on,
pushes and deletes are refused (405 UNSUPPORTED "registry is in read-only mode" in the registry's
error format, whose message podman and skopeo print). Uploads begun before may finish for
maintenance.drain_timeout.
  on       switch it on (again: update the message and the expected length)
  off      switch it off
  status   print the state and the writes in flight (exit 0 either way)

Options:
  --message TEXT          what refused clients are told and the web UI's banner shows
                          (default: maintenance.message)
  --retry-after DURATION  the expected length, e.g. 10m: sent as Retry-After (default:
                          maintenance.retry_after; 0: no estimate)
  --json                  print the admin API's answer as JSON
  -h, --help              this text

${adminClientUsage}`

interface StatusBody {
  on?: unknown
  message?: unknown
  since?: unknown
  by?: unknown
  until?: unknown
  drainUntil?: unknown
  inFlight?: { uploads?: unknown; writes?: unknown }
}

/** A field of the answer as text (the API sends strings; anything else is shown as JSON). */
function text(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

function describe(body: unknown): string {
  const status = (typeof body === 'object' && body !== null ? body : {}) as StatusBody
  const lines: string[] = []
  if (status.on === true) {
    lines.push(`maintenance: on since ${text(status.since)}${status.by ? ` (by ${text(status.by)})` : ''}`)
    lines.push(`message: ${text(status.message)}`)
    if (status.until) lines.push(`expected until: ${text(status.until)} (sent as Retry-After)`)
  } else {
    lines.push('maintenance: off (writes accepted)')
  }
  const uploads = Number(status.inFlight?.uploads ?? 0)
  const writes = Number(status.inFlight?.writes ?? 0)
  lines.push(`writes in flight: ${uploads} upload${uploads === 1 ? '' : 's'}, ${writes} other`)
  if (status.on === true && uploads > 0 && status.drainUntil) lines.push(`uploads begun before may finish until ${text(status.drainUntil)}`)
  return `${lines.join('\n')}\n`
}

export async function maintenance(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(
    'maintenance',
    args,
    { ...adminClientOptions, message: { type: 'string' }, 'retry-after': { type: 'string' }, json: { type: 'boolean' }, help: helpOption },
    1,
  )
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const action = positionals[0]
  if (action !== 'on' && action !== 'off' && action !== 'status') throw new UsageError(action ? `unknown action ${action} (on, off or status)` : 'maintenance needs on, off or status', 'maintenance')
  if (action !== 'on' && (values.message !== undefined || values['retry-after'] !== undefined)) {
    throw new UsageError('--message and --retry-after go with "on"', 'maintenance')
  }
  const request: Record<string, unknown> = { on: action === 'on' }
  if (values.message !== undefined) request.message = values.message
  if (values['retry-after'] !== undefined) {
    if (parseDuration(values['retry-after']) === undefined) throw new UsageError(`--retry-after needs a duration like 10m or 1h, not ${values['retry-after']}`, 'maintenance')
    request.retry_after = values['retry-after']
  }
  const client = await adminClient(values, 'maintenance')
  const answer = action === 'status' ? await client.call('GET', '/admin/api/maintenance') : await client.call('PUT', '/admin/api/maintenance', request)
  if (!answer.ok) return answer.exitCode
  process.stdout.write(values.json ? `${JSON.stringify(answer.body, null, 2)}\n` : describe(answer.body))
  return 0
}
