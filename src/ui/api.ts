// The web UI's JSON API (/ui/api/...): sign-in, repositories, tags, image details, deletes, status; every answer filtered by the ACL.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Acl, Caller } from '../auth/index.js'
import { causeChain } from '../errors/cause.js'
import type { Action } from '../registry/classify.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { isValidDigest, isValidReference, isValidRepository } from '../registry/names.js'
import type { Logger } from '../observe/log.js'
import { CSRF_HEADER, isSameOrigin, type Csrf } from './csrf.js'
import { mapLimit, type ImageReader } from './images.js'
import type { RegistryClient } from './registry-client.js'
import type { Session, Sessions } from './session.js'
import { setSecurityHeaders } from './static.js'
import { parseJson, readCapped } from '../lib/body.js'
import { isRecord } from '../lib/is-record.js'
import type { StatusSource } from './status.js'
import type { UiRetention } from './retention.js'
import { tokensRoute, type UiAccessTokens } from './tokens.js'
import { accessRoute, type AccessRoute, type UiAccessAdmin } from './access.js'
import type { AuditPage, DeletePlan, PullsPerDay, StorageOverTime, DeleteResult, MaintenanceInfo, ManifestDetail, RepositoryDeleteResult, RepositoryEntry, RepositoryPage, SessionInfo, SignedOut, SignOutResult, SsoOffer, TagPage } from './types.js'

export interface UiClient {
  clientIp: string
  /** e.g. https://registry.example.com: the origin pages are served from, and the host of `docker pull` lines. */
  publicOrigin: string
}

export interface ApiDeps {
  sessions: Sessions
  csrf: Csrf
  acl: Acl
  registry: RegistryClient
  images: ImageReader
  status: StatusSource
  authMode: 'none' | 'htpasswd' | 'token'
  /** Users who see the status panel; empty: users the ACL grants the catalog. */
  adminUsers: readonly string[]
  verifyLogin?: (user: string, password: string, clientIp: string) => Promise<boolean | 'locked'>
  accountActive?: (user: string) => boolean
  /** The groups a directory gave a signed-in user, for the ACL. */
  groupsOf?: (user: string) => readonly string[] | undefined
  log: Logger
  /** Maintenance mode: its state for the banner, and the switch for administrators. */
  maintenance?: UiMaintenance
  /** Retention's "what would be deleted" for administrators. */
  retention?: UiRetention
  /** The charts' series: storage over time (administrators) and pulls per day of a repository (who may pull it). */
  charts?: UiCharts
  /** Whole-repository deletes (administrators), optionally followed by a garbage collection. */
  repositories?: UiRepositories
  /** The remote a repository is a pull-through cache of (caches); undefined for local ones. */
  cacheSource?: (repository: string) => string | undefined
  /** Tells the audit trail what was done here (sign-ins, deletes): the UI's own registry calls pass no client request the gateway could record. */
  audit?: UiAuditHook
  /** The audit trail for administrators (GET /ui/api/audit); absent with audit.enabled false. */
  auditLog?: UiAuditLog
  /** The "Access tokens" page (access_tokens.enabled, with accounts of Portier's own). */
  accessTokens?: UiAccessTokens
  /** Single sign-on (ui.oidc): the login page's button, whether the password form stays, the provider's sign-out. */
  sso?: UiSso
  /** The "Users & access" page for administrators (htpasswd users, groups and grants in the store). */
  access?: UiAccessAdmin
}

/** What the API needs of single sign-on (src/ui/oidc). */
export interface UiSso {
  offer(): SsoOffer
  readonly allowPasswordLogin: boolean
  endSessionUrl(session: Session, client: UiClient): string | undefined
}

/** Reads the audit trail for the UI: the query's parameters as the admin API takes them (repo, user, since, action, limit). */
export interface UiAuditLog {
  list(params: URLSearchParams): Promise<AuditPage | { problem: string }>
}

