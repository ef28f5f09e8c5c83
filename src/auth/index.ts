// Public surface of auth: builds, from the auth config, the authenticator, the ACL and (token mode) the token server.
import { existsSync, readFileSync, renameSync } from 'node:fs'
import { dirname } from 'node:path'
import type { AuthConfig } from './section.js'
import type { Logger } from '../observe/log.js'
import { anonymous, createBasicAuthenticator, directoryUnavailable, htpasswdLogin, passwordChecksBusy, type Authenticator, type Login } from './basic.js'
import { createLdapLogins, type LdapLogins } from './ldap/index.js'
import type { ReadinessCheck } from '../observe/admin.js'
import { hashKind, verifyPassword } from './hashes.js'
import { createPasswordPool, threadPoolSize, type PasswordPool } from './password-pool.js'
import { createBearerAuthenticator } from './bearer.js'
import { createWithGeneratedAdmin, HtpasswdStore } from './htpasswd.js'
import { createAcl, type Acl, type GrantSet } from './acl.js'
import { createLocalUsers, type LocalUsers } from './users.js'
import { unreadable } from '../config/files.js'
import { createThrottle } from './throttle.js'
import type { Counters } from '../shared/index.js'
import type { Scope } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { createTokenLogin, isTokenPassword, withAccessTokens, type AccessTokens, type TokenLogin } from './access-tokens/index.js'
// Token mode's modules (jose, node-forge) are imported where token mode starts, so other modes never load them.
import type { Issuer, TokenEndpoint, TokenKey, Verifier, VerifierOptions } from './token/index.js'

type TokenModules = typeof import('./token/index.js')

export type { Authenticator, AuthContext, Identity } from './basic.js'
export type { Acl, Caller, Explanation, GrantSet, GrantAction } from './acl.js'
export { describeRule, grantActions } from './acl.js'
export type { LocalUsers, Writability } from './users.js'
export { checkUserName } from './users.js'
export { AccessGrants, GrantError, checkGrant, type StoredGrant, type StoredGroup } from './grants/index.js'
export type { TokenEndpoint, TokenRequestEnded } from './token/index.js'

export interface GeneratedAdmin {
  user: string
  password: string
  file: string
}

export interface AuthSetup {
  authenticator: Authenticator
  acl: Acl
  tokenEndpoint?: TokenEndpoint
  generatedAdmin?: GeneratedAdmin
  /**
   * A password check under the login throttle, for logins outside the registry API (the web UI):
   * true, false, or 'locked'. Absent when there are no local users (auth.mode none, external issuer).
   */
  verifyLogin?: (user: string, password: string, clientIp: string) => Promise<boolean | 'locked'>
  /** Whether a local user still exists (a web UI session ends when its user is removed). */
  accountActive?: (user: string) => boolean
  /** The groups a credential source last vouched for (directory users), for callers known by name only (web UI, admin API). */
  groupsOf?: (user: string) => readonly string[] | undefined
  /**
   * A token for Portier's own calls (the web UI's) to an upstream that verifies Portier's tokens
   * (forward_authorization); built-in token mode only. Callers check the ACL first.
   */
  issueServiceToken?: (subject: string, access: Scope[]) => Promise<{ token: string; expiresIn: number }>
  /** What /readyz reports of auth's own dependencies (the LDAP directory). */
  readiness?: () => ReadinessCheck[]
  /** The htpasswd file's users, managed from the web UI; absent without a file (auth.mode none, external issuer). */
  localUsers?: LocalUsers
  close(): void
}

/** What auth reports for metrics (Metrics implements it). */
export interface AuthObserver {
  /** A stored password hash was compared with a password (bcrypt, or a weak hash), the decoy of unknown users included. */
  passwordVerified(): void
  /** A password check was refused because too many were waiting for a worker (answered 503). */
  passwordCheckRefused(): void
}

/** Credentials from other sources, built by the composition root. */
export interface AuthSources {
  /** Access tokens (personal and robot) taken as the password of Basic logins and at the token endpoint. */
  accessTokens?: AccessTokens
  /** Groups and grants made in the web UI (the store): the ACL adds them to auth.acl. */
  grants?: () => GrantSet
}

