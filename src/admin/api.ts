// The admin API (/admin/api/...): a small route table on the admin listener, JSON in and out; calls that change state need an administrator.
/*
 * Adding a route (GC, retention, events): build your module in the composition root, then
 *
 *   api.route('POST', '/admin/api/gc', async (call) => {
 *     const body = await call.json()                  // {} for an empty body; ADMIN_BAD_REQUEST if not a JSON object
 *     if (typeof body.dry_run !== 'boolean') throw new AdminError('ADMIN_BAD_REQUEST', { message: 'dry_run must be true or false' })
 *     const report = await gc.run({ dryRun: body.dry_run, by: call.user })
 *     return report                                   // sent as JSON with 200; `reply(202, body)` for another status
 *   })
 *
 * - Paths are exact (no parameters in the path; use the query: call.params). GET routes answer HEAD too.
 * - Every method but GET/HEAD needs an administrator (see AdminAuth); `{ admin: true }` asks it of a GET too.
 *   call.user is who called: the admin's name, or "anonymous" when auth.mode is none.
 * - Refuse with AdminError (catalogue group "admin": ADMIN_BAD_REQUEST, ADMIN_CONFLICT, ...): the answer is
 *   `{ error, code, ...detail }` with the code's status. Anything else thrown is logged and answered 500.
 * - The CLI side is src/cli/admin-client.ts (adminRequest): URL, TLS and credentials are handled there.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseBasic } from '../auth/basic.js'
import { parseJson, readCapped } from '../lib/body.js'
import { isRecord } from '../lib/is-record.js'
import { AdminError, adminErrorBody } from '../observe/admin.js'
import type { Logger } from '../observe/log.js'

export const ADMIN_API_PREFIX = '/admin/api/'

export interface AdminCall {
  req: IncomingMessage
  /** The query string's parameters. */
  params: URLSearchParams
  /** Who called: an administrator's user name, or "anonymous" (auth.mode none, or a GET that needs no admin). */
  user: string
  clientIp: string
  /** The request body as a JSON object ({} when empty); at most 64 KiB. */
  json(): Promise<Record<string, unknown>>
}

export type AdminRouteHandler = (call: AdminCall) => Promise<unknown>

export interface RouteOptions {
  /** Require an administrator for a GET too (every other method always requires one). */
  admin?: boolean
}

/** A handler's answer with a status other than 200. */
export class AdminReply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

export function reply(status: number, body: unknown, headers: Record<string, string> = {}): AdminReply {
  return new AdminReply(status, body, headers)
}

/** Who may change state: the answer is the caller's name, or an AdminError. */
export interface AdminAuth {
  /** Resolves with the administrator's name; rejects with ADMIN_UNAUTHORIZED or ADMIN_DENIED. */
  administrator(req: IncomingMessage, clientIp: string): Promise<string>
}

export interface AdminAuthDeps {
  authMode: 'none' | 'htpasswd' | 'token'
  /** Checks a user's password (the htpasswd users, with the login throttle); absent with an external token issuer. */
  verifyLogin?: (user: string, password: string, clientIp: string) => Promise<boolean | 'locked'>
  /** Whether a signed-in user is an administrator (ui.admin_users; the web UI's rule). */
  isAdmin: (user: string, clientIp: string) => boolean
}

const CHALLENGE = { 'WWW-Authenticate': 'Basic realm="Portier admin", charset="UTF-8"' }

/**
 * Basic credentials of an htpasswd user who is an administrator. With auth.mode none the registry is
 * open to everyone anyway, so the admin API is too (callers are "anonymous"); with an external
 * token issuer Portier has no users and nobody can change state here.
 */
export function createAdminAuth(deps: AdminAuthDeps): AdminAuth {
  return {
    async administrator(req, clientIp) {
      if (deps.authMode === 'none') return 'anonymous'
      const verify = deps.verifyLogin
      if (!verify) {
        throw new AdminError('ADMIN_DENIED', { message: 'with an external token issuer Portier has no users of its own: the admin API cannot authenticate anyone' })
      }
      const credentials = parseBasic(req.headers.authorization)
      if (!credentials) throw new AdminError('ADMIN_UNAUTHORIZED', { headers: CHALLENGE })
      const verdict = await verify(credentials.user, credentials.password, clientIp)
      if (verdict === 'locked') throw new AdminError('ADMIN_UNAUTHORIZED', { message: 'too many failed sign-ins; try again in a few minutes', headers: CHALLENGE })
      if (!verdict) throw new AdminError('ADMIN_UNAUTHORIZED', { message: 'invalid username or password', headers: CHALLENGE })
      if (!deps.isAdmin(credentials.user, clientIp)) throw new AdminError('ADMIN_DENIED', { detail: { user: credentials.user } })
      return credentials.user
    },
  }
}

