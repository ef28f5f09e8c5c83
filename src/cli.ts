#!/usr/bin/env node
// Command line: parses arguments and calls the modules; nothing else lives here.
import { readFileSync } from 'node:fs'
import { ConfigError, formatProblem } from './config/index.js'
import { loadConfig, type LoadedConfig } from './app/config.js'
// The server, logger and their dependencies load only for `serve`: check-config and --help stay quick.

const help = `portier — an HTTPS gateway for Docker/OCI registries

Usage:
  portier serve [--config FILE]          run the gateway
  portier check-config [--config FILE]   validate the configuration and exit (0 = valid)
  portier passwd add|remove|list [--file FILE] [--mode MODE] [USER]
                                         manage an htpasswd file (bcrypt, cost 10); the password
                                         is read from the terminal, or the first line of stdin
  portier healthcheck [--config FILE]    exit 0 when the running gateway answers (the admin
                                         listener's /healthz, else /v2/ on server.listen)
  portier token-key [--out DIR]          make the token signing key, its certificate (the
                                         rootcertbundle a registry verifies Portier's tokens with)
                                         and token.jwks (registry 3.x); keeps an existing key
  portier --help | --version

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -f, --file FILE     for passwd: the htpasswd file (default: auth.htpasswd.path of the config)
  -m, --mode MODE     for passwd: the file's permissions, e.g. 0644 when the gateway runs as
                      another user (a container); default: an existing file keeps its mode, a
                      new one is 0600
  -o, --out DIR       for token-key: where token.key, token.crt and token.jwks go (default: certs/token)

Configuration:
  Every key has a default; see config/portier.yaml for all of them. Any key can be set from the
  environment as PORTIER_ + its path upper-cased and joined by "_", for example
  PORTIER_SERVER_LISTEN=0.0.0.0:443 or PORTIER_LIMITS_BLOB_MAX_BYTES=10GiB. Lists take YAML/JSON:
  PORTIER_UPSTREAMS='[{url: "http://registry:5000"}]'.

With no upstreams configured, portier starts a local registry (docker-registry) itself, storing
data in data/registry, and with no certificates configured it generates a self-signed one in
certs/self-signed (its SHA-256 fingerprint is logged). With auth.mode htpasswd (the default) and
no htpasswd file yet, it creates auth/htpasswd with user "admin" and prints the password once.
`

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

interface Args {
  command: string
  config?: string
  file?: string
  out?: string
  mode?: string
  /** Positional arguments after the command (passwd ACTION USER). */
  rest: string[]
}

function parseArgs(argv: string[]): Args {
  const args: Args = { command: '', rest: [] }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-h' || arg === '--help') args.command = 'help'
    else if (arg === '-v' || arg === '--version') args.command = 'version'
    else if (arg === '-c' || arg === '--config') {
      const value = argv[++i]
      if (!value) throw new UsageError(`${arg} needs a file`)
      args.config = value
    } else if (arg.startsWith('--config=')) args.config = arg.slice('--config='.length)
    else if (arg === '-f' || arg === '--file') {
      const value = argv[++i]
      if (!value) throw new UsageError(`${arg} needs a file`)
      args.file = value
    } else if (arg.startsWith('--file=')) args.file = arg.slice('--file='.length)
    else if (arg === '-o' || arg === '--out') {
      const value = argv[++i]
      if (!value) throw new UsageError(`${arg} needs a directory`)
      args.out = value
    } else if (arg.startsWith('--out=')) args.out = arg.slice('--out='.length)
    else if (arg === '-m' || arg === '--mode') {
      const value = argv[++i]
      if (!value) throw new UsageError(`${arg} needs permissions like 0644`)
      args.mode = value
    } else if (arg.startsWith('--mode=')) args.mode = arg.slice('--mode='.length)
    else if (arg.startsWith('-')) throw new UsageError(`unknown option ${arg}`)
    else if (!args.command) args.command = arg
    else if (args.command === 'passwd' && args.rest.length < 2) args.rest.push(arg)
    else throw new UsageError(`unexpected argument ${arg}`)
  }
  if (!args.config && process.env.PORTIER_CONFIG) args.config = process.env.PORTIER_CONFIG
  return args
}

class UsageError extends Error {}

function load(args: Args): LoadedConfig {
  return loadConfig(args.config ? { file: args.config } : {})
}

function printConfigErrors(error: ConfigError): void {
  process.stderr.write(`portier: the configuration has ${error.problems.length} problem${error.problems.length === 1 ? '' : 's'}:\n`)
  for (const problem of error.problems) process.stderr.write(`  ${formatProblem(problem)}\n`)
}