/** `sharedCounters` (shared.redis): the login throttle counts failures across every gateway instance. */
export async function createAuthenticator(config: AuthConfig, log: Logger, observer?: AuthObserver, sources: AuthSources = {}, sharedCounters?: Counters): Promise<AuthSetup> {
  const acl = createAcl(config, sources.grants ? { grants: sources.grants } : {})
  if (config.mode === 'none') {
    log.warn('auth.mode is none: anyone who can reach Portier can push, pull and delete')
    return { authenticator: anonymous, acl, close: () => undefined }
  }
  if (config.mode === 'token' && config.token.external.enabled) {
    return { authenticator: createBearerAuthenticator({ verifier: await externalVerifier(config.token, log), service: config.token.service, realm: config.token.realm }), acl, close: () => undefined }
  }

  const pool = createPasswordPool(config.password_checks)
  let store: HtpasswdStore
  let generatedAdmin: GeneratedAdmin | undefined
  try {
    ;({ store, generatedAdmin } = await openHtpasswd(config, log, pool, observer))
  } catch (error) {
    await pool.close()
    throw error
  }
  if (config.password_checks.workers > pool.size) {
    log.warn(
      { configured: config.password_checks.workers, workers: pool.size },
      'auth.password_checks.workers is more than half of Node\'s thread pool, which also reads and writes files: fewer checks run at once (raise UV_THREADPOOL_SIZE for more)',
    )
  }
  const threads = threadPoolSize()
  if (threads < 2) log.warn({ threads }, 'UV_THREADPOOL_SIZE leaves Node\'s thread pool one thread: password checks and file reads and writes take turns on it')
  log.info({ workers: pool.size, queue: config.password_checks.queue }, 'password checks run on Node\'s thread pool')
  const throttle = createThrottle(config.throttle, sharedCounters ? { shared: sharedCounters } : {})
  let ldap: LdapLogins | undefined
  try {
    ldap = config.ldap.enabled ? createLdapLogins(config.ldap, { store, throttle, log }) : undefined
  } catch (error) {
    store.close()
    await pool.close()
    throw error
  }
  const login = ldap?.login ?? htpasswdLogin(store, throttle)
  const tokenLogin = sources.accessTokens ? createTokenLogin(sources.accessTokens, throttle) : undefined
  const basic = createBasicAuthenticator(login, config.htpasswd.realm, throttle)
  const setup: AuthSetup = {
    authenticator: tokenLogin ? withAccessTokens(basic, tokenLogin, throttle) : basic,
    acl,
    verifyLogin: async (user, password, clientIp) => {
      const outcome = await login(user, password, clientIp)
      if (outcome === 'busy') throw passwordChecksBusy()
      if (outcome === 'unavailable') throw directoryUnavailable()
      return outcome === 'locked' ? outcome : outcome !== false
    },
    accountActive: (user) => store.userNames.includes(user) || ldap?.accountActive(user) === true,
    close: () => {
      ldap?.close()
      store.close()
      // Checks still running or waiting are refused; shutdown goes on either way.
      pool.close().catch((error: unknown) => log.warn({ err: error instanceof Error ? error.message : String(error) }, 'password checks did not stop cleanly'))
    },
  }
  if (generatedAdmin) setup.generatedAdmin = generatedAdmin
  setup.localUsers = createLocalUsers(store)
  if (ldap) {
    const directory = ldap
    setup.readiness = () => [directory.readiness()]
    // A name in the htpasswd file is the file's user (htpasswd_first) and has no directory groups.
    setup.groupsOf = (user) => (config.ldap.order === 'htpasswd_first' && store.hashOf(user) !== undefined ? undefined : directory.groupsOf(user))
  }
  if (config.mode === 'token') {
    const accessTokens = sources.accessTokens
    const built = await builtInTokenServer(config, store, login, ldap, acl, log, tokenLogin, accessTokens ? (id) => accessTokens.isLive(id) : undefined)
    setup.authenticator = built.authenticator
    setup.tokenEndpoint = built.endpoint
    setup.issueServiceToken = async (subject, access) => {
      const issued = await built.issuer.issue({ subject, access })
      return { token: issued.token, expiresIn: issued.expiresIn }
    }
  }
  return setup
}

