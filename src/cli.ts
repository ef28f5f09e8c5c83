#!/usr/bin/env node
// Command line: parses arguments and calls the modules; nothing else lives here.
import { readFileSync } from 'node:fs'
import { ConfigError, loadConfig, formatProblem, type LoadedConfig } from './config/index.js'
// The server, logger and their dependencies load only for `serve`: check-config and --help stay quick.

const help = `portier — an HTTPS gateway for Docker/OCI registries

Usage:
  portier serve [--config FILE]          run the gateway
  portier check-config [--config FILE]   validate the configuration and exit (0 = valid)
  portier passwd add|remove|list [--file FILE] [USER]
                                         manage an htpasswd file (bcrypt, cost 10); the password
                                         is read from the terminal, or the first line of stdin
  portier token-key [--out DIR]          make the token signing key and its certificate (the
                                         rootcertbundle registry:2 needs to verify Portier's tokens)
  portier --help | --version

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -f, --file FILE     for passwd: the htpasswd file (default: auth.htpasswd.path of the config)
  -o, --out DIR       for token-key: where token.key and token.crt go (default: certs/token)

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

async function serve(args: Args): Promise<number> {
  const { config, sources } = load(args)
  // Signals are taken over before anything starts: a SIGTERM during start-up (the embedded registry
  // takes a moment) must still stop what was started, never kill the process and orphan the registry.
  let stopSignal: NodeJS.Signals | undefined
  let onStop: ((signal: NodeJS.Signals) => void) | undefined
  const signalled = (signal: NodeJS.Signals): void => {
    if (stopSignal) {
      process.stderr.write(`portier: second ${signal}: exiting now\n`)
      process.exit(1)
    }
    stopSignal = signal
    onStop?.(signal)
  }
  process.on('SIGTERM', signalled)
  process.on('SIGINT', signalled)

  const [{ createLogger }, { startPortier }, { RegistryBinaryMissing }] = await Promise.all([
    import('./observe/log.js'),
    import('./server/index.js'),
    import('./embedded/registry.js'),
  ])
  const log = createLogger(config.log.level, config.log.format)
  log.info({ sources: sources.length > 0 ? sources : ['defaults'] }, 'configuration loaded')
  let running
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
    process.stderr.write(
      `portier: serving ${running.url} with a self-signed certificate\n` +
        `  SHA-256 fingerprint: ${running.selfSigned.fingerprint}\n` +
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
  log.info('stopped')
  log.flush()
  return 0
}

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
        const { passwdCommand } = await import('./auth/passwd.js')
        try {
          process.stdout.write(await passwdCommand(action, file, user))
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
          const key = generateTokenKey(args.out ?? 'certs/token', { commonName: issuer })
          process.stdout.write(
            `wrote ${key.keyPath} (${key.alg}, mode 0600) and ${key.certPath}\n` +
              `key id (kid): ${key.kid}\n` +
              `certificate valid until ${key.expires.toISOString()}\n\n` +
              `Portier:     auth: { mode: token, token: { key: ${key.keyPath}, cert: ${key.certPath} } }\n` +
              `registry:2:  auth: { token: { realm: https://<portier>/auth/token, service: portier-registry, issuer: ${issuer}, rootcertbundle: ${key.certPath} } }\n`,
          )
        } catch (error) {
          if (!(error instanceof TokenKeyError)) throw error
          process.stderr.write(`portier: ${error.message}\n`)
          return 1
        }
        return 0
      }
      case 'check-config': {
        const { sources } = load(args)
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
