// The web UI, served by Portier itself at /ui/: the prebuilt pages, and their JSON API behind Portier's own users and ACL.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { UiConfig } from './section.js'
import type { AuthConfig } from '../auth/section.js'
import type { AuthSetup } from '../auth/index.js'
import type { Logger } from '../observe/log.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { createApi, type UiClient } from './api.js'
import { createCsrf } from './csrf.js'
import { createImageReader } from './images.js'
import { createRegistryClient, type RoutedAnswer } from './registry-client.js'
import { createSessions, loadSessionSecret } from './session.js'
import { loadStaticFiles, setSecurityHeaders } from './static.js'
import type { StatusSource } from './status.js'

export { createStatusSource, type StatusSource, type StatusInputs } from './status.js'
export type { UiClient } from './api.js'

export interface UiDeps {
  config: UiConfig
  authMode: AuthConfig['mode']
  auth: Pick<AuthSetup, 'acl' | 'verifyLogin' | 'accountActive' | 'issueServiceToken'>
  /** The router's answer to the UI's own requests: routed and forwarded as a client's would be. */
  registry: RoutedAnswer
  status: StatusSource
  log: Logger
  /** The built front end; dist/ui/static by default. */
  staticDir?: string
}

export interface Ui {
  /** Whether this request is the UI's: a path under /ui, or a browser asking for `/`. */
  owns(req: IncomingMessage): boolean
  handle(req: IncomingMessage, res: ServerResponse, client: UiClient): Promise<void>
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
  const api = createApi({
    sessions: createSessions(secret, config.session_ttl),
    csrf: createCsrf(secret),
    acl: deps.auth.acl,
    registry,
    images: createImageReader(registry),
    status: deps.status,
    authMode: deps.authMode,
    adminUsers: config.admin_users,
    ...(deps.auth.verifyLogin ? { verifyLogin: deps.auth.verifyLogin } : {}),
    ...(deps.auth.accountActive ? { accountActive: deps.auth.accountActive } : {}),
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
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return sendRegistryError(res, new RegistryError('UNSUPPORTED', { method: req.method }, { Allow: 'GET, HEAD' }))
      }
      if (!files.available) return sendRegistryError(res, new RegistryError('UNAVAILABLE', { reason: 'the web UI was not built; run "npm run build"' }))
      if (files.serve(req, res, rest)) return
      sendRegistryError(res, new RegistryError('NOT_FOUND', { path }))
    },
  }
}
