// The web UI, served by Portier itself at /ui/: the prebuilt pages, and their JSON API behind Portier's own users and ACL.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { UiConfig } from './section.js'
import type { AuthConfig } from '../auth/section.js'
import type { AuthSetup } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { createApi, type UiAuditHook, type UiAuditLog, type UiCharts, type UiClient, type UiMaintenance, type UiRepositories } from './api.js'
import type { UiRetention } from './retention.js'
import type { UiAccessTokens } from './tokens.js'
import type { UiAccessAdmin } from './access.js'
import { createCsrf } from './csrf.js'
import { createImageReader } from './images.js'
import { createRegistryClient, type RoutedAnswer } from './registry-client.js'
import { createSessions, loadSessionSecret } from './session.js'
import type { createSso } from './oidc/index.js'
import { loadStaticFiles, setSecurityHeaders } from './static.js'
import type { StatusSource } from './status.js'
import type { Revocations } from '../shared/index.js'

export { createStatusSource, type StatusSource, type StatusInputs } from './status.js'
export type { UiClient } from './api.js'
export type { UiAccessAdmin } from './access.js'

export interface UiDeps {
  config: UiConfig
  authMode: AuthConfig['mode']
  auth: Pick<AuthSetup, 'acl' | 'verifyLogin' | 'accountActive' | 'groupsOf' | 'issueServiceToken'>
  /** The router's answer to the UI's own requests: routed and forwarded as a client's would be. */
  registry: RoutedAnswer
  status: StatusSource
  log: Logger
  /** The built front end; dist/ui/static by default. */
  staticDir?: string
  /** Maintenance mode: the banner and the status panel's switch. */
  maintenance?: UiMaintenance
  /** Retention's "what would be deleted" in the status panel (administrators). */
  retention?: UiRetention
  /** Storage over time and pulls per day, from the store. */
  charts?: UiCharts
  /** Whole-repository deletes for administrators (and the garbage collection after). */
  repositories?: UiRepositories
  /** The remote a repository is a pull-through cache of (caches), shown beside its name; undefined for local ones. */
  cacheSource?: (repository: string) => string | undefined
  /** The audit trail's record of sign-ins and deletes made here. */
  audit?: UiAuditHook
  /** The audit trail page for administrators. */
  auditLog?: UiAuditLog
  /** The group names auth.groups declares: single sign-on keeps only these of the provider's groups. */
  declaredGroups?: readonly string[]
  /** Where signed-out sessions are kept: every instance refuses them with shared state (shared.redis). */
  revocations?: Revocations
  /** The "Access tokens" page. */
  accessTokens?: UiAccessTokens
  /** The "Users & access" page (administrators). */
  access?: UiAccessAdmin
  /** Single sign-on's module, loaded by the caller only when ui.oidc is enabled (openid-client stays out of memory otherwise). */
  sso?: typeof createSso
}

/** Loads single sign-on (ui.oidc) when enabled: `createUi` needs it in hand, and openid-client is not loaded otherwise. */
export async function loadSso(config: UiConfig): Promise<typeof createSso | undefined> {
  return config.enabled && config.oidc.enabled ? (await import('./oidc/index.js')).createSso : undefined
}

