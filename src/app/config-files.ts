// Checks the files a configuration names the way `serve` loads them: present (or generated), readable by this process, and fitting together.
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { creatable, read } from '../config/files.js'
import type { ConfigProblem } from '../config/index.js'
import { MIN_SECRET_LENGTH } from '../config/secret.js'
import type { Config } from './config.js'
import { signsUploadUrls } from '../routing/strategies.js'
import { eventFileProblems } from '../events/files.js'
import { storeProblem } from '../store/open.js'
import { gcFileProblems } from '../housekeeping/gc-files.js'
import { oidcFileProblems } from '../ui/oidc/files.js'
import { ldapFileProblems } from '../auth/ldap/index.js'

/** Instances on Redis that take uploads into storage seal the running hashes they ask each other for with a key derived from routing.secret. */
function signsRunningHashes(config: Config): boolean {
  if (config.shared.redis.url === '') return false
  return config.upstreams.length === 0 ? config.embedded_registry.storage_uploads : config.upstreams.some((upstream) => upstream.storage_uploads === true)
}

/** Every problem with the files `config` names; `source` labels them (the config file). */
export async function fileProblems(config: Config, source: string): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = []
  const problem = (key: string, expected: string, found: string): void => {
    problems.push({ source, key, expected, found })
  }

  if (config.tls.enabled) {
    config.tls.certificates.forEach((pair, index) => {
      const at = `tls.certificates[${index}]`
      const certFile = read(pair.cert)
      const keyFile = read(pair.key)
      let cert: X509Certificate | undefined
      let key: KeyObject | undefined
      if (certFile.problem) problem(`${at}.cert`, 'a readable PEM certificate', certFile.problem)
      else {
        try {
          cert = new X509Certificate(certFile.data as Buffer)
        } catch (error) {
          problem(`${at}.cert`, 'a readable PEM certificate', `${JSON.stringify(pair.cert)}: not a certificate (${(error as Error).message})`)
        }
      }
      if (keyFile.problem) problem(`${at}.key`, `the private key of ${at}.cert (PEM)`, keyFile.problem)
      else {
        try {
          key = createPrivateKey(keyFile.data as Buffer)
        } catch (error) {
          problem(`${at}.key`, `the private key of ${at}.cert (PEM)`, `${JSON.stringify(pair.key)}: not a private key (${(error as Error).message})`)
        }
      }
      if (cert && key && !cert.checkPrivateKey(key)) {
        problem(`${at}.key`, `the private key of ${at}.cert (${pair.cert})`, `${JSON.stringify(pair.key)}: a key that does not match the certificate`)
      }
    })
    if (config.tls.certificates.length === 0 && !config.tls.acme.enabled) {
      // The generated certificate is reused when it can be read, else made again (which needs a writable directory).
      for (const name of ['cert.pem', 'key.pem']) {
        const file = join(config.tls.self_signed.dir, name)
        const found = existsSync(file) ? read(file).problem : creatable(file)
        if (found) {
          // One line for the directory: the key's problem is the certificate's.
          problem('tls.self_signed.dir', 'a directory where Portier can read, or write, the generated certificate and key', found)
          break
        }
      }
    }
    if (config.tls.acme.enabled && config.tls.acme.ca_bundle) {
      const found = read(config.tls.acme.ca_bundle)
      if (found.problem) problem('tls.acme.ca_bundle', 'a readable PEM file of CA certificates', found.problem)
    }
  }

  const auth = config.auth
  const localUsers = auth.mode === 'htpasswd' || (auth.mode === 'token' && !auth.token.external.enabled)
  if (localUsers) {
    const path = auth.htpasswd.path
    // existsSync says "no" for a file in a directory closed to us: read, and tell the two apart.
    const found = read(path, `chmod 0644 ${path}, or write it with "portier passwd add --mode 0644"`)
    if (!found.missing) {
      if (found.problem) problem('auth.htpasswd.path', 'an htpasswd file Portier can read', found.problem)
    } else if (!auth.htpasswd.generate_admin) {
      problem(
        'auth.htpasswd.path',
        `an htpasswd file (create it with "portier passwd add --file ${path} USER", or set auth.htpasswd.generate_admin: true)`,
        `${JSON.stringify(path)}: no such file`,
      )
    } else {
      const found = creatable(path)
      if (found) problem('auth.htpasswd.path', 'a path where Portier can create the htpasswd file (auth.htpasswd.generate_admin)', found)
    }
  }
  if (auth.mode === 'token' && !auth.token.external.enabled) {
    const { key, cert } = auth.token
    if (existsSync(key)) {
      const keyFile = read(key)
      if (keyFile.problem) problem('auth.token.key', 'a readable token signing key (PEM)', keyFile.problem)
      else {
        const certFile = existsSync(cert) ? read(cert) : {}
        if (certFile.problem) problem('auth.token.cert', 'the readable certificate of auth.token.key (PEM)', certFile.problem)
        else {
          try {
            // Loaded only here: the token module pulls in node-forge, which costs check-config most of a second.
            const { loadTokenKey } = await import('../auth/token/keys.js')
            loadTokenKey(key, existsSync(cert) ? cert : undefined)
          } catch (error) {
            problem('auth.token.key', 'a token signing key (RSA ≥ 2048 bits or EC P-256) and, in auth.token.cert, its certificate', (error as Error).message)
          }
        }
      }
    } else {
      const found = creatable(key)
      if (found) problem('auth.token.key', 'a path where Portier can generate the token signing key', found)
    }
  }
  if (auth.mode === 'token' && auth.token.external.enabled) {
    const { rootcertbundle, jwks } = auth.token.external
    if (jwks) {
      const found = read(jwks)
      if (found.problem) problem('auth.token.external.jwks', 'a readable JWKS (JSON) file', found.problem)
      else {
        try {
          JSON.parse((found.data as Buffer).toString('utf8'))
        } catch (error) {
          problem('auth.token.external.jwks', 'a readable JWKS (JSON) file', `${JSON.stringify(jwks)}: not JSON (${(error as Error).message})`)
        }
      }
    } else if (rootcertbundle) {
      const found = read(rootcertbundle)
      if (found.problem) problem('auth.token.external.rootcertbundle', 'a readable PEM bundle of the issuer certificates or public keys', found.problem)
      else if (!(found.data as Buffer).toString('utf8').includes('-----BEGIN ')) {
        problem('auth.token.external.rootcertbundle', 'a readable PEM bundle of the issuer certificates or public keys', `${JSON.stringify(rootcertbundle)}: a file without PEM blocks`)
      }
    }
  }
  if (localUsers) for (const found of ldapFileProblems(auth.ldap)) problem(found.key, found.expected, found.found)
  const storeFound = storeProblem(config.store)
  if (storeFound) problem(storeFound.key, storeFound.expected, storeFound.found)
  if (config.admin.htpasswd) {
    const found = read(config.admin.htpasswd, `chmod 0644 ${config.admin.htpasswd}`)
    if (found.problem) problem('admin.htpasswd', 'an htpasswd file Portier can read (the users allowed to read /metrics)', found.problem)
  }

  // Readability is checked with the other upstream keys (routing-config.ts); here, that the pair fits.
  config.upstreams.forEach((upstream, index) => {
    if (!upstream.client_cert || !upstream.client_key) return
    const certFile = read(upstream.client_cert)
    const keyFile = read(upstream.client_key)
    if (certFile.problem || keyFile.problem) return
    try {
      if (!new X509Certificate(certFile.data as Buffer).checkPrivateKey(createPrivateKey(keyFile.data as Buffer))) {
        problem(`upstreams[${index}].client_key`, `the private key of upstreams[${index}].client_cert (${upstream.client_cert})`, `${JSON.stringify(upstream.client_key)}: a key that does not match the certificate`)
      }
    } catch (error) {
      problem(`upstreams[${index}].client_cert`, 'a PEM client certificate and its private key', (error as Error).message)
    }
  })

  const secretFiles: Array<[string, string, boolean]> = [
    ['ui.session_secret_file', config.ui.session_secret_file, config.ui.enabled && config.ui.session_secret === ''],
    ['routing.secret_file', config.routing.secret_file, (signsUploadUrls(config.routing.strategy) || signsRunningHashes(config)) && config.routing.secret === ''],
  ]
  for (const [key, path, used] of secretFiles) {
    if (!used) continue
    if (existsSync(path)) {
      const found = read(path)
      if (found.problem) problem(key, 'a readable file holding a random key', found.problem)
      else {
        const length = (found.data as Buffer).toString('utf8').trim().length
        if (length < MIN_SECRET_LENGTH) problem(key, `a random key of at least ${MIN_SECRET_LENGTH} characters (delete the file to have one generated)`, `${JSON.stringify(path)}: ${length} characters`)
      }
    } else {
      const found = creatable(path)
      if (found) problem(key, 'a path where Portier can create its random key', found)
    }
  }
  for (const found of eventFileProblems(config.events)) problem(found.key, found.expected, found.found)
  for (const found of gcFileProblems(config.gc, config.upstreams.length === 0)) problem(found.key, found.expected, found.found)
  if (config.ui.enabled) for (const found of oidcFileProblems(config.ui.oidc)) problem(found.key, found.expected, found.found)
  return problems
}