async function openHtpasswd(config: AuthConfig, log: Logger, pool: PasswordPool, observer?: AuthObserver): Promise<{ store: HtpasswdStore; generatedAdmin?: GeneratedAdmin }> {
  const { path, generate_admin: generateAdmin } = config.htpasswd
  let generatedAdmin: GeneratedAdmin | undefined
  if (!existsSync(path)) {
    if (!generateAdmin) {
      throw new Error(
        `auth.htpasswd.path: ${path} does not exist; create it with "portier passwd add --file ${path} USER" ` +
          'or set auth.htpasswd.generate_admin: true',
      )
    }
    generatedAdmin = { user: 'admin', password: await createWithGeneratedAdmin(path, 'admin'), file: path }
    log.warn({ file: path, user: 'admin' }, 'created the htpasswd file with a generated admin password (printed once on stderr)')
  }
  const store = new HtpasswdStore(path, config.cache_ttl, {
    onLoad: (parsed, file) => {
      for (const problem of parsed.problems) log.warn({ file, line: problem.line }, `htpasswd: ${problem.reason}; line skipped`)
      if (parsed.weak.length > 0) {
        log.warn({ file, users: parsed.weak.map((w) => `${w.user} (${w.kind})`) }, 'htpasswd: weak password hashes; re-set these users with bcrypt (portier passwd add)')
      }
      log.info({ file, users: parsed.users.size }, 'htpasswd loaded')
    },
    // A permission problem names the owner, mode, Portier's uid and the fix, as check-config does.
    onError: (error, file) => log.error({ file, err: unreadable(file, error, `chmod 0644 ${file}`) }, 'htpasswd reload failed; keeping the users loaded before'),
    onHold: (parsed, file, kept, settleMs) =>
      log.warn(
        { file, users: parsed.users.size, problems: parsed.problems.length, kept },
        `htpasswd changed to a file with ${parsed.users.size === 0 ? 'no users' : 'unreadable lines'}; keeping the users loaded before unless it stays so for ${settleMs} ms`,
      ),
  }, (password, hash) => {
    observer?.passwordVerified()
    // bcrypt costs tens of milliseconds of CPU: never on the thread that serves requests.
    return hashKind(hash) === 'bcrypt' ? pool.compare(password, hash) : verifyPassword(password, hash)
  }, () => {
    if (pool.hasRoom()) return true
    observer?.passwordCheckRefused()
    return false
  })
  store.watch()
  return generatedAdmin ? { store, generatedAdmin } : { store }
}

/** The signing key: loaded, or generated with its certificate (registry:2's rootcertbundle) on first start. */
function signingKey(token: AuthConfig['token'], log: Logger, { generateTokenKey, loadTokenKey }: TokenModules): TokenKey {
  if (!existsSync(token.key)) {
    const generated = generateTokenKey(dirname(token.key), { commonName: token.issuer })
    if (generated.keyPath !== token.key) renameSync(generated.keyPath, token.key)
    if (generated.certPath !== token.cert) renameSync(generated.certPath, token.cert)
    log.warn(
      { key: token.key, cert: token.cert, jwks: generated.jwksPath, kid: generated.kid, thumbprint: generated.thumbprint },
      // Word for word as before (tests match it); the fields name token.jwks and the thumbprint too.
      'generated the token signing key; give the certificate to registries that verify tokens (rootcertbundle)',
    )
  }
  return loadTokenKey(token.key, existsSync(token.cert) ? token.cert : undefined)
}

