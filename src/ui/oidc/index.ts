// Single sign-on to the web UI: the sign-in start, the provider's callback (state, PKCE, ID token checked by openid-client), groups into the session, sign-out at the provider.
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import * as client from 'openid-client'
import { readSecretFile } from '../../config/files.js'
import type { Logger } from '../../observe/log.js'
import { RegistryError, sendRegistryError } from '../../registry/errors.js'
import type { UiAuditHook, UiClient } from '../api.js'
import { cookieValue, type Session, type Sessions } from '../session.js'
import type { SsoOffer } from '../types.js'
import { claimValue, identityOf } from './claims.js'
import { createFlows, FLOW_COOKIE } from './flow.js'
import { createProvider, describeError, unreachable, type Provider } from './provider.js'
import { OIDC_LOGIN_PATH, type OidcConfig } from './section.js'

export { oidcSection, oidcProblems, OIDC_LOGIN_PATH, type OidcConfig } from './section.js'
export { oidcFileProblems } from './files.js'

/** How long a sign-in may take at the provider (login form, consent) before its callback is refused. */
const FLOW_TTL_MS = 10 * 60_000

/** Why a single sign-on came back to the login page; the page words each (`/ui/?sso_error=CODE`). */
export type SsoError = 'unavailable' | 'expired' | 'state' | 'denied' | 'refused' | 'claims'

export interface SsoDeps {
  config: OidcConfig
  /** The UI's session key: the in-flight sign-in cookie is encrypted with a key derived from it. */
  secret: Buffer
  sessions: Sessions
  /** Group names auth.groups declares: the only ones an ACL rule can name, so the only ones kept. */
  declaredGroups: readonly string[]
  log: Logger
  audit?: UiAuditHook
}

export interface Sso {
  /** Whether `path` is the sign-in start or the callback. */
  owns(path: string): boolean
  handle(req: IncomingMessage, res: ServerResponse, path: string, client: UiClient): Promise<void>
  /** What the login page shows: the button, or why single sign-on is unavailable. */
  offer(): SsoOffer
  /** Whether the password form stays (ui.oidc.allow_password_login). */
  readonly allowPasswordLogin: boolean
  /** Where to send the browser after Portier's session ended, to end the provider's too; undefined when the provider has no end_session_endpoint. */
  endSessionUrl(session: Session, client: UiClient): string | undefined
  /** For /readyz: single sign-on never makes the gateway unready (registry clients do not need it), but the detail says when it is down. */
  readiness(): { name: string; ready: boolean; detail: string }
  close(): Promise<void>
}

function redirect(res: ServerResponse, location: string, cookies: string[] = []): void {
  res.writeHead(302, { Location: location, 'Content-Length': '0', 'Cache-Control': 'no-store', ...(cookies.length > 0 ? { 'Set-Cookie': cookies } : {}) })
  res.end()
}

function readClientSecret(path: string): string {
  try {
    return readSecretFile(path)
  } catch (error) {
    throw new Error(`ui.oidc.client_secret_file: ${(error as Error).message}; expected the client secret`)
  }
}

