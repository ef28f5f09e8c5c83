// `portier events list|retry`: the running gateway's webhook endpoints, their queues and dead letters, through its admin API.
import { adminClient, adminClientOptions, adminClientUsage } from './admin-client.js'
import { helpOption, parseCommand, UsageError } from './args.js'

export const usage = `Usage: portier events list [--endpoint NAME] [--dead] [--limit N] [--json]
       portier events retry [--endpoint NAME]

Webhooks (events.endpoints) get registry:2's notification envelopes from a queue kept in the store.
  list    each endpoint's health (pending, dead letters, delivered, failed attempts, last success)
          and the events waiting, oldest first
  retry   send the dead letters again (every endpoint's, or --endpoint's), in their original order

Options:
  --endpoint NAME   only this endpoint (a name from events.endpoints)
  --dead            list only the dead letters
  --limit N         list at most N events (default 20, at most 1000)
  --json            print the admin API's answer as JSON
  -h, --help        this text

${adminClientUsage}`

interface EndpointLine {
  name?: unknown
  url?: unknown
  disabled?: unknown
  pending?: unknown
  dead?: unknown
  delivered?: unknown
  failed?: unknown
  lastSuccessAgeSeconds?: unknown
  failingForSeconds?: unknown
}

interface EventLine {
  endpoint?: unknown
  action?: unknown
  repository?: unknown
  tag?: unknown
  digest?: unknown
  timestamp?: unknown
  attempts?: unknown
  last_error?: unknown
  dead?: unknown
}

function seconds(value: unknown): string {
  if (typeof value !== 'number') return 'never'
  if (value < 120) return `${Math.round(value)}s ago`
  if (value < 7200) return `${Math.round(value / 60)}m ago`
  return `${Math.round(value / 3600)}h ago`
}

function describe(body: unknown): string {
  const answer = (typeof body === 'object' && body !== null ? body : {}) as { endpoints?: EndpointLine[]; events?: EventLine[] }
  const endpoints = answer.endpoints ?? []
  if (endpoints.length === 0) return 'no webhook endpoints (events.endpoints is empty)\n'
  const lines: string[] = []
  for (const endpoint of endpoints) {
    const state = endpoint.disabled === true ? 'disabled' : typeof endpoint.failingForSeconds === 'number' ? `failing for ${Math.round(endpoint.failingForSeconds)}s` : 'ok'
    lines.push(`${String(endpoint.name)} ${String(endpoint.url)}: ${state}; ${String(endpoint.pending)} pending, ${String(endpoint.dead)} dead, ${String(endpoint.delivered)} delivered, ${String(endpoint.failed)} failed attempts, last success ${seconds(endpoint.lastSuccessAgeSeconds)}`)
  }
  const events = answer.events ?? []
  if (events.length > 0) lines.push('', 'ENDPOINT\tSTATE\tACTION\tREPOSITORY\tTAG/DIGEST\tTIME\tATTEMPTS\tLAST ERROR')
  for (const event of events) {
    const what = typeof event.tag === 'string' ? event.tag : typeof event.digest === 'string' ? event.digest : ''
    lines.push([event.endpoint, event.dead === true ? 'dead' : 'pending', event.action, event.repository ?? '', what, event.timestamp, event.attempts, event.last_error ?? ''].map((field) => String(field)).join('\t'))
  }
  return `${lines.join('\n')}\n`
}

export async function events(args: string[]): Promise<number> {
  const { values, positionals } = parseCommand(
    'events',
    args,
    { ...adminClientOptions, endpoint: { type: 'string' }, dead: { type: 'boolean' }, limit: { type: 'string' }, json: { type: 'boolean' }, help: helpOption },
    1,
  )
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const action = positionals[0]
  if (action !== 'list' && action !== 'retry') throw new UsageError(action ? `unknown action ${action} (list or retry)` : 'events needs list or retry', 'events')
  if (action === 'retry' && (values.dead !== undefined || values.limit !== undefined)) throw new UsageError('--dead and --limit go with "list"', 'events')
  const limit = values.limit ?? '20'
  if (!/^\d+$/.test(limit) || Number(limit) > 1000) throw new UsageError(`--limit needs a whole number up to 1000, not ${limit}`, 'events')
  const client = await adminClient(values, 'events')
  const query = new URLSearchParams({ limit, state: values.dead ? 'dead' : 'all' })
  if (values.endpoint !== undefined) query.set('endpoint', values.endpoint)
  const answer = action === 'retry'
    ? await client.call('POST', '/admin/api/events/retry', values.endpoint === undefined ? {} : { endpoint: values.endpoint })
    : await client.call('GET', `/admin/api/events?${query.toString()}`)
  if (!answer.ok) return answer.exitCode
  if (values.json) process.stdout.write(`${JSON.stringify(answer.body, null, 2)}\n`)
  else if (action === 'retry') {
    const retried = Number((answer.body as { retried?: unknown }).retried ?? 0)
    process.stdout.write(`${retried} dead letter${retried === 1 ? '' : 's'} queued again\n`)
  } else process.stdout.write(describe(answer.body))
  return 0
}
