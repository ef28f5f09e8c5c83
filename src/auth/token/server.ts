// The token endpoint (distribution token spec): GET with Basic credentials or anonymously, POST as an OAuth2 form (password, refresh_token).
import type { IncomingMessage, ServerResponse } from 'node:http'
import { parseBasic, shownLoginName } from '../basic.js'
import { TokenError } from './errors.js'
import type { Issuer } from './issuer.js'
import { TokenRefusal, tokenErrorBody } from './refusal.js'
import { formatScope, intersectScopes, parseScopes, type Scope } from './scope.js'
import { readCapped } from '../../lib/body.js'

export interface Requester {
  /** The account name, '' when anonymous. */
  user: string
  anonymous: boolean
  /** Groups the credential's source vouches for (a directory's), for the ACL. */
  groups?: readonly string[]
  /** An access token's scopes: grants at most these (see Caller.limit); no refresh token is issued for it. */
  limit?: readonly Scope[]
  /** A robot account's access token (see Caller.robot). */
  robot?: boolean
  /** The access token's id (tok_…): named in the JWT so it is refused once the access token is revoked. */
  accessToken?: string
}

export interface TokenEvent {
  grantType: 'get' | 'password' | 'refresh_token'
  who: Requester
  requested: Scope[]
  granted: Scope[]
  clientIp: string
  refreshTokenIssued: boolean
}

export interface TokenEndpointOptions {
  issuer: Issuer
  /**
   * Whether the password is right for the user (clientIp lets the caller throttle failed logins); 'busy'
   * when too many password checks wait, 'unavailable' when the user directory cannot be reached (both
   * answered 503 with Retry-After). A Requester: who the credentials stand for, with the groups a
   * directory vouches for or the limits of an access token.
   */
  authenticate(user: string, password: string, clientIp: string): Promise<boolean | 'busy' | 'unavailable' | Requester>
  /**
   * What the ACL allows of the requested scopes. The result is intersected with the request, so it
   * may be the granted subset or everything the caller may do on those names.
   */
  grant(who: Requester, scopes: Scope[], clientIp: string): Scope[] | Promise<Scope[]>
  /** Tokens without credentials (for what `grant` allows anonymous callers). */
  allowAnonymous: boolean
  /** The service this endpoint issues tokens for; requests naming another are refused. Default: the issuer's. */
  service?: string
  /** Realm of the Basic challenge on bad or missing credentials, default "Portier token". */
  realm?: string
  /**
   * The account's current credential (its stored password hash): refresh tokens are bound to it and
   * refused once it changes. Without it refresh tokens are bound to nothing but the account name.
   */
  credentialOf?: (user: string) => string | undefined
  /** Whether a refresh token's account still exists; refresh fails once it returns false ('unavailable': 503). */
  accountActive?(user: string): boolean | 'unavailable' | Promise<boolean | 'unavailable'>
  /** The groups a refresh token's account has now (a directory's users), for the ACL. */
  groupsOf?(user: string): Promise<readonly string[] | undefined>
  /** Called once per token issued; carries no secret. */
  onIssued?(event: TokenEvent): void
  /** Called with unexpected errors (the client gets a 500). */
  onError?(error: unknown): void
  /** Largest POST body read, default 16 KiB. */
  maxBodyBytes?: number
}

/** Answers a token request; says who asked and with which credential, as far as it knows (the audit trail names them). */
export type TokenEndpoint = (req: IncomingMessage, res: ServerResponse, clientIp: string) => Promise<TokenRequestEnded>

export interface TokenRequestEnded {
  /** The account a token was issued to. */
  user?: string
  /** The account name a password grant's form gave, right or wrong (a GET's Basic header names it to the caller itself); never the password. */
  loginName?: string
  /** The access token's id (tok_…) a token was issued on. */
  accessToken?: string
  /** The id (`jti`) of the refresh token a refresh grant was given. */
  refreshToken?: string
}

/** What a token issued to `who` tells the caller. */
function issuedTo(ended: TokenRequestEnded, who: Requester): void {
  if (!who.anonymous) ended.user = who.user
  if (who.accessToken !== undefined) ended.accessToken = who.accessToken
}

