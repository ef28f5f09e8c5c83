// The admin endpoints: /metrics for Prometheus (optionally behind an address list and Basic auth), /healthz and /readyz.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseBasic } from '../auth/basic.js'
import type { HtpasswdStore } from '../auth/htpasswd.js'
import { catalogue, isErrorCode, type AdminErrorCode } from '../errors/catalogue.js'
import { PortierError, type PortierErrorOptions } from '../errors/portier-error.js'
import type { AddressList } from '../net/addresses.js'
import type { Metrics } from './metrics.js'
import type { Logger } from './log.js'
import { reportInternalError } from './internal-errors.js'

/** One thing readiness depends on, with what an operator needs to see why it is not ready. */
export interface ReadinessCheck {
  name: string
  ready: boolean
  detail?: unknown
}

export interface AdminDeps {
  metrics: Metrics | undefined
  /** Addresses allowed to read /metrics; undefined: every address. */
  allow: AddressList | undefined
  /** Users allowed to read /metrics; undefined: no password asked. */
  users: HtpasswdStore | undefined
  readiness(): ReadinessCheck[]
  log: Logger
  /** The admin API under /admin/api/ (src/admin/api.ts): it answers every method itself. */
  api?: { owns(path: string): boolean; handle(req: IncomingMessage, res: ServerResponse): Promise<void> }
}

export const ADMIN_PATHS = new Set(['/metrics', '/healthz', '/readyz'])

/** The paths the admin handler answers: the endpoints above and the admin API (also on the main listener with admin.on_main_listener). */
export function isAdminPath(path: string): boolean {
  return ADMIN_PATHS.has(path) || path.startsWith('/admin/api/')
}

export type AdminHandler = (req: IncomingMessage, res: ServerResponse) => Promise<void>

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : `${JSON.stringify(body)}\n`
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    ...headers,
  })
  res.end(text)
}

/** The admin listener's refusals (catalogue group "admin"). */
export class AdminError extends PortierError<AdminErrorCode> {
  constructor(code: AdminErrorCode, options: PortierErrorOptions = {}) {
    super(isErrorCode(code) && catalogue[code].subsystem === 'admin' ? code : 'ADMIN_INTERNAL', options)
  }
}

/**
 * An admin refusal's body: `{ error, code }` plus the detail's fields. `error` is what this listener
 * has always answered (people and scripts read it); `code` names the catalogue entry.
 */
export function adminErrorBody(error: AdminError): Record<string, unknown> {
  const detail = typeof error.detail === 'object' && error.detail !== null && !Array.isArray(error.detail) ? error.detail : {}
  return { ...detail, error: error.message, code: error.code }
}

function sendError(res: ServerResponse, error: AdminError): void {
  send(res, error.status, adminErrorBody(error), error.headers)
}

export function createAdminHandler(deps: AdminDeps): AdminHandler {
  /** Why this scrape is refused, or undefined when it may read /metrics. */
  async function scrapeRefusal(req: IncomingMessage): Promise<AdminError | undefined> {
    const ip = req.socket.remoteAddress ?? ''
    if (deps.allow && !deps.allow.has(ip)) return new AdminError('METRICS_DENIED', { message: `address ${ip} is not in admin.allow` })
    if (!deps.users) return undefined
    const challenge = { 'WWW-Authenticate': 'Basic realm="Portier metrics"' }
    const credentials = parseBasic(req.headers.authorization)
    if (!credentials) return new AdminError('METRICS_UNAUTHORIZED', { headers: challenge })
    if (!(await deps.users.verify(credentials.user, credentials.password))) {
      return new AdminError('METRICS_UNAUTHORIZED', { message: 'invalid username or password', headers: challenge })
    }
    return undefined
  }

  // Never rejects: a failure here (a metric collector that throws, say) is logged, counted and answered
  // with a 500, so a scrape can never take the gateway down.
  return async (req, res) => {
    try {
      await answer(req, res)
    } catch (error) {
      reportInternalError(deps.log, deps.metrics, 'admin_handler', error, { requestId: '', method: req.method ?? 'GET', url: req.url ?? '/' })
      if (res.headersSent) res.destroy()
      else sendError(res, new AdminError('ADMIN_INTERNAL', { cause: error }))
    }
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    if (deps.api?.owns(path)) {
      await deps.api.handle(req, res)
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(res, new AdminError('ADMIN_METHOD_NOT_ALLOWED', { headers: { Allow: 'GET, HEAD' } }))
      return
    }
    if (path === '/healthz') {
      send(res, 200, { status: 'ok' })
      return
    }
    if (path === '/readyz') {
      const checks = deps.readiness()
      const ready = checks.every((check) => check.ready)
      send(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks })
      return
    }
    if (path === '/metrics') {
      if (!deps.metrics) {
        sendError(res, new AdminError('METRICS_DISABLED'))
        return
      }
      const refusal = await scrapeRefusal(req)
      if (refusal) {
        deps.log.warn({ client: req.socket.remoteAddress, reason: refusal.message }, 'metrics scrape refused')
        sendError(res, refusal)
        return
      }
      const { contentType, body } = await deps.metrics.exposition()
      send(res, 200, body, { 'Content-Type': contentType })
      return
    }
    sendError(res, new AdminError('ADMIN_NOT_FOUND', { detail: { paths: [...ADMIN_PATHS] } }))
  }
}
