// Public surface of auth: builds the authenticator the pipeline calls, from the auth config.
import { existsSync } from 'node:fs'
import type { Config } from '../config/index.js'
import type { Logger } from '../observe/log.js'
import { anonymous, createBasicAuthenticator, type Authenticator } from './basic.js'
import { createWithGeneratedAdmin, HtpasswdStore } from './htpasswd.js'
import { createAcl, type Acl } from './acl.js'
import { createThrottle } from './throttle.js'

export type { Authenticator, Identity } from './basic.js'
export type { Acl, Caller } from './acl.js'

export interface GeneratedAdmin {
  user: string
  password: string
  file: string
}

export interface AuthSetup {
  authenticator: Authenticator
  acl: Acl
  generatedAdmin?: GeneratedAdmin
  close(): void
}

export async function createAuthenticator(config: Config['auth'], log: Logger): Promise<AuthSetup> {
  if (config.mode === 'none') {
    log.warn('auth.mode is none: anyone who can reach Portier can push, pull and delete')
    return { authenticator: anonymous, acl: createAcl(config), close: () => undefined }
  }
  const { path, realm, generate_admin: generateAdmin } = config.htpasswd
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
    onError: (error, file) => log.error({ file, err: error.message }, 'htpasswd reload failed; keeping the users loaded before'),
  })
  store.watch()
  const setup: AuthSetup = {
    authenticator: createBasicAuthenticator(store, realm, createThrottle(config.throttle)),
    acl: createAcl(config),
    close: () => store.close(),
  }
  if (generatedAdmin) setup.generatedAdmin = generatedAdmin
  return setup
}
