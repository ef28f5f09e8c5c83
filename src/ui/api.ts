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
import type { DeletePlan, DeleteResult, ManifestDetail, RepositoryPage, SessionInfo, SignedOut, TagPage } from './types.js'

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
  log: Logger
}

export type ApiHandler = (req: IncomingMessage, res: ServerResponse, route: string, client: UiClient) => Promise<void>

const MAX_BODY_BYTES = 8 * 1024
const TAG_DETAIL_CONCURRENCY = 6
const naturalOrder = new Intl.Collator('en', { numeric: true }).compare
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
  const notObject = (): RegistryError => new RegistryError('UNSUPPORTED', { reason: 'expected a JSON object' })
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

  const callerOf = (session: Session): Caller => ({ user: session.user, anonymous: session.user === '' })
  const may = (session: Session, repository: string, action: Action, client: UiClient): boolean =>
    acl.granted(callerOf(session), { type: 'repository', name: repository, actions: [action] }, client.clientIp).length > 0
  const isAdmin = (session: Session, client: UiClient): boolean =>
    deps.adminUsers.length > 0
      ? deps.adminUsers.includes(session.user)
      : acl.granted(callerOf(session), { type: 'registry', name: 'catalog', actions: ['*'] }, client.clientIp).length > 0

  const signedOut = (): SignedOut =>
    deps.authMode === 'none' || deps.verifyLogin
      ? { loginAvailable: true }
      : { loginAvailable: false, reason: 'with an external token issuer Portier has no users of its own to sign in; use the registry API' }

  function currentSession(req: IncomingMessage): Session | undefined {
    const session = sessions.fromCookieHeader(req.headers.cookie)
    if (!session) return undefined
    // A user removed from the htpasswd file is signed out at their next call.
    if (session.user !== '' && deps.accountActive && !deps.accountActive(session.user)) return undefined
    if (session.user === '' && deps.authMode !== 'none') return undefined
    return session
  }

  function requireSession(req: IncomingMessage): Session {
    const session = currentSession(req)
    if (!session) throw new RegistryError('UNAUTHORIZED', signedOut(), {}, 'sign in first')
    return session
  }

  /** For POST and DELETE: the page must be ours (Origin) and know this session's token. */
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
    if (deps.authMode !== 'none') {
      if (!deps.verifyLogin) throw new RegistryError('UNSUPPORTED', signedOut())
      const { username, password } = body
      if (typeof username !== 'string' || typeof password !== 'string' || username === '' || username.length > 256 || password.length > 1024) {
        throw new RegistryError('UNAUTHORIZED', { reason: 'enter a user name and a password' }, {}, 'user name and password required')
      }
      const verdict = await deps.verifyLogin(username, password, client.clientIp)
      if (verdict === 'locked') {
        log.warn({ user: username, client: client.clientIp }, 'ui sign-in refused: locked out after repeated failures')
        throw new RegistryError('TOOMANYREQUESTS', { reason: 'too many failed sign-ins; try again in a few minutes' }, {}, 'too many failed sign-ins')
      }
      if (!verdict) {
        log.warn({ user: username, client: client.clientIp }, 'ui sign-in failed')
        throw new RegistryError('UNAUTHORIZED', { reason: 'invalid username or password' }, {}, 'invalid username or password')
      }
      user = username
    }
    const { session, setCookie } = sessions.issue(user)
    log.info({ user: user || undefined, client: client.clientIp }, 'ui sign-in')
    sendJson(res, 200, sessionInfo(session, client), { 'Set-Cookie': setCookie })
  }

  async function logout(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void> {
    const session = currentSession(req)
    requireStateChange(req, client, session)
    if (session) {
      sessions.revoke(session)
      log.info({ user: session.user || undefined, client: client.clientIp }, 'ui sign-out')
    }
    sendJson(res, 200, { signedOut: true }, { 'Set-Cookie': sessions.clearCookie })
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
      repositories: shown.map((name) => ({ name, canPush: may(session, name, 'push', client), canDelete: may(session, name, 'delete', client) })),
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
      canDelete: may(session, repository, 'delete', client),
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
    return { ...(await images.detail(repository, reference)), canDelete: may(session, repository, 'delete', client) }
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
    if (!may(session, repository, 'delete', client)) {
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
    return { ...plan, deleted: true }
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