export interface AdminApi {
  /** Adds a route; a second route for the same method and path is a programming error. */
  route(method: string, path: string, handler: AdminRouteHandler, options?: RouteOptions): void
  /** Whether a path is the API's (under /admin/api/). */
  owns(path: string): boolean
  /** Answers one request under /admin/api/; never rejects for a client's mistake. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>
}

interface Route {
  handler: AdminRouteHandler
  admin: boolean
}

const MAX_BODY_BYTES = 64 * 1024

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = `${JSON.stringify(body ?? null)}\n`
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    ...headers,
  })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}

async function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readCapped(req, {
    maxBytes: MAX_BODY_BYTES,
    tooLarge: () => new AdminError('ADMIN_BAD_REQUEST', { message: `the body is larger than ${MAX_BODY_BYTES} bytes` }),
    rest: 'discard',
  })
  if (body.length === 0) return {}
  const notObject = (): AdminError => new AdminError('ADMIN_BAD_REQUEST', { message: 'the body must be a JSON object' })
  const parsed = parseJson(body, notObject)
  if (!isRecord(parsed)) throw notObject()
  return { ...parsed }
}

export function createAdminApi(deps: { auth: AdminAuth; log: Logger }): AdminApi {
  const routes = new Map<string, Map<string, Route>>()

  return {
    route(method, path, handler, options = {}) {
      if (!path.startsWith(ADMIN_API_PREFIX)) throw new Error(`admin API routes live under ${ADMIN_API_PREFIX}: ${path}`)
      const byMethod = routes.get(path) ?? new Map<string, Route>()
      const upper = method.toUpperCase()
      if (byMethod.has(upper)) throw new Error(`admin API route ${upper} ${path} is registered twice`)
      byMethod.set(upper, { handler, admin: options.admin === true || (upper !== 'GET' && upper !== 'HEAD') })
      routes.set(path, byMethod)
    },

    owns: (path) => path.startsWith(ADMIN_API_PREFIX),

    async handle(req, res) {
      const url = req.url ?? '/'
      const queryAt = url.indexOf('?')
      const path = queryAt < 0 ? url : url.slice(0, queryAt)
      const method = (req.method ?? 'GET').toUpperCase()
      const clientIp = req.socket.remoteAddress ?? ''
      try {
        const byMethod = routes.get(path)
        if (!byMethod) throw new AdminError('ADMIN_NOT_FOUND', { detail: { paths: [...routes.keys()].sort() } })
        const route = byMethod.get(method) ?? (method === 'HEAD' ? byMethod.get('GET') : undefined)
        if (!route) {
          const allowed = [...byMethod.keys()]
          throw new AdminError('ADMIN_METHOD_NOT_ALLOWED', { headers: { Allow: allowed.join(', ') } })
        }
        const user = route.admin ? await deps.auth.administrator(req, clientIp) : 'anonymous'
        const call: AdminCall = {
          req,
          params: new URLSearchParams(queryAt < 0 ? '' : url.slice(queryAt + 1)),
          user,
          clientIp,
          json: () => readJsonObject(req),
        }
        const answer = await route.handler(call)
        if (answer instanceof AdminReply) sendJson(res, answer.status, answer.body, answer.headers)
        else sendJson(res, 200, answer)
      } catch (error) {
        if (!(error instanceof AdminError)) throw error
        if (error.code === 'ADMIN_UNAUTHORIZED' || error.code === 'ADMIN_DENIED') {
          deps.log.warn({ client: clientIp, method, path, reason: error.message }, 'admin API call refused')
        }
        if (res.headersSent) res.destroy()
        else sendJson(res, error.status, adminErrorBody(error), error.headers)
      } finally {
        // A refused call may not have read its body: read and drop it so the client gets the answer.
        if (!req.readableEnded) req.resume()
      }
    },
  }
}