async function builtInTokenServer(
  config: AuthConfig,
  store: HtpasswdStore,
  login: Login,
  ldap: LdapLogins | undefined,
  acl: Acl,
  log: Logger,
  tokenLogin: TokenLogin | undefined,
  accessTokenLive: ((id: string) => Promise<boolean>) | undefined,
): Promise<{ authenticator: Authenticator; endpoint: TokenEndpoint; issuer: Issuer }> {
  const { token } = config
  const tokens = await import('./token/index.js')
  const { createIssuer, createTokenEndpoint, createVerifier } = tokens
  const key = signingKey(token, log, tokens)
  const ttlSeconds = Math.max(60, Math.round(token.ttl / 1000))
  const issuer = createIssuer({ key, issuer: token.issuer, service: token.service, ttlSeconds, includeX5c: token.include_x5c && key.chain.length > 0, keyId: token.key_id })
  // This server never issues a token valid for longer than its ttl: a longer one was not made here as configured.
  const verifier = await createVerifier({ issuer: token.issuer, audience: token.service, keys: [key.publicKey], maxTtlSeconds: ttlSeconds })
  /** The file's credential of a name the file decides (htpasswd_first, or no directory). */
  const localFirst = (user: string): string | undefined => (!ldap || config.ldap.order === 'htpasswd_first' ? store.hashOf(user) : undefined)
  const endpoint = createTokenEndpoint({
    issuer,
    service: token.service,
    realm: config.htpasswd.realm,
    allowAnonymous: token.anonymous,
    // A locked-out login is refused like a wrong password (the token server answers 401 either way).
    authenticate: async (user, password, clientIp) => {
      if (tokenLogin && isTokenPassword(password)) {
        // An access token: the token's JWT carries at most its scopes (the grant below goes through the ACL with its limit).
        let outcome
        try {
          outcome = await tokenLogin(user, password, clientIp)
        } catch (error) {
          // The store could not be read: a 503 with Retry-After, as for a directory that does not answer.
          if (error instanceof RegistryError && error.code === 'UNAVAILABLE') return 'unavailable'
          throw error
        }
        if (outcome === false || outcome === 'locked') return false
        const { identity, tokenId } = outcome
        return {
          user: identity.user, anonymous: false, accessToken: tokenId,
          ...(identity.limit ? { limit: identity.limit } : {}), ...(identity.robot ? { robot: true } : {}), ...(identity.groups ? { groups: identity.groups } : {}),
        }
      }
      const outcome = await login(user, password, clientIp)
      if (outcome === 'busy' || outcome === 'unavailable') return outcome
      if (outcome === false || outcome === 'locked') return false
      return outcome.groups ? { user, anonymous: false, groups: outcome.groups } : true
    },
    // A directory user's refresh token is bound to its entry (see LdapLogins.credentialOf).
    credentialOf: (user) => localFirst(user) ?? ldap?.credentialOf(user) ?? store.hashOf(user),
    grant: (who, scopes, ip) => scopes.map((scope) => ({ ...scope, actions: acl.granted(who, scope, ip) })).filter((scope) => scope.actions.length > 0),
    accountActive: async (user) => {
      if (store.userNames.includes(user)) return true
      if (!ldap) return false
      const account = await ldap.account(user)
      return account === 'unavailable' ? account : account.active
    },
    // A directory user's refresh carries the groups the directory gives now (the file's users have none of their own).
    ...(ldap ? { groupsOf: async (user: string) => (store.hashOf(user) !== undefined ? undefined : await directoryGroups(ldap as LdapLogins, user)) } : {}),
    onIssued: (event) => log.info({ token: event }, 'token issued'),
    onError: (error) => log.error({ err: error instanceof Error ? error.message : String(error) }, 'token endpoint failed'),
  })
  log.info({ kid: key.kid, thumbprint: key.thumbprint, alg: key.alg, issuer: token.issuer, service: token.service }, 'token server ready at /auth/token')
  return {
    authenticator: createBearerAuthenticator({ verifier, service: token.service, realm: token.realm, ...(accessTokenLive ? { accessTokenLive } : {}) }),
    endpoint,
    issuer,
  }
}

async function externalVerifier(token: AuthConfig['token'], log: Logger): Promise<Verifier> {
  const { external } = token
  if (!external.issuer || !token.realm || (!external.rootcertbundle && !external.jwks)) {
    throw new Error('auth.token.external: needs issuer, auth.token.realm (the token server URL) and rootcertbundle or jwks')
  }
  const keys = external.jwks ? (JSON.parse(readFileSync(external.jwks, 'utf8')) as VerifierOptions['keys']) : readFileSync(external.rootcertbundle, 'utf8')
  log.info({ issuer: external.issuer, realm: token.realm }, 'verifying tokens from an external issuer')
  const { createVerifier } = await import('./token/index.js')
  return createVerifier({
    issuer: external.issuer,
    audience: token.service,
    keys,
    clockSkewSeconds: Math.round(external.clock_skew / 1000),
    maxTtlSeconds: Math.max(60, Math.round(external.max_ttl / 1000)),
  })
}

async function directoryGroups(ldap: LdapLogins, user: string): Promise<readonly string[] | undefined> {
  const account = await ldap.account(user)
  return account === 'unavailable' ? undefined : account.groups
}