/** One thing done through the web UI, for the audit trail. Never a password. */
export interface UiAuditEvent {
  action: 'login.ui' | 'manifest.delete' | 'repository.delete' | AccessAuditAction
  /** "success", or what stopped it (invalid_credentials, locked_out). */
  outcome: string
  /** What was changed when it is no repository: a user, a group, a grant (`grant 3: group ci team/* push`). */
  subject?: string
  user: string | undefined
  client: string
  userAgent: string | undefined
  repository?: string
  digest?: string
}

export type UiAuditHook = (event: UiAuditEvent) => void

/** The changes of users, groups and grants made on the "Users & access" page. */
export type AccessAuditAction = 'user.create' | 'user.password' | 'user.delete' | 'group.create' | 'group.update' | 'group.delete' | 'grant.create' | 'grant.delete'

/** The series the UI's charts draw, read from the store (src/app/usage.ts). */
export interface UiCharts {
  storage(sinceMs: number): Promise<StorageOverTime>
  pulls(repository: string, days: number): Promise<PullsPerDay>
}

/** What the UI needs to delete a whole repository (src/housekeeping/repository-delete.ts, through the gated internal calls). */
export interface UiRepositories {
  delete(repository: string, by: string): Promise<{ repository: string; tags: string[]; manifests: string[] }>
  /** Starts a garbage collection in the background; resolves with its run id (rejects when one cannot start: running here or at another instance). */
  collect(by: string): Promise<string>
}

/** What the UI needs of maintenance mode (src/housekeeping/maintenance.ts, switched as the admin API does). */
export interface UiMaintenance {
  status(): Omit<MaintenanceInfo, 'canSwitch'>
  /** Applies a switch request body ({ on, message?, retry_after? }); throws a RegistryError for a body it cannot take. */
  switch(body: Record<string, unknown>, by: string): Omit<MaintenanceInfo, 'canSwitch'>
}

export type ApiHandler = (req: IncomingMessage, res: ServerResponse, route: string, client: UiClient) => Promise<void>

const MAX_BODY_BYTES = 8 * 1024
const TAG_DETAIL_CONCURRENCY = 6
let collator: Intl.Collator | undefined
/** Tags in natural order (v2 before v10). The collator is made at first use: ICU's collation data costs ~3 MiB RSS once touched. */
const naturalOrder = (a: string, b: string): number => (collator ??= new Intl.Collator('en', { numeric: true })).compare(a, b)
const READ = ['GET', 'HEAD']
/** The API's routes and the methods each answers. */
const METHODS: Record<string, string[] | undefined> = {
  session: READ,
  login: ['POST'],
  logout: ['POST'],
  repositories: READ,
  tags: READ,
  manifest: [...READ, 'DELETE'],
  'delete-plan': READ,
  status: READ,
  maintenance: [...READ, 'PUT'],
  retention: READ,
  usage: READ,
  pulls: READ,
  audit: READ,
  repository: ['DELETE'],
  tokens: [...READ, 'POST', 'DELETE'],
  access: READ,
  explain: READ,
  users: ['POST', 'PUT', 'DELETE'],
  groups: ['POST', 'PUT', 'DELETE'],
  grants: ['POST', 'DELETE'],
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  res.end(res.req.method === 'HEAD' ? undefined : text)
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  // A JSON body cannot come from a plain HTML form, which is one more thing a cross-site page cannot forge.
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new RegistryError('UNSUPPORTED', { reason: 'expected Content-Type: application/json' })
  }
  const body = await readCapped(req, { maxBytes: MAX_BODY_BYTES, tooLarge: () => new RegistryError('TOO_LARGE', { max_bytes: MAX_BODY_BYTES }), rest: 'discard' })
  const notObject = (): RegistryError => new RegistryError('BODY_INVALID', { reason: 'expected a JSON object' })
  const parsed = parseJson(body, notObject)
  if (isRecord(parsed)) return parsed
  throw notObject()
}

function intParam(params: URLSearchParams, name: string, fallback: number, max: number): number {
  const text = params.get(name)
  if (text === null || text === '') return fallback
  const value = Number(text)
  if (!Number.isInteger(value) || value < 1) throw new RegistryError('PATH_INVALID', { reason: `${name} must be a positive integer` })
  return Math.min(value, max)
}