/** Throws a ConfigError naming each file serve could not load (missing, unreadable, a key that does not match). */
async function checkFiles(config: LoadedConfig['config'], args: Args): Promise<void> {
  const { fileProblems } = await import('./app/config-files.js')
  const problems = await fileProblems(config, args.config ?? 'defaults')
  if (problems.length > 0) throw new ConfigError(problems)
}

async function serve(args: Args): Promise<number> {
  const { config, sources } = load(args)
  await checkFiles(config, args)
  // Signals are taken over before anything starts: a SIGTERM during start-up (the embedded registry
  // takes a moment) must still stop what was started, never kill the process and orphan the registry.
  let stopSignal: NodeJS.Signals | 'internal_error' | undefined
  let onStop: ((signal: NodeJS.Signals | 'internal_error') => void) | undefined
  let exitCode = 0
  const signalled = (signal: NodeJS.Signals | 'internal_error'): void => {
    if (stopSignal) {
      process.stderr.write(`portier: second ${signal}: exiting now\n`)
      process.exit(1)
    }
    stopSignal = signal
    onStop?.(signal)
  }
  process.on('SIGTERM', signalled)
  process.on('SIGINT', signalled)

  const [{ createLogger }, { startPortier }, { RegistryBinaryMissing }, { reportInternalError }] = await Promise.all([
    import('./observe/log.js'),
    import('./app/index.js'),
    import('./embedded/registry.js'),
    import('./observe/internal-errors.js'),
  ])
  const log = createLogger(config.log.level, config.log.format)
  log.info({ sources: sources.length > 0 ? sources : ['defaults'] }, 'configuration loaded')
  let running: Awaited<ReturnType<typeof startPortier>> | undefined
  // Last resort: an error nothing handled leaves the process in a state nobody knows. It is logged (with
  // the request it belonged to) and counted, then the gateway drains like on SIGTERM and exits with
  // EXIT_INTERNAL_ERROR, so its supervisor restarts it; it never keeps serving and never dies silently.
  const lastResort = (kind: 'uncaught_exception' | 'unhandled_rejection') => (error: unknown): void => {
    reportInternalError(log, running?.observability.metrics, kind, error)
    log.flush()
    if (exitCode === EXIT_INTERNAL_ERROR) return
    exitCode = EXIT_INTERNAL_ERROR
    process.stderr.write(`portier: internal error (${kind}): ${error instanceof Error ? error.message : String(error)}; draining, then exiting with ${EXIT_INTERNAL_ERROR}\n`)
    // Draining is bounded by server.drain_timeout; should it hang anyway, the process still ends.
    setTimeout(() => process.exit(EXIT_INTERNAL_ERROR), config.server.drain_timeout + 5000).unref()
    if (!stopSignal) signalled('internal_error')
  }
  process.on('uncaughtException', lastResort('uncaught_exception'))
  process.on('unhandledRejection', lastResort('unhandled_rejection'))
  try {
    running = await startPortier(config, log)
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    log.fatal({ err: message }, 'start-up failed')
    log.flush()
    process.stderr.write(`portier: start-up failed: ${message}\n`)
    return error instanceof RegistryBinaryMissing ? 3 : 1
  }
  if (running.selfSigned) {
    const { replaced, names } = running.selfSigned
    process.stderr.write(
      `portier: serving ${running.url} with a self-signed certificate\n` +
        `  SHA-256 fingerprint: ${running.selfSigned.fingerprint}\n` +
        (replaced
          ? `  the fingerprint CHANGED: was ${replaced.fingerprint} (replaced because ${replaced.reason});\n` +
            `    clients that trusted the old certificate refuse this one until they trust the new one\n`
          : '') +
        `  names:               ${names.join(', ')} (clients using another name: add it to tls.self_signed.hosts)\n` +
        `  trust it (docker):   sudo mkdir -p /etc/docker/certs.d/localhost:${running.address.port} && sudo cp ${running.selfSigned.certPath} /etc/docker/certs.d/localhost:${running.address.port}/ca.crt\n`,
    )
  } else {
    process.stderr.write(`portier: serving ${running.url}\n`)
  }
  if (running.acme) {
    const acme = running.acme.status()
    const now = acme.serving === 'acme' ? `the stored certificate, valid until ${acme.notAfter?.toISOString()}` : 'a self-signed certificate until the first one is issued'
    process.stderr.write(`  certificates: ACME (${acme.challenge}) from ${acme.directoryUrl} for ${acme.domains.join(', ')}; serving ${now}\n`)
  }
  if (running.embedded) process.stderr.write(`  upstream: embedded registry ${running.embedded.url} (${running.embedded.binary})\n`)
  if (config.ui.enabled) process.stderr.write(`  web UI:   ${running.url}/ui/ (sign in with the registry's users)\n`)
  if (running.generatedAdmin) {
    const { user, password, file } = running.generatedAdmin
    // Shown once, on the terminal only: never in the JSON log.
    process.stderr.write(
      `  created ${file} with generated credentials (shown only now, keep them):\n` +
        `    user: ${user}  password: ${password}\n` +
        `  log in:  docker login localhost:${running.address.port} -u ${user}\n`,
    )
  }

  const started = running
  await new Promise<void>((resolve) => {
    onStop = (signal) => {
      log.info({ signal }, 'shutting down: draining in-flight requests')
      void started.close().then(resolve, resolve)
    }
    if (stopSignal) onStop(stopSignal)
  })
  log.info(exitCode === 0 ? 'stopped' : `stopped after an internal error; exit code ${exitCode}`)
  log.flush()
  return exitCode
}