export function createSso(deps: SsoDeps): Sso {
  const { config, log, sessions } = deps
  const provider: Provider = createProvider({
    issuer: config.issuer,
    clientId: config.client_id,
    clientSecret: config.client_secret_file ? readClientSecret(config.client_secret_file) : undefined,
    ca: config.ca_file ? readFileSync(config.ca_file, 'utf8') : undefined,
    timeoutMs: config.timeout,
  })
  const flows = createFlows(deps.secret, FLOW_TTL_MS)
  const declared = new Set(deps.declaredGroups)
  const scope = config.scopes.join(' ')
  let retry: NodeJS.Timeout | undefined
  let closed = false

  const scheduleRetry = (): void => {
    if (closed || retry) return
    retry = setTimeout(() => {
      retry = undefined
      // tryDiscover never rejects: it logs and schedules the next try itself.
      tryDiscover('retry').catch(() => undefined)
    }, config.retry_interval)
    retry.unref()
  }

  /** Discovers, logging a change of state; never throws. */
  const tryDiscover = async (why: 'start' | 'retry'): Promise<client.Configuration | undefined> => {
    const before = provider.status().state
    try {
      const found = await provider.discover()
      if (before !== 'ready') {
        const metadata = found.serverMetadata()
        log.info({ issuer: metadata.issuer, end_session: metadata.end_session_endpoint !== undefined }, 'single sign-on ready')
      }
      return found
    } catch (error) {
      if (before !== 'unavailable' || why === 'start') log.warn({ issuer: config.issuer, err: describeError(error) }, `single sign-on unavailable: ${describeError(error)}`)
      scheduleRetry()
      return undefined
    }
  }
  tryDiscover('start').catch(() => undefined)

  const failed = (res: ServerResponse, code: SsoError): void => redirect(res, `/ui/?sso_error=${code}`, [flows.clearCookie])

  async function start(res: ServerResponse, ui: UiClient): Promise<void> {
    const configuration = await tryDiscover('retry')
    if (!configuration) return failed(res, 'unavailable')
    const state = client.randomState()
    const nonce = client.randomNonce()
    const codeVerifier = client.randomPKCECodeVerifier()
    const redirectUri = `${ui.publicOrigin}${config.redirect_path}`
    const { setCookie } = flows.start({ state, nonce, codeVerifier, redirectUri })
    const url = client.buildAuthorizationUrl(configuration, {
      redirect_uri: redirectUri,
      scope,
      state,
      nonce,
      code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
      code_challenge_method: 'S256',
    })
    redirect(res, url.href, [setCookie])
  }

  async function callback(req: IncomingMessage, res: ServerResponse, ui: UiClient): Promise<void> {
    const params = new URL(req.url ?? '/', 'https://callback.invalid').searchParams
    const refuse = (code: SsoError, reason: string, user?: string): void => {
      log.warn({ client: ui.clientIp, reason, user }, `ui single sign-on refused: ${reason}`)
      deps.audit?.({ action: 'login.ui', outcome: `sso_${code}`, user, client: ui.clientIp, userAgent: req.headers['user-agent'] })
      failed(res, code)
    }
    const verdict = flows.finish(cookieValue(req.headers.cookie, FLOW_COOKIE), params.get('state'))
    if (!verdict.ok) {
      if (verdict.reason === 'state') return refuse('state', 'the state the provider sent back is not the one of the sign-in this browser started')
      if (verdict.reason === 'replayed') return refuse('state', 'this sign-in was already used (a replayed callback)')
      return refuse('expired', verdict.reason === 'expired' ? 'the sign-in took longer than 10 minutes' : 'no sign-in in progress in this browser (no or unreadable flow cookie)')
    }
    const { flow } = verdict
    const error = params.get('error')
    if (error !== null) return refuse('denied', `the provider answered ${error}${params.get('error_description') ? `: ${params.get('error_description')}` : ''}`)
    const configuration = provider.current() ?? (await tryDiscover('retry'))
    if (!configuration) return failed(res, 'unavailable')
    const currentUrl = new URL(flow.redirectUri)
    for (const [name, value] of params) currentUrl.searchParams.append(name, value)

    let claims: Record<string, unknown>
    try {
      const tokens = await client.authorizationCodeGrant(configuration, currentUrl, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedNonce: flow.nonce,
        expectedState: flow.state,
        idTokenExpected: true,
      })
      claims = { ...(tokens.claims() ?? {}) }
      // Providers that follow the spec strictly (oidc-provider among them) put scope claims in userinfo, not the ID token.
      const lacking = [config.username_claim, config.groups_claim].some((name) => name !== '' && claimValue(claims, name) === undefined)
      if (lacking && configuration.serverMetadata().userinfo_endpoint && typeof claims.sub === 'string') {
        const userinfo = await client.fetchUserInfo(configuration, tokens.access_token, claims.sub)
        claims = { ...userinfo, ...claims }
      }
    } catch (problem) {
      const down = unreachable(problem)
      if (down) {
        provider.markUnavailable(down)
        log.warn({ client: ui.clientIp, err: down }, `single sign-on unavailable: ${down}`)
        scheduleRetry()
        return failed(res, 'unavailable')
      }
      return refuse('refused', `the provider's answer failed validation: ${describeError(problem)}`)
    }
    const identity = identityOf(claims, { usernameClaim: config.username_claim, groupsClaim: config.groups_claim, declared })
    if (!identity.ok) return refuse('claims', identity.problem)
    const { setCookie } = sessions.issue(identity.user, undefined, { via: 'oidc', groups: identity.groups })
    log.info({ user: identity.user, groups: identity.groups, ignored_groups: identity.ignoredGroups || undefined, client: ui.clientIp, via: 'oidc' }, 'ui sign-in')
    deps.audit?.({ action: 'login.ui', outcome: 'success', user: identity.user, client: ui.clientIp, userAgent: req.headers['user-agent'] })
    redirect(res, '/ui/', [setCookie, flows.clearCookie])
  }

  return {
    allowPasswordLogin: config.allow_password_login,
    owns: (path) => path === OIDC_LOGIN_PATH || path === config.redirect_path,
    async handle(req, res, path, ui) {
      // GET only: each of the two has effects (a new flow, a used one), which a HEAD should not have.
      if (req.method !== 'GET') return sendRegistryError(res, new RegistryError('UNSUPPORTED', { method: req.method }, { Allow: 'GET' }))
      try {
        if (path === OIDC_LOGIN_PATH) await start(res, ui)
        else await callback(req, res, ui)
      } catch (error) {
        // Whatever went wrong, the browser goes back to the login page with a message, never to a dead end.
        log.error({ path, err: describeError(error) }, 'ui single sign-on failed')
        if (!res.headersSent) failed(res, 'refused')
        else res.destroy()
      }
    },
    offer() {
      const status = provider.status()
      const offer: SsoOffer = { label: config.label, loginUrl: OIDC_LOGIN_PATH, available: status.state !== 'unavailable' }
      if (status.state === 'unavailable') offer.reason = status.reason
      return offer
    },
    endSessionUrl(session, ui) {
      if (session.via !== 'oidc') return undefined
      const configuration = provider.current()
      if (!configuration?.serverMetadata().end_session_endpoint || provider.status().state === 'unavailable') return undefined
      return client.buildEndSessionUrl(configuration, { post_logout_redirect_uri: `${ui.publicOrigin}/ui/` }).href
    },
    readiness() {
      const status = provider.status()
      const detail =
        status.state === 'unavailable'
          ? `single sign-on unavailable: ${status.reason}`
          : status.state === 'ready'
            ? `single sign-on ready (${config.issuer})`
            : `single sign-on starting (${config.issuer})`
      return { name: 'sso', ready: true, detail }
    },
    async close() {
      closed = true
      if (retry) clearTimeout(retry)
      await provider.close()
    },
  }
}
