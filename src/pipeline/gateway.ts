// The request pipeline, read top to bottom: classify → authenticate → authorize → limit → route → forward → record.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { classify, type RegistryRequest } from '../registry/classify.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { describeClient, type TrustedProxies } from '../forward/headers.js'
import type { PublicHosts } from './public-hosts.js'
import type { Limits } from './limits.js'
import type { ByteCounts } from '../forward/forward.js'
import type { ExchangeLimiter } from './fairness.js'
import type { MinRate } from './min-rate.js'
import type { RouteTrail, Router } from '../routing/router.js'
import type { Logger } from '../observe/log.js'
import type { AuthOutcome, Metrics } from '../observe/metrics.js'
import { requestIdFrom, type Recorder } from '../observe/record.js'
import { isProgrammingError, reportInternalError, requestScope, type RequestScope } from '../observe/internal-errors.js'
import type { Acl, AuthContext, Caller, Authenticator, Identity, TokenEndpoint, TokenRequestEnded } from '../auth/index.js'
import { covers, formatScope } from '../auth/token/scope.js'
import { parseBasic, shownLoginName } from '../auth/basic.js'
import { malformedRange } from '../storage/ranges.js'
import type { Ui } from '../ui/index.js'
import type { ManifestCache } from '../forward/manifest-cache.js'
import type { ImmutableTagGuard } from '../housekeeping/immutable-guard.js'
import type { MaintenanceGate, WriteTicket } from './maintenance-gate.js'
import type { RateLimiter } from '../ratelimit/index.js'

