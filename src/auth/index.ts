// Public surface of auth: builds, from the auth config, the authenticator, the ACL and (token mode) the token server.
import { existsSync, readFileSync, renameSync } from 'node:fs'
import { dirname } from 'node:path'
import type { AuthConfig } from './section.js'
import type { Logger } from '../observe/log.js'
import { anonymous, createBasicAuthenticator, passwordChecksBusy, verifyThrottled, type Authenticator } from './basic.js'
import { hashKind, verifyPassword } from './hashes.js'
import { createPasswordPool, type PasswordPool } from './password-pool.js'
import { createBearerAuthenticator } from './bearer.js'
import { createWithGeneratedAdmin, HtpasswdStore } from './htpasswd.js'
import { createAcl, type Acl } from './acl.js'
import { unreadable } from '../config/files.js'
import { createThrottle, type Throttle } from './throttle.js'
import type { Scope } from '../registry/classify.js'
import {
  createIssuer,
  createTokenEndpoint,
  createVerifier,
  generateTokenKey,
  loadTokenKey,
  type Issuer,
  type TokenEndpoint,
  type TokenKey,
  type Verifier,
} from './token/index.js'

export type { Authenticator, AuthContext, Identity } from './basic.js'
export type { Acl, Caller } from './acl.js'
export type { TokenEndpoint } from './token/index.js'

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
  /**
   * A token for Portier's own calls (the web UI's) to an upstream that verifies Portier's tokens
   * (forward_authorization); built-in token mode only. Callers check the ACL first.
   */
  issueServiceToken?: (subject: string, access: Scope[]) => Promise<{ token: string; expiresIn: number }>
  close(): void
}

/** What auth reports for metrics (Metrics implements it). */
export interface AuthObserver {
  /** A stored password hash was compared with a password (bcrypt, or a weak hash), the decoy of unknown users included. */
  passwordVerified(): void
  /** A password check was refused because too many were waiting for a worker (answered 503). */
  passwordCheckRefused(): void
}

export async function createAuthenticator(config: AuthConfig, log: Logger, observer?: AuthObserver): Promise<AuthSetup> {
  const acl = createAcl(config)
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
  log.info({ workers: pool.size, queue: config.password_checks.queue }, 'password checks run in worker threads')
  const throttle = createThrottle(config.throttle)
  const setup: AuthSetup = {
    authenticator: createBasicAuthenticator(store, config.htpasswd.realm, throttle),
    acl,
    verifyLogin: async (user, password, clientIp) => {
      const outcome = await verifyThrottled(store, throttle, user, password, clientIp)
      if (outcome === 'busy') throw passwordChecksBusy()
      return outcome
    },
    accountActive: (user) => store.userNames.includes(user),
    close: () => {
      store.close()
      // Terminating a worker can fail (it is already gone); shutdown goes on either way.
      pool.close().catch((error: unknown) => log.warn({ err: error instanceof Error ? error.message : String(error) }, 'password check workers did not stop cleanly'))
    },
  }
  if (generatedAdmin) setup.generatedAdmin = generatedAdmin
  if (config.mode === 'token') {
    const built = await builtInTokenServer(config, store, throttle, acl, log)
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
function signingKey(token: AuthConfig['token'], log: Logger): TokenKey {
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
  throttle: Throttle,
  acl: Acl,
  log: Logger,
): Promise<{ authenticator: Authenticator; endpoint: TokenEndpoint; issuer: Issuer }> {
  const { token } = config
  const key = signingKey(token, log)
  const ttlSeconds = Math.max(60, Math.round(token.ttl / 1000))
  const issuer = createIssuer({ key, issuer: token.issuer, service: token.service, ttlSeconds, includeX5c: token.include_x5c && key.chain.length > 0, keyId: token.key_id })
  // This server never issues a token valid for longer than its ttl: a longer one was not made here as configured.
  const verifier = await createVerifier({ issuer: token.issuer, audience: token.service, keys: [key.publicKey], maxTtlSeconds: ttlSeconds })
  const endpoint = createTokenEndpoint({
    issuer,
    service: token.service,
    realm: config.htpasswd.realm,
    allowAnonymous: token.anonymous,
    // A locked-out login is refused like a wrong password (the token server answers 401 either way).
    authenticate: async (user, password, clientIp) => {
      const outcome = await verifyThrottled(store, throttle, user, password, clientIp)
      return outcome === 'busy' ? 'busy' : outcome === true
    },
    credentialOf: (user) => store.hashOf(user),
    grant: (who, scopes, ip) => scopes.map((scope) => ({ ...scope, actions: acl.granted(who, scope, ip) })).filter((scope) => scope.actions.length > 0),
    accountActive: (user) => store.userNames.includes(user),
    onIssued: (event) => log.info({ token: event }, 'token issued'),
    onError: (error) => log.error({ err: error instanceof Error ? error.message : String(error) }, 'token endpoint failed'),
  })
  log.info({ kid: key.kid, thumbprint: key.thumbprint, alg: key.alg, issuer: token.issuer, service: token.service }, 'token server ready at /auth/token')
  return {
    authenticator: createBearerAuthenticator({ verifier, service: token.service, realm: token.realm }),
    endpoint,
    issuer,
  }
}

async function externalVerifier(token: AuthConfig['token'], log: Logger): Promise<Verifier> {
  const { external } = token
  if (!external.issuer || !token.realm || (!external.rootcertbundle && !external.jwks)) {
    throw new Error('auth.token.external: needs issuer, auth.token.realm (the token server URL) and rootcertbundle or jwks')
  }
  const keys = external.jwks ? (JSON.parse(readFileSync(external.jwks, 'utf8')) as Parameters<typeof createVerifier>[0]['keys']) : readFileSync(external.rootcertbundle, 'utf8')
  log.info({ issuer: external.issuer, realm: token.realm }, 'verifying tokens from an external issuer')
  return createVerifier({
    issuer: external.issuer,
    audience: token.service,
    keys,
    clockSkewSeconds: Math.round(external.clock_skew / 1000),
    maxTtlSeconds: Math.max(60, Math.round(external.max_ttl / 1000)),
  })
}
