// The admin API's events routes: GET /admin/api/events (endpoint health and queued events) and POST /admin/api/events/retry (dead letters sent again).
import type { AdminApi } from '../admin/api.js'
import { AdminError } from '../observe/admin.js'
import type { Logger } from '../observe/log.js'
import type { Events } from './index.js'
import type { QueuedEvent } from './queue.js'

export const EVENTS_PATH = '/admin/api/events'
export const EVENTS_RETRY_PATH = '/admin/api/events/retry'

const MAX_LIST = 1000

/** A queued event as the CLI lists it: what it is about and how its delivery goes, not the whole envelope. */
function listed(entry: QueuedEvent): Record<string, unknown> {
  const { event } = entry
  return {
    endpoint: entry.endpoint,
    seq: entry.seq,
    id: event.id,
    action: event.action,
    repository: event.target.repository,
    tag: event.target.tag,
    digest: event.target.digest,
    timestamp: event.timestamp,
    queued_at: new Date(entry.queuedAt).toISOString(),
    attempts: entry.attempts,
    last_error: entry.lastError,
    dead: entry.dead,
  }
}

/** Both routes need an administrator: events name users, addresses and repositories. Without endpoints they answer empty lists. */
export function registerEventRoutes(api: AdminApi, events: Events | undefined, log: Logger): void {
  const known = async (name: string | null): Promise<string | undefined> => {
    if (name === null || name === '') return undefined
    if (!(await events?.status())?.some((endpoint) => endpoint.name === name)) throw new AdminError('ADMIN_BAD_REQUEST', { message: `no endpoint named ${JSON.stringify(name)} in events.endpoints` })
    return name
  }
  api.route('GET', EVENTS_PATH, async (call) => {
    const endpoint = await known(call.params.get('endpoint'))
    const state = call.params.get('state') ?? 'all'
    if (!['all', 'pending', 'dead'].includes(state)) throw new AdminError('ADMIN_BAD_REQUEST', { message: 'state must be all, pending or dead' })
    const limit = Number(call.params.get('limit') ?? 100)
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > MAX_LIST) throw new AdminError('ADMIN_BAD_REQUEST', { message: `limit must be a whole number from 0 to ${MAX_LIST}` })
    if (!events) return { endpoints: [], events: [] }
    const dead = state === 'all' ? undefined : state === 'dead'
    const queued = await events.list({ ...(endpoint ? { endpoint } : {}), ...(dead === undefined ? {} : { dead }), limit })
    return {
      endpoints: (await events.status()).filter((status) => endpoint === undefined || status.name === endpoint),
      events: queued.map(listed),
    }
  }, { admin: true })
  api.route('POST', EVENTS_RETRY_PATH, async (call) => {
    const body = await call.json()
    if (body.endpoint !== undefined && typeof body.endpoint !== 'string') throw new AdminError('ADMIN_BAD_REQUEST', { message: '"endpoint" must be an endpoint name' })
    const endpoint = await known(body.endpoint ?? null)
    const retried = events ? await events.retry(endpoint) : 0
    log.info({ by: call.user, endpoint, retried }, 'events: dead letters sent again')
    return { retried }
  })
}