/** EX_SOFTWARE: the gateway stopped itself after an error it did not expect (see the README). */
const EXIT_INTERNAL_ERROR = 70

async function main(argv: string[]): Promise<number> {
  let args: Args
  try {
    args = parseArgs(argv)
  } catch (error) {
    process.stderr.write(`portier: ${(error as Error).message}\n\n${help}`)
    return 64
  }
  try {
    switch (args.command) {
      case 'help':
        process.stdout.write(help)
        return 0
      case 'version':
        process.stdout.write(`${version()}\n`)
        return 0
      case 'serve':
        return await serve(args)
      case 'passwd': {
        const [action, user] = args.rest
        if (!action) throw new UsageError('passwd needs add, remove or list')
        const file = args.file ?? load(args).config.auth.htpasswd.path
        const { passwdCommand, parseMode } = await import('./auth/passwd.js')
        try {
          process.stdout.write(await passwdCommand(action, file, user, args.mode !== undefined ? { mode: parseMode(args.mode) } : {}))
        } catch (error) {
          process.stderr.write(`portier: ${(error as Error).message}\n`)
          return 1
        }
        return 0
      }
      case 'token-key': {
        const { generateTokenKey, TokenKeyError } = await import('./auth/token/index.js')
        const issuer = args.config ? load(args).config.auth.token.issuer : 'portier'
        try {
          // An existing key is kept (registries already trust it); only its token.jwks is (re)written.
          const key = generateTokenKey(args.out ?? 'certs/token', { commonName: issuer, keepExisting: true })
          const realm = `realm: https://<portier>/auth/token, service: portier-registry, issuer: ${issuer}`
          process.stdout.write(
            (key.kept ? `kept the existing ${key.keyPath} (${key.alg}); wrote ${key.jwksPath}\n` : `wrote ${key.keyPath} (${key.alg}, mode 0600), ${key.certPath} and ${key.jwksPath}\n`) +
              `key id (kid): ${key.kid} (libtrust, registry 2.x); RFC 7638 thumbprint: ${key.thumbprint} (registry 3.x)\n` +
              (key.expires ? `certificate valid until ${key.expires.toISOString()}\n\n` : `no certificate (${key.certPath}): registries can only use ${key.jwksPath}\n\n`) +
              `Portier:       auth: { mode: token, token: { key: ${key.keyPath}, cert: ${key.certPath} } }\n` +
              `registry 2.8:  auth: { token: { ${realm}, rootcertbundle: ${key.certPath} } }\n` +
              `registry 3.x:  the same (Portier's tokens carry x5c), or jwks: ${key.jwksPath} with Portier's auth.token.include_x5c: false and key_id: thumbprint\n`,
          )
        } catch (error) {
          if (!(error instanceof TokenKeyError)) throw error
          process.stderr.write(`portier: ${error.message}\n`)
          return 1
        }
        return 0
      }
      case 'healthcheck': {
        const { healthProbe, runProbe } = await import('./app/healthcheck.js')
        const result = await runProbe(healthProbe(load(args).config), 4000)
        process.stdout.write(`${result.ok ? 'healthy' : 'unhealthy'}: ${result.detail}\n`)
        return result.ok ? 0 : 1
      }
      case 'check-config': {
        const { config, sources } = load(args)
        // What serve loads: certificates and their keys, htpasswd files, token keys, secret files.
        await checkFiles(config, args)
        process.stdout.write(`configuration is valid (${sources.length > 0 ? sources.join(', ') : 'defaults only'})\n`)
        return 0
      }
      case '':
        process.stdout.write(help)
        return 64
      default:
        process.stderr.write(`portier: unknown command ${args.command}\n\n${help}`)
        return 64
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      printConfigErrors(error)
      return 2
    }
    if (error instanceof UsageError) {
      process.stderr.write(`portier: ${error.message}\n\n${help}`)
      return 64
    }
    throw error
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    process.stderr.write(`portier: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exitCode = 1
  },
)
