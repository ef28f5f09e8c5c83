// The admin endpoints: /metrics for Prometheus (optionally behind an address list and Basic auth), /healthz and /readyz.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseBasic } from '../auth/basic.js'
import type { HtpasswdStore } from '../auth/htpasswd.js'
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
}

export const ADMIN_PATHS = new Set(['/metrics', '/healthz', '/readyz'])

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

export function createAdminHandler(deps: AdminDeps): AdminHandler {
  async function mayScrape(req: IncomingMessage): Promise<{ ok: true } | { ok: false; status: number; reason: string }> {
    const ip = req.socket.remoteAddress ?? ''
    if (deps.allow && !deps.allow.has(ip)) return { ok: false, status: 403, reason: `address ${ip} is not in admin.allow` }
    if (!deps.users) return { ok: true }
    const credentials = parseBasic(req.headers.authorization)
    if (!credentials) return { ok: false, status: 401, reason: 'credentials required' }
    if (!(await deps.users.verify(credentials.user, credentials.password))) return { ok: false, status: 401, reason: 'invalid username or password' }
    return { ok: true }
  }

  // Never rejects: a failure here (a metric collector that throws, say) is logged, counted and answered
  // with a 500, so a scrape can never take the gateway down.
  return async (req, res) => {
    try {
      await answer(req, res)
    } catch (error) {
      reportInternalError(deps.log, deps.metrics, 'admin_handler', error, { requestId: '', method: req.method ?? 'GET', url: req.url ?? '/' })
      if (res.headersSent) res.destroy()
      else send(res, 500, { error: 'internal error; see the gateway log' })
    }
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, { error: 'method not allowed' }, { Allow: 'GET, HEAD' })
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
        send(res, 404, { error: 'metrics are disabled (metrics.enabled: false)' })
        return
      }
      const allowed = await mayScrape(req)
      if (!allowed.ok) {
        deps.log.warn({ client: req.socket.remoteAddress, reason: allowed.reason }, 'metrics scrape refused')
        send(res, allowed.status, { error: allowed.reason }, allowed.status === 401 ? { 'WWW-Authenticate': 'Basic realm="Portier metrics"' } : {})
        return
      }
      const { contentType, body } = await deps.metrics.exposition()
      send(res, 200, body, { 'Content-Type': contentType })
      return
    }
    send(res, 404, { error: 'not found', paths: [...ADMIN_PATHS] })
  }
}