export interface Ui {
  /** Whether this request is the UI's: a path under /ui, or a browser asking for `/`. */
  owns(req: IncomingMessage): boolean
  handle(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void>
  /** For /readyz: single sign-on's state, when configured. */
  readiness(): Array<{ name: string; ready: boolean; detail: string }>
  close(): Promise<void>
}

function pathOf(url: string | undefined): string {
  const path = (url ?? '/').split('?')[0] ?? '/'
  return path
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(302, { Location: location, 'Content-Length': '0', 'Cache-Control': 'no-store' })
  res.end()
}

export function createUi(deps: UiDeps): Ui {
  const { config, log } = deps
  const { secret, created } = loadSessionSecret(config.session_secret, config.session_secret_file)
  if (created) log.info({ file: config.session_secret_file }, 'generated the web UI session key')
  const files = loadStaticFiles(deps.staticDir)
  if (!files.available) log.warn('the web UI bundle is missing (dist/ui/static): run "npm run build"; /ui/ answers 503 until then')
  if (deps.authMode === 'token' && !deps.auth.verifyLogin) {
    log.warn('ui: with an external token issuer Portier has no users of its own, so nobody can sign in to the web UI')
  }
  const issue = deps.auth.issueServiceToken
  // Tokens name the UI as their subject; which user asked is in Portier's own log.
  const registry = createRegistryClient(deps.registry, {
    ...(issue ? { serviceTokens: (access) => issue('portier-ui', access) } : {}),
  })
  const sessions = createSessions(secret, config.session_ttl, deps.revocations)
  // Single sign-on (ui.oidc): its sign-in and callback pages beside the API; the provider is discovered in the background.
  if (config.oidc.enabled && !deps.sso) throw new Error('ui.oidc is enabled but its module was not loaded (loadSso)')
  const sso = config.oidc.enabled && deps.sso
    ? deps.sso({ config: config.oidc, secret, sessions, declaredGroups: deps.declaredGroups ?? [], log, ...(deps.audit ? { audit: deps.audit } : {}) })
    : undefined
  const api = createApi({
    sessions,
    csrf: createCsrf(secret),
    acl: deps.auth.acl,
    registry,
    images: createImageReader(registry),
    status: deps.status,
    authMode: deps.authMode,
    adminUsers: config.admin_users,
    ...(deps.auth.verifyLogin ? { verifyLogin: deps.auth.verifyLogin } : {}),
    ...(deps.auth.accountActive ? { accountActive: deps.auth.accountActive } : {}),
    ...(deps.auth.groupsOf ? { groupsOf: deps.auth.groupsOf } : {}),
    ...(deps.maintenance ? { maintenance: deps.maintenance } : {}),
    ...(deps.retention ? { retention: deps.retention } : {}),
    ...(deps.charts ? { charts: deps.charts } : {}),
    ...(deps.repositories ? { repositories: deps.repositories } : {}),
    ...(deps.cacheSource ? { cacheSource: deps.cacheSource } : {}),
    ...(deps.audit ? { audit: deps.audit } : {}),
    ...(deps.auditLog ? { auditLog: deps.auditLog } : {}),
    ...(sso ? { sso } : {}),
    ...(deps.accessTokens ? { accessTokens: deps.accessTokens } : {}),
    ...(deps.access ? { access: deps.access } : {}),
    log,
  })

  return {
    owns(req) {
      const path = pathOf(req.url)
      if (path === '/ui' || path.startsWith('/ui/')) return true
      // Browsers that open the registry's address land on the UI; registry clients never ask for HTML.
      return path === '/' && (req.method === 'GET' || req.method === 'HEAD') && /\btext\/html\b/.test(req.headers.accept ?? '')
    },

    async handle(req, res, client) {
      const path = pathOf(req.url)
      if (path === '/' || path === '/ui') return redirect(res, '/ui/')
      const rest = path.slice('/ui/'.length)
      if (rest.startsWith('api/')) return api(req, res, rest.slice('api/'.length), client)
      setSecurityHeaders(res)
      if (sso?.owns(path)) return sso.handle(req, res, path, client)
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return sendRegistryError(res, new RegistryError('UNSUPPORTED', { method: req.method }, { Allow: 'GET, HEAD' }))
      }
      if (!files.available) return sendRegistryError(res, new RegistryError('UNAVAILABLE', { reason: 'the web UI was not built; run "npm run build"' }))
      if (files.serve(req, res, rest)) return
      sendRegistryError(res, new RegistryError('NOT_FOUND', { path }))
    },

    readiness: () => (sso ? [sso.readiness()] : []),
    close: async () => {
      await sso?.close()
    },
  }
}