function repositoryParam(params: URLSearchParams, name = 'repository'): string {
  const repository = params.get(name) ?? ''
  if (!isValidRepository(repository)) throw new RegistryError('NAME_INVALID', { name: repository.slice(0, 300) })
  return repository
}

export function createApi(deps: ApiDeps): ApiHandler {
  const { sessions, csrf, acl, registry, images, log } = deps

  // A single sign-on session carries the groups the provider vouched for; a directory user's come from the
  // directory's last answer (auth.ldap). The ACL matches them like auth.groups members.
  const callerOfUser = (user: string, vouched?: readonly string[]): Caller => {
    const groups = vouched ?? (user === '' ? undefined : deps.groupsOf?.(user))
    return { user, anonymous: user === '', ...(groups ? { groups } : {}) }
  }
  const callerOf = (session: Session): Caller => callerOfUser(session.user, session.groups)
  const may = (session: Session, repository: string, action: Action, client: UiClient): boolean =>
    acl.granted(callerOf(session), { type: 'repository', name: repository, actions: [action] }, client.clientIp).length > 0
  const isAdmin = (session: Session, client: UiClient): boolean =>
    deps.adminUsers.length > 0
      ? deps.adminUsers.includes(session.user)
      : acl.granted(callerOf(session), { type: 'registry', name: 'catalog', actions: ['*'] }, client.clientIp).length > 0

  /** The ACL's delete; in a pull-through cache also an administrator (auth.mode none: everyone), as for the registry API. */
  const mayDelete = (session: Session, repository: string, client: UiClient): boolean =>
    may(session, repository, 'delete', client) && (deps.cacheSource?.(repository) === undefined || deps.authMode === 'none' || isAdmin(session, client))

  const signedOut = (): SignedOut => {
    const sso = deps.sso
    if (sso && !sso.allowPasswordLogin) return { loginAvailable: false, reason: 'sign in with single sign-on', sso: sso.offer() }
    const password: SignedOut = deps.authMode === 'none' || deps.verifyLogin
      ? { loginAvailable: true }
      : { loginAvailable: false, reason: 'with an external token issuer Portier has no users of its own to sign in; use the registry API' }
    return sso ? { ...password, sso: sso.offer() } : password
  }

  function currentSession(req: IncomingMessage): Session | undefined {
    const session = sessions.fromCookieHeader(req.headers.cookie)
    if (!session) return undefined
    // A user removed from the htpasswd file is signed out at their next call (single sign-on users are the provider's).
    if (session.user !== '' && session.via !== 'oidc' && deps.accountActive && !deps.accountActive(session.user)) return undefined
    if (session.via === 'oidc' && !deps.sso) return undefined
    if (session.user === '' && deps.authMode !== 'none') return undefined
    return session
  }

  function requireSession(req: IncomingMessage): Session {
    const session = currentSession(req)
    if (!session) throw new RegistryError('UNAUTHORIZED', signedOut(), {}, 'sign in first')
    return session
  }

  /** For POST, PUT and DELETE: the page must be ours (Origin) and know this session's token. */
  function requireStateChange(req: IncomingMessage, client: UiClient, session?: Session): void {
    if (!isSameOrigin(req.headers, client.publicOrigin)) throw new RegistryError('DENIED', { reason: 'cross-origin request refused' })
    if (session && !csrf.verify(session, req.headers[CSRF_HEADER])) throw new RegistryError('DENIED', { reason: 'missing or wrong X-CSRF-Token' })
  }

  function requirePull(session: Session, repository: string, client: UiClient): void {
    if (!may(session, repository, 'pull', client)) throw new RegistryError('DENIED', { missing: [`repository:${repository}:pull`] })
  }

  function sessionInfo(session: Session, client: UiClient): SessionInfo {
    return {
      user: session.user,
      anonymous: session.user === '',
      csrfToken: csrf.tokenFor(session),
      expiresAt: new Date(session.expiresAt).toISOString(),
      admin: isAdmin(session, client),
      registryHost: new URL(client.publicOrigin).host,
      authMode: deps.authMode,
    }
  }

  async function login(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void> {
    requireStateChange(req, client)
    const body = await readJsonBody(req)
    let user = ''
    if (deps.sso && !deps.sso.allowPasswordLogin) {
      throw new RegistryError('UNSUPPORTED', { reason: 'the password form is turned off (ui.oidc.allow_password_login: false); sign in with single sign-on' })
    }
    if (deps.authMode !== 'none') {
      if (!deps.verifyLogin) throw new RegistryError('UNSUPPORTED', signedOut())
      const { username, password } = body
      if (typeof username !== 'string' || typeof password !== 'string' || username === '' || username.length > 256 || password.length > 1024) {
        throw new RegistryError('UNAUTHORIZED', { reason: 'enter a user name and a password' }, {}, 'user name and password required')
      }
      const verdict = await deps.verifyLogin(username, password, client.clientIp)
      if (verdict === 'locked') {
        log.warn({ user: username, client: client.clientIp }, 'ui sign-in refused: locked out after repeated failures')
        deps.audit?.({ action: 'login.ui', outcome: 'locked_out', user: username, client: client.clientIp, userAgent: req.headers['user-agent'] })
        throw new RegistryError('TOOMANYREQUESTS', { reason: 'too many failed sign-ins; try again in a few minutes' }, {}, 'too many failed sign-ins')
      }
      if (!verdict) {
        log.warn({ user: username, client: client.clientIp }, 'ui sign-in failed')
        deps.audit?.({ action: 'login.ui', outcome: 'invalid_credentials', user: username, client: client.clientIp, userAgent: req.headers['user-agent'] })
        throw new RegistryError('UNAUTHORIZED', { reason: 'invalid username or password' }, {}, 'invalid username or password')
      }
      user = username
    }
    const { session, setCookie } = sessions.issue(user)
    log.info({ user: user || undefined, client: client.clientIp }, 'ui sign-in')
    deps.audit?.({ action: 'login.ui', outcome: 'success', user: user || undefined, client: client.clientIp, userAgent: req.headers['user-agent'] })
    sendJson(res, 200, sessionInfo(session, client), { 'Set-Cookie': setCookie })
  }

  async function logout(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void> {
    const session = currentSession(req)
    requireStateChange(req, client, session)
    const result: SignOutResult = { signedOut: true }
    if (session) {
      await sessions.revoke(session)
      log.info({ user: session.user || undefined, client: client.clientIp, via: session.via }, 'ui sign-out')
      const endSessionUrl = deps.sso?.endSessionUrl(session, client)
      if (endSessionUrl) result.endSessionUrl = endSessionUrl
    }
    sendJson(res, 200, result, { 'Set-Cookie': sessions.clearCookie })
  }

  async function sessionState(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void> {
    const session = currentSession(req)
    if (session) return sendJson(res, 200, sessionInfo(session, client))
    if (deps.authMode === 'none') {
      // Nobody signs in when auth is off: the page gets an anonymous session (for its CSRF token).
      const issued = sessions.issue('')
      return sendJson(res, 200, sessionInfo(issued.session, client), { 'Set-Cookie': issued.setCookie })
    }
    throw new RegistryError('UNAUTHORIZED', signedOut(), {}, 'not signed in')
  }

  /** Walks the catalog from `last`, keeping names that match `query` and that the caller may pull, until a page is full. */
  async function repositories(session: Session, params: URLSearchParams, client: UiClient): Promise<RepositoryPage> {
    const query = (params.get('q') ?? '').trim().toLowerCase().slice(0, 255)
    const n = intParam(params, 'n', 100, 1000)
    const lastParam = params.get('last')
    let cursor = lastParam && isValidRepository(lastParam) ? lastParam : undefined
    const found: string[] = []
    for (;;) {
      const page = await registry.catalog(cursor)
      for (const name of page.repositories) {
        if ((query === '' || name.includes(query)) && may(session, name, 'pull', client)) found.push(name)
        if (found.length > n) break
      }
      if (found.length > n || !page.more || page.repositories.length === 0) break
      cursor = page.repositories[page.repositories.length - 1]
    }
    const shown = found.slice(0, n)
    const result: RepositoryPage = {
      repositories: shown.map((name) => {
        const cachedFrom = deps.cacheSource?.(name)
        // Nothing can be pushed into a cache, whatever the ACL grants.
        const entry: RepositoryEntry = { name, canPush: cachedFrom === undefined && may(session, name, 'push', client), canDelete: mayDelete(session, name, client) }
        if (cachedFrom !== undefined) entry.cachedFrom = cachedFrom
        return entry
      }),
    }
    if (found.length > n) result.next = shown[shown.length - 1] as string
    return result
  }

  async function tags(session: Session, params: URLSearchParams, client: UiClient): Promise<TagPage> {
    const repository = repositoryParam(params)
    requirePull(session, repository, client)
    const n = intParam(params, 'n', 50, 200)
    const last = params.get('last') ?? ''
    const all = (await registry.tags(repository)).sort(naturalOrder)
    const start = last === '' ? 0 : all.findIndex((tag) => naturalOrder(tag, last) > 0)
    const pageTags = start < 0 ? [] : all.slice(start, start + n)
    const summaries = await mapLimit(pageTags, TAG_DETAIL_CONCURRENCY, (tag) => images.tagSummary(repository, tag))
    const page: TagPage = {
      repository,
      tags: summaries,
      total: all.length,
      canDelete: mayDelete(session, repository, client),
      canPush: may(session, repository, 'push', client),
    }
    if (start >= 0 && start + n < all.length) page.next = pageTags[pageTags.length - 1] as string
    return page
  }

  async function manifest(session: Session, params: URLSearchParams, client: UiClient): Promise<ManifestDetail> {
    const repository = repositoryParam(params)
    const reference = params.get('reference') ?? ''
    if (!isValidReference(reference)) throw new RegistryError('TAG_INVALID', { reference: reference.slice(0, 300) })
    requirePull(session, repository, client)
    return { ...(await images.detail(repository, reference)), canDelete: mayDelete(session, repository, client) }
  }

  /** Every tag of `repository` that points at `digest`: deleting the digest removes them all (registry 2.8 deletes by digest only). */
  async function deletePlan(repository: string, digest: string): Promise<DeletePlan> {
    const all = (await registry.tags(repository)).sort(naturalOrder)
    const digests = await mapLimit(all, 8, (tag) => registry.digestOf(repository, tag))
    return { repository, digest, tags: all.filter((_, index) => digests[index] === digest) }
  }

  function digestParam(params: URLSearchParams): string {
    const digest = params.get('digest') ?? ''
    if (!isValidDigest(digest)) throw new RegistryError('DIGEST_INVALID', { digest: digest.slice(0, 300) })
    return digest
  }

  async function deleteManifest(req: IncomingMessage, session: Session, params: URLSearchParams, client: UiClient): Promise<DeleteResult> {
    requireStateChange(req, client, session)
    const repository = repositoryParam(params)
    const digest = digestParam(params)
    if (!mayDelete(session, repository, client)) {
      throw new RegistryError('DENIED', { missing: [`repository:${repository}:delete`] }, {}, `you may not delete from ${repository}`)
    }
    const plan = await deletePlan(repository, digest)
    try {
      await registry.deleteManifest(repository, digest)
    } catch (error) {
      if (error instanceof RegistryError && error.code === 'UNSUPPORTED') {
        throw new RegistryError(
          'UNSUPPORTED',
          {
            reason: 'the registry has deleting turned off',
            fix: 'set storage.delete.enabled: true in the registry configuration (or REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it',
          },
          {},
          'deleting is turned off in the registry (storage.delete.enabled is false)',
          { cause: error },
        )
      }
      throw error
    }
    log.info({ user: session.user || undefined, client: client.clientIp, repository, digest, tags: plan.tags }, 'ui: manifest deleted')
    deps.audit?.({ action: 'manifest.delete', outcome: 'success', user: session.user || undefined, client: client.clientIp, userAgent: req.headers['user-agent'], repository, digest })
    return { ...plan, deleted: true }
  }

  /** GET: the banner for everyone (signed in or not); administrators see it all. PUT: an administrator switches it (same origin + CSRF). */
  async function maintenanceRoute(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void> {
    const maintenance = deps.maintenance
    if (!maintenance) throw new RegistryError('NOT_FOUND', { path: '/ui/api/maintenance' })
    const session = currentSession(req)
    const admin = session !== undefined && isAdmin(session, client)
    if (req.method === 'PUT') {
      if (!session) throw new RegistryError('UNAUTHORIZED', signedOut(), {}, 'sign in first')
      requireStateChange(req, client, session)
      if (!admin) throw new RegistryError('DENIED', { reason: 'switching maintenance is for administrators (ui.admin_users)' })
      const status = maintenance.switch(await readJsonBody(req), session.user || 'anonymous')
      log.info({ user: session.user || undefined, client: client.clientIp, on: status.on }, 'ui: maintenance switched')
      return sendJson(res, 200, { ...status, canSwitch: true } satisfies MaintenanceInfo)
    }
    const status = maintenance.status()
    const shown: MaintenanceInfo = admin
      ? { ...status, canSwitch: true }
      : { on: status.on, message: status.message, ...(status.since ? { since: status.since } : {}), ...(status.until ? { until: status.until } : {}), canSwitch: false }
    return sendJson(res, 200, shown)
  }

  /** DELETE ?repository=NAME[&gc=1]: an administrator who may delete there removes every manifest (same origin + CSRF). */
  async function repositoryRoute(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, client: UiClient): Promise<void> {
    const repositories = deps.repositories
    if (!repositories) throw new RegistryError('NOT_FOUND', { path: '/ui/api/repository' })
    const session = requireSession(req)
    requireStateChange(req, client, session)
    const repository = repositoryParam(params)
    if (!isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'deleting a whole repository is for administrators (ui.admin_users)' })
    if (!may(session, repository, 'delete', client)) throw new RegistryError('DENIED', { missing: [`repository:${repository}:delete`] }, {}, `you may not delete from ${repository}`)
    const by = session.user || 'anonymous'
    const deleted = await repositories.delete(repository, by)
    log.info({ user: session.user || undefined, client: client.clientIp, repository, manifests: deleted.manifests.length, tags: deleted.tags }, 'ui: repository deleted')
    deps.audit?.({ action: 'repository.delete', outcome: 'success', user: session.user || undefined, client: client.clientIp, userAgent: req.headers['user-agent'], repository })
    const result: RepositoryDeleteResult = { repository, tags: deleted.tags, manifests: deleted.manifests }
    if (params.get('gc') === '1') {
      try {
        result.gcRun = await repositories.collect(by)
      } catch (error) {
        // The repository is gone either way; the page says why no collection started.
        throw new RegistryError('UNAVAILABLE', { reason: `the repository was deleted, but no garbage collection started: ${error instanceof Error ? error.message : String(error)}`, deleted: result })
      }
    }
    return sendJson(res, 200, result)
  }

  /** GET ?repo=&user=&since=&action=&limit=: administrators read the audit trail, newest first. */
  async function auditRoute(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, client: UiClient): Promise<void> {
    const auditLog = deps.auditLog
    if (!auditLog) throw new RegistryError('NOT_FOUND', { path: '/ui/api/audit' })
    const session = requireSession(req)
    if (!isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'the audit trail is for administrators (ui.admin_users)' })
    const listed = await auditLog.list(params)
    if ('problem' in listed) throw new RegistryError('PATH_INVALID', { reason: listed.problem }, {}, listed.problem)
    return sendJson(res, 200, listed satisfies AuditPage)
  }

  /** GET usage (administrators: the whole storage) and pulls (anyone who may pull the repository). */
  async function chartsRoute(req: IncomingMessage, res: ServerResponse, route: 'usage' | 'pulls', params: URLSearchParams, client: UiClient): Promise<void> {
    const charts = deps.charts
    if (!charts) throw new RegistryError('NOT_FOUND', { path: `/ui/api/${route}` })
    const session = requireSession(req)
    if (route === 'pulls') {
      const repository = repositoryParam(params)
      requirePull(session, repository, client)
      return sendJson(res, 200, await charts.pulls(repository, intParam(params, 'days', 30, 366)))
    }
    if (!isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'storage usage is for administrators (ui.admin_users)' })
    return sendJson(res, 200, await charts.storage(Date.now() - intParam(params, 'days', 30, 3660) * 86_400_000))
  }

  /** GET: administrators see what retention would delete (the last dry run; ?refresh=1 makes a new one). */
  async function retentionRoute(req: IncomingMessage, res: ServerResponse, params: URLSearchParams, client: UiClient): Promise<void> {
    const retention = deps.retention
    if (!retention) throw new RegistryError('NOT_FOUND', { path: '/ui/api/retention' })
    const session = requireSession(req)
    if (!isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'retention is for administrators (ui.admin_users)' })
    return sendJson(res, 200, await retention.preview(params.get('refresh') === '1', session.user || 'anonymous'))
  }

  return async (req, res, route, client) => {
    setSecurityHeaders(res)
    res.setHeader('Cache-Control', 'no-store')
    try {
      const method = req.method ?? 'GET'
      const queryAt = (req.url ?? '').indexOf('?')
      const params = new URLSearchParams(queryAt < 0 ? '' : (req.url ?? '').slice(queryAt + 1))
      const allowed = METHODS[route]
      if (!allowed) throw new RegistryError('NOT_FOUND', { path: `/ui/api/${route}` })
      if (!allowed.includes(method)) throw new RegistryError('UNSUPPORTED', { method, path: `/ui/api/${route}` }, { Allow: allowed.join(', ') })
      if (route === 'session') return await sessionState(req, res, client)
      if (route === 'login') return await login(req, res, client)
      if (route === 'logout') return await logout(req, res, client)
      if (route === 'maintenance') return await maintenanceRoute(req, res, client)
      if (route === 'retention') return await retentionRoute(req, res, params, client)
      if (route === 'repository') return await repositoryRoute(req, res, params, client)
      if (route === 'audit') return await auditRoute(req, res, params, client)
      if (route === 'usage' || route === 'pulls') return await chartsRoute(req, res, route, params, client)
      if (route === 'tokens') {
        if (!deps.accessTokens) throw new RegistryError('NOT_FOUND', { path: '/ui/api/tokens' })
        return await tokensRoute({ requireSession, requireStateChange, isAdmin, groupsOf: (session) => callerOf(session).groups, readJsonBody, sendJson }, deps.accessTokens, req, res, params, client)
      }
      if (route === 'access' || route === 'explain' || route === 'users' || route === 'groups' || route === 'grants') {
        if (!deps.access) throw new RegistryError('NOT_FOUND', { path: `/ui/api/${route}` })
        const kit = { requireSession, requireStateChange, isAdmin, readJsonBody, sendJson, audit: deps.audit, callerOf: (user: string) => callerOfUser(user) }
        return await accessRoute(kit, deps.access, route satisfies AccessRoute, req, res, params, client)
      }
      const session = requireSession(req)
      switch (route) {
        case 'repositories':
          return sendJson(res, 200, await repositories(session, params, client))
        case 'tags':
          return sendJson(res, 200, await tags(session, params, client))
        case 'manifest':
          if (method === 'DELETE') return sendJson(res, 200, await deleteManifest(req, session, params, client))
          return sendJson(res, 200, await manifest(session, params, client))
        case 'delete-plan': {
          const repository = repositoryParam(params)
          requirePull(session, repository, client)
          return sendJson(res, 200, await deletePlan(repository, digestParam(params)))
        }
        case 'status':
          if (!isAdmin(session, client)) throw new RegistryError('DENIED', { reason: 'the status panel is for administrators (ui.admin_users)' })
          return sendJson(res, 200, deps.status.snapshot())
      }
      throw new RegistryError('NOT_FOUND', { path: `/ui/api/${route}` })
    } catch (error) {
      const failure = error instanceof RegistryError
        ? error
        : new RegistryError('BAD_GATEWAY', { reason: error instanceof Error ? error.message : String(error) }, {}, undefined, { cause: error })
      if (failure.status >= 500) log.error({ route, err: failure.message, detail: failure.detail, cause: causeChain(failure) }, 'ui api failed')
      sendRegistryError(res, failure)
    }
  }
}