const jsonHeaders = {
  'Content-Type': 'application/json',
  // RFC 6749 §5.1: token responses are never cached.
  'Cache-Control': 'no-store',
  Pragma: 'no-cache',
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { ...jsonHeaders, ...headers, 'Content-Length': String(Buffer.byteLength(text)) })
  res.end(text)
}

function sendRefusal(res: ServerResponse, refusal: TokenRefusal): void {
  send(res, refusal.status, tokenErrorBody(refusal), refusal.headers)
}

async function readForm(req: IncomingMessage, limit: number): Promise<URLSearchParams> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/x-www-form-urlencoded') throw new TokenRefusal('TOKEN_REQUEST_INVALID', 'POST needs an application/x-www-form-urlencoded body')
  const tooLarge = (): TokenRefusal => new TokenRefusal('TOKEN_BODY_TOO_LARGE', 'request body too large', { Connection: 'close' })
  // The rest is discarded rather than the request destroyed: the client reads the 413 before the close.
  const body = await readCapped(req, { maxBytes: limit, tooLarge, rest: 'discard' })
  return new URLSearchParams(body.toString('utf8'))
}

export function createTokenEndpoint(options: TokenEndpointOptions): TokenEndpoint {
  const { issuer } = options
  const service = options.service ?? issuer.service
  const realm = (options.realm ?? 'Portier token').replace(/[\\"]/g, "'")
  const maxBodyBytes = options.maxBodyBytes ?? 16 * 1024
  const basicChallenge = { 'WWW-Authenticate': `Basic realm="${realm}"` }
  const directoryDown = (): TokenRefusal => new TokenRefusal('TOKEN_UNAVAILABLE', 'the user directory (LDAP) cannot be reached; try again shortly', { 'Retry-After': '5' })
  const badCredentials = (): TokenRefusal => new TokenRefusal('TOKEN_CREDENTIALS_INVALID', 'incorrect username or password', basicChallenge)

  function checkService(params: URLSearchParams): void {
    const asked = params.get('service')
    // Absent is taken as this service; naming another one would mint a token the caller did not mean.
    if (asked !== null && asked !== service) throw new TokenRefusal('TOKEN_REQUEST_INVALID', `this token server issues tokens for service "${service}" only`)
  }

  async function login(user: string, password: string, clientIp: string): Promise<Requester> {
    if (user === '') throw badCredentials()
    const verdict = await options.authenticate(user, password, clientIp)
    if (verdict === 'busy') throw new TokenRefusal('TOKEN_UNAVAILABLE', 'too many logins at once; try again shortly', { 'Retry-After': '1' })
    if (verdict === 'unavailable') throw directoryDown()
    if (!verdict) throw badCredentials()
    return typeof verdict === 'object' ? verdict : { user, anonymous: false }
  }

  const refreshTokenFor = (user: string): Promise<string> => issuer.issueRefresh(user, options.credentialOf?.(user))

  async function tokenFor(grantType: TokenEvent['grantType'], who: Requester, requested: Scope[], clientIp: string, refreshToken: string | undefined) {
    const granted = intersectScopes(requested, await options.grant(who, requested, clientIp))
    const issued = await issuer.issue({ subject: who.user, access: granted, ...(who.accessToken !== undefined ? { accessToken: who.accessToken } : {}) })
    options.onIssued?.({ grantType, who, requested, granted, clientIp, refreshTokenIssued: refreshToken !== undefined })
    const body: Record<string, string | number> = {
      token: issued.token,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      issued_at: issued.issuedAt,
    }
    if (refreshToken !== undefined) body.refresh_token = refreshToken
    return { body, granted }
  }

  async function handleGet(req: IncomingMessage, res: ServerResponse, clientIp: string, ended: TokenRequestEnded): Promise<void> {
    const params = new URL(req.url ?? '/', 'http://token.invalid').searchParams
    checkService(params)
    const requested = parseScopes(params.getAll('scope'))
    const authorization = req.headers.authorization
    let who: Requester
    if (authorization === undefined) {
      if (!options.allowAnonymous) throw new TokenRefusal('TOKEN_CREDENTIALS_INVALID', 'authentication required', basicChallenge)
      who = { user: '', anonymous: true }
    } else {
      const credentials = parseBasic(authorization)
      if (!credentials) throw badCredentials()
      if (credentials.user === '' && credentials.password === '' && options.allowAnonymous) {
        // `Basic Og==` (":"): some client libraries send empty credentials when they have none.
        who = { user: '', anonymous: true }
      } else {
        who = await login(credentials.user, credentials.password, clientIp)
        const account = params.get('account')
        if (account !== null && account !== '' && account !== who.user) throw new TokenRefusal('TOKEN_REQUEST_INVALID', 'account does not match the credentials')
      }
    }
    // A refresh token would outlive the access token's limits and revocation: none for those.
    const offline = params.get('offline_token') === 'true' && !who.anonymous && who.limit === undefined
    const refreshToken = offline ? await refreshTokenFor(who.user) : undefined
    const { body } = await tokenFor('get', who, requested, clientIp, refreshToken)
    send(res, 200, body)
    issuedTo(ended, who)
  }

  async function handlePost(req: IncomingMessage, res: ServerResponse, clientIp: string, ended: TokenRequestEnded): Promise<void> {
    const form = await readForm(req, maxBodyBytes)
    checkService(form)
    const requested = parseScopes(form.getAll('scope'))
    const offline = form.get('access_type') === 'offline'
    const grantType = form.get('grant_type')
    let who: Requester
    let refreshToken: string | undefined
    if (grantType === 'password') {
      const user = form.get('username')
      const password = form.get('password')
      if (user !== null && user !== '') ended.loginName = shownLoginName(user)
      if (user === null || password === null) throw new TokenRefusal('TOKEN_REQUEST_INVALID', 'grant_type=password needs username and password')
      who = await login(user, password, clientIp)
      if (offline && who.limit === undefined) refreshToken = await refreshTokenFor(who.user)
    } else if (grantType === 'refresh_token') {
      const given = form.get('refresh_token')
      if (given === null || given === '') throw new TokenRefusal('TOKEN_REQUEST_INVALID', 'grant_type=refresh_token needs refresh_token')
      let subject: string
      try {
        const verified = await issuer.verifyRefresh(given, options.credentialOf)
        subject = verified.subject
        ended.loginName = shownLoginName(subject)
        if (verified.id !== undefined) ended.refreshToken = verified.id
      } catch (error) {
        if (error instanceof TokenError) throw new TokenRefusal('TOKEN_GRANT_INVALID', error.message, {}, { cause: error })
        throw error
      }
      const active = options.accountActive ? await options.accountActive(subject) : true
      if (active === 'unavailable') throw directoryDown()
      if (!active) throw new TokenRefusal('TOKEN_GRANT_INVALID', 'the account of this refresh token no longer exists')
      const groups = await options.groupsOf?.(subject)
      who = groups ? { user: subject, anonymous: false, groups } : { user: subject, anonymous: false }
      // The spec: a refresh grant hands back the same refresh token, never a new one.
      if (offline) refreshToken = given
    } else {
      throw new TokenRefusal(grantType === null ? 'TOKEN_REQUEST_INVALID' : 'TOKEN_GRANT_TYPE_UNSUPPORTED', 'grant_type must be password or refresh_token')
    }
    const { body, granted } = await tokenFor(grantType, who, requested, clientIp, refreshToken)
    body.scope = granted.map(formatScope).join(' ')
    send(res, 200, body)
    issuedTo(ended, who)
  }

  return async (req, res, clientIp) => {
    // Filled in as the request is read: a refusal still says whom it refused (never a password).
    const ended: TokenRequestEnded = {}
    try {
      if (req.method === 'GET') await handleGet(req, res, clientIp, ended)
      else if (req.method === 'POST') await handlePost(req, res, clientIp, ended)
      else throw new TokenRefusal('TOKEN_METHOD_NOT_ALLOWED', 'use GET or POST', { Allow: 'GET, POST' })
      return ended
    } catch (error) {
      delete ended.user
      delete ended.accessToken
      if (res.headersSent) {
        res.destroy()
        return ended
      }
      if (error instanceof TokenRefusal) {
        sendRefusal(res, error)
        return ended
      }
      options.onError?.(error)
      sendRefusal(res, new TokenRefusal('TOKEN_INTERNAL', 'the token server failed', {}, { cause: error }))
      return ended
    }
  }
}