export interface GatewayDeps {
  /** The route stage: which upstream(s) serve a request, and the forwarding to them. */
  router: Router
  authenticator: Authenticator
  acl: Acl
  /** The built-in token server (token mode), served at /auth/token. */
  tokenEndpoint?: TokenEndpoint
  /** The web UI at /ui/ (ui.enabled). */
  ui?: Pick<Ui, 'owns' | 'handle'>
  limits: Limits
  /** Request rate limits (limits.rate), when configured: counted after authorization, before anything is answered or forwarded. */
  rateLimits?: Pick<RateLimiter, 'admit'>
  trustedProxies: TrustedProxies
  publicUrl: string
  /** Which Host values may name the gateway in URLs, and the name used otherwise. */
  hosts: PublicHosts
  log: Logger
  /** The record step: access log, metrics, recent pushes. */
  recorder: Recorder
  metrics?: Metrics
  /** The configured auth mode, the label of the auth metrics. */
  authMode: string
  /** Fair share: upstream exchanges one user and one address may hold (limits.per_client). */
  exchanges?: ExchangeLimiter
  /** The minimum transfer rate (timeouts.min_rate), when enabled. */
  minRate?: MinRate
  /** Manifests by digest kept in memory (cache.manifests), answered after authorization and limits. */
  manifestCache?: ManifestCache
  /** Immutable tags (immutable_tags): a PUT that would move one, a DELETE that would remove one, refused before routing. */
  immutableTags?: ImmutableTagGuard
  /** The maintenance stage: refuses writes while maintenance is on and counts the writes in flight. */
  maintenance?: MaintenanceGate
  /** Requests only an administrator may make, whatever the ACL grants: why `caller` may not (undefined: allowed). */
  administratorsOnly?: (request: RegistryRequest, caller: Caller, clientIp: string) => string | undefined
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void

/** How long the gateway keeps reading a request body it refused, so the client can read the answer. */
const LINGER_MS = 5000

/**
 * Answering before the request body has arrived (a 413, an early error, an upstream that answered
 * without reading everything) and then closing makes the kernel reset the connection while the
 * client is still sending, and the client often reports a broken pipe instead of the answer.
 * Like nginx's lingering close, the gateway keeps the connection, discards what still arrives,
 * and closes it only when the client has not finished within LINGER_MS.
 */
function lingerOnUnreadBody(req: IncomingMessage): void {
  if (req.complete || req.readableEnded || req.destroyed) return
  const timer = setTimeout(() => req.socket.destroy(), LINGER_MS)
  timer.unref()
  const done = (): void => clearTimeout(timer)
  req.once('end', done)
  req.once('close', done)
  req.resume()
}

export function createGateway(deps: GatewayDeps): RequestHandler {
  const { router, authenticator, acl, tokenEndpoint, limits, trustedProxies, recorder, metrics, authMode } = deps
  const countAuth = (outcome: AuthOutcome): void => metrics?.authOutcome(authMode, outcome)

  /**
   * Token callers are held to what their token grants; everyone else to the ACL. Anonymous callers
   * who lack access are asked for credentials (clients only send them after a 401); others are denied.
   */
  function authorize(request: RegistryRequest, identity: Identity, context: AuthContext): void {
    const anonymousCaller = identity.via === 'anonymous'
    if (anonymousCaller && authenticator.asksForCredentials) {
      // The base endpoint is how `docker login` checks credentials; in token mode every call needs a token.
      if (request.op === 'base' || !authenticator.anonymousReachesAcl) throw authenticator.challenge(context)
    }
    if (identity.via === 'token') {
      const missing = covers(identity.access ?? [], request.scopes)
      if (missing.length > 0) throw authenticator.challenge(context, { missing: missing.map(formatScope) }, 'insufficient_scope')
    } else {
      const decision = acl.allows(callerOf(identity), request.scopes, context.clientIp)
      if (!decision.ok) {
        const missing = decision.missing.map(formatScope)
        if (anonymousCaller) throw authenticator.challenge(context, { missing })
        throw new RegistryError('DENIED', { missing })
      }
    }
    // Beyond what the ACL or the token grants: requests only an administrator may make (a delete from a pull-through cache).
    const refusal = deps.administratorsOnly?.(request, callerOf(identity), context.clientIp)
    if (refusal === undefined) return
    if (anonymousCaller && authenticator.asksForCredentials) throw authenticator.challenge(context)
    throw new RegistryError('DENIED', { repository: request.repository, reason: refusal }, {}, refusal)
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = process.hrtime.bigint()
    metrics?.inFlight.inc()
    let request: RegistryRequest | undefined
    let failure: RegistryError | undefined
    let upstreamName: string | undefined
    let identity: Identity | undefined
    let route: 'token' | 'ui' | undefined
    let authOutcome: AuthOutcome | undefined
    // The access token a login used (its id), for the audit trail.
    let accessToken: string | undefined
    // What the token endpoint said of its caller: the account, the name a form gave, the credential.
    let tokenRequest: TokenRequestEnded | undefined
    let stage: 'classify' | 'authenticate' | 'authorize' | 'forward' = 'classify'
    const bytes: ByteCounts = { received: 0, sent: 0 }
    // A write let through the maintenance stage, told how it ended in the finally below.
    let write: WriteTicket | undefined
    // Which upstream(s) served the request, and the request as the upstream saw it: filled in by routing.
    const trail: RouteTrail = {}
    // Accepted from the client or generated; travels upstream and back, and names the access-log line.
    const requestId = requestIdFrom(req.headers['x-request-id'])
    const scope = requestScope.getStore()
    if (scope) scope.requestId = requestId
    req.headers['x-request-id'] = requestId
    res.setHeader('X-Request-Id', requestId)
    const encrypted = (req.socket as TLSSocket).encrypted === true
    const client = describeClient(req.headers, req.socket.remoteAddress, encrypted, trustedProxies, deps.publicUrl, deps.hosts, req.socket.localAddress)
    try {
      // HTTP/1.1 requires Host (RFC 9112, 3.2): Node's own answer to its absence is a bare 400 that no log line tells of.
      if (req.headers.host === undefined && req.httpVersion === '1.1') throw new RegistryError('REQUEST_INVALID', { reason: 'an HTTP/1.1 request without a Host header' }, { Connection: 'close' })
      if (tokenEndpoint && isTokenPath(req.url)) {
        route = 'token'
        upstreamName = 'token-server'
        tokenRequest = await tokenEndpoint(req, res, client.clientIp)
        accessToken = tokenRequest.accessToken
        return
      }
      if (deps.ui?.owns(req)) {
        route = 'ui'
        await deps.ui.handle(req, res, client)
        return
      }
      request = classify(req.method ?? 'GET', req.url ?? '/')
      const context: AuthContext = { clientIp: client.clientIp, publicOrigin: client.publicOrigin, scopes: request.scopes }
      stage = 'authenticate'
      identity = await authenticator.authenticate(req.headers, context)
      stage = 'authorize'
      authorize(request, identity, context)
      if (identity.via !== 'anonymous') countAuth((authOutcome = 'success'))
      accessToken = identity.accessToken
      stage = 'forward'
      // Rate limits: per user, anonymous callers per address; answers from the gateway's caches count too.
      if (deps.rateLimits) {
        const anonymous = identity.via === 'anonymous' || identity.user === ''
        await deps.rateLimits.admit(request, { user: anonymous ? undefined : identity.user, ...(identity.groups ? { groups: identity.groups } : {}), address: client.clientIp })
      }
      // A malformed Range on a blob read: registry 2.8's 416 for it breaks the connection (see malformedRange).
      if ((request.op === 'blob.get' || request.op === 'blob.head') && malformedRange(req.headers)) {
        throw new RegistryError('RANGE_INVALID', { range: req.headers.range?.slice(0, 256) })
      }
      // Maintenance: writes refused while the registry is read-only (uploads begun before may finish).
      write = deps.maintenance?.(request)
      const limit = limits.forRequest(request)
      const mountLimit = limits.forMount(request)
      const manifestCache = deps.manifestCache
      if (manifestCache) {
        // A delete evicts before the upstream is asked, whatever it answers; a read by digest may be answered here.
        manifestCache.evict(request)
        const sent = manifestCache.answer(request, req.headers.accept, res)
        if (sent !== false) {
          bytes.sent += sent
          upstreamName = 'cache'
          return
        }
      }
      // GET /v2/ while a healthy upstream exists, and manifests by tag the tag cache knows, are answered here too.
      const local = router.answerLocally(request, req, res, manifestCache)
      if (local !== false) {
        bytes.sent += local
        upstreamName = request.op === 'base' ? 'portier' : 'cache'
        return
      }
      const caller = callerOf(identity)
      const filterJson = request.op === 'catalog' ? (body: unknown) => filterCatalog(body, (name) => acl.canPull(caller, name, client.clientIp)) : undefined
      const release = deps.exchanges?.admit({ user: caller.anonymous ? undefined : caller.user, address: client.clientIp })
      const watched = request
      const stopWatching = deps.minRate?.watch(req, res, (slow) => {
        metrics?.limitRejected('min_rate')
        deps.log.warn(
          { request_id: requestId, op: watched.op, repository: watched.repository, client: client.clientIp, user: caller.anonymous ? undefined : caller.user, direction: slow.direction, bytes: slow.bytes, needed: slow.needed, window_ms: slow.windowMs },
          'transfer slower than timeouts.min_rate: connection closed',
        )
      })
      try {
        // Inside the caller's fair share, like every other upstream exchange (a mount's size check included).
        const serve = (body: IncomingMessage): Promise<unknown> =>
          router.serve({ request: watched, req: body, res, client, limit, bytes, ...(filterJson ? { filterJson } : {}), ...(mountLimit ? { mountLimit } : {}), ...(manifestCache ? { manifestCache } : {}) }, trail)
        // The immutable-tag check may read a manifest body: routing then forwards that body (a replayed request).
        await (deps.immutableTags ? deps.immutableTags.guard(watched, req, limit, serve) : serve(req))
      } finally {
        release?.()
        stopWatching?.()
      }
    } catch (error) {
      if (stage === 'authenticate' || stage === 'authorize') countAuth((authOutcome = authFailure(error, identity)))
      if (isProgrammingError(error)) {
        // A bug, not the client or the upstream: logged with its stack and counted; the client gets a 500.
        reportInternalError(deps.log, metrics, 'request_handler', error)
        failure = new RegistryError('INTERNAL', { request_id: requestId })
      } else {
        failure = error instanceof RegistryError
          ? error
          : new RegistryError('BAD_GATEWAY', { reason: error instanceof Error ? error.message : String(error) }, {}, 'transfer failed', { cause: error })
      }
      if (!res.headersSent) {
        sendRegistryError(res, failure)
      } else {
        // The status line is already out: break the connection so the client cannot mistake a short body for a whole one.
        res.destroy()
      }
    } finally {
      write?.done(res.headersSent ? res.statusCode : 499, headerText(res.getHeader('location')))
      lingerOnUnreadBody(req)
      metrics?.inFlight.dec()
      recorder.record({
        requestId,
        method: req.method ?? 'GET',
        // A signed upload URL hides the upstream's `_state`, which the access log reads the blob size from.
        request: trail.upstreamRequest ?? request,
        ...(route ? { route } : {}),
        status: res.headersSent ? res.statusCode : 499,
        seconds: Number(process.hrtime.bigint() - startedAt) / 1e9,
        clientIp: client.clientIp,
        user: identity?.user ?? tokenRequest?.user,
        upstream: trail.served ?? upstreamName,
        bytesReceived: bytes.received,
        bytesSent: bytes.sent,
        ...(trail.blobBytes !== undefined ? { blobBytes: trail.blobBytes } : {}),
        failure,
        contentDigest: headerText(res.getHeader('docker-content-digest')),
        // A token endpoint's form carries them too (grant_type=password's username, a refresh token).
        credentialsSent: req.headers.authorization !== undefined || tokenRequest?.loginName !== undefined,
        ...(authOutcome ? { authOutcome } : {}),
        ...(accessToken !== undefined ? { accessToken } : {}),
        ...(tokenRequest?.refreshToken !== undefined ? { refreshToken: tokenRequest.refreshToken } : {}),
        ...(tokenRequest?.loginName !== undefined ? { loginName: tokenRequest.loginName } : loginNameOf(req.headers.authorization)),
        userAgent: req.headers['user-agent'],
        host: req.headers.host,
        publicOrigin: client.publicOrigin,
        mediaType: req.method === 'PUT' ? req.headers['content-type'] : headerText(res.getHeader('content-type')),
        contentLength: contentLengthOf(res),
      })
    }
  }

  /** Last line of the handler: whatever escaped it is logged once, counted, and answered with a 500 if still possible. */
  function failedUnexpectedly(res: ServerResponse, error: unknown): void {
    reportInternalError(deps.log, metrics, 'request_handler', error)
    try {
      if (!res.headersSent) sendRegistryError(res, new RegistryError('INTERNAL', { request_id: requestScope.getStore()?.requestId }))
      else res.destroy()
    } catch {
      res.destroy()
    }
  }

  return (req, res) => {
    // The request id is filled in by handle(); errors that escape it (stream events included) find the request here.
    const scope: RequestScope = { requestId: '', method: req.method ?? 'GET', url: req.url ?? '/' }
    requestScope.run(scope, () => {
      handle(req, res).catch((error: unknown) => failedUnexpectedly(res, error))
    })
  }
}

/** Why authentication or authorization stopped a request, as a bounded metric label. */
function authFailure(error: unknown, identity: Identity | undefined): AuthOutcome {
  const code = error instanceof RegistryError ? error.code : undefined
  if (code === 'TOOMANYREQUESTS') return 'locked_out'
  if (code === 'UNAVAILABLE') return 'busy'
  if (code === 'DENIED') return 'denied'
  if (identity === undefined) return 'invalid_credentials'
  // A known caller (or an anonymous one) the ACL or token does not cover.
  return identity.via === 'anonymous' ? 'no_credentials' : 'denied'
}

/** The user name of Basic credentials (for the audit trail's login attempts); the password stays here. */
function loginNameOf(authorization: string | undefined): { loginName?: string } {
  const name = parseBasic(authorization)?.user
  return name ? { loginName: shownLoginName(name) } : {}
}

function headerText(value: number | string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined
}

/** The response's declared body size (a HEAD's too), when it declared one. */
function contentLengthOf(res: ServerResponse): number | undefined {
  const value = Number(res.getHeader('content-length'))
  return Number.isSafeInteger(value) && value >= 0 && res.hasHeader('content-length') ? value : undefined
}

function callerOf(identity: Identity): Caller {
  return {
    user: identity.user,
    anonymous: identity.via === 'anonymous',
    ...(identity.groups ? { groups: identity.groups } : {}),
    ...(identity.limit ? { limit: identity.limit } : {}),
    ...(identity.robot ? { robot: true } : {}),
  }
}

/** Keeps only the repositories the caller may pull; the upstream's Link (pagination) header stays. */
function filterCatalog(body: unknown, canPull: (repository: string) => boolean): unknown {
  if (typeof body !== 'object' || body === null || !Array.isArray((body as { repositories?: unknown }).repositories)) return body
  const repositories = (body as { repositories: unknown[] }).repositories
  return { ...body, repositories: repositories.filter((name) => typeof name === 'string' && canPull(name)) }
}

function isTokenPath(url: string | undefined): boolean {
  const path = (url ?? '').split('?')[0]
  return path === '/auth/token' || path === '/auth/token/'
}
