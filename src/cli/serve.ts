// `portier serve`: loads the configuration, starts the gateway, prints the banner, and drains on SIGTERM/SIGINT or an internal error.
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { loadChecked } from './load.js'
// The server, the logger and their dependencies load only here: check-config and --help stay quick.

export const usage = `Usage: portier serve [--config FILE]

Runs the gateway. SIGTERM/SIGINT stop accepting connections, let in-flight requests finish for up
to server.drain_timeout, stop the embedded registry, and exit 0 (a second signal exits at once).
Exit codes: 2 = the configuration or a file it names is invalid, 3 = no registry binary for the
embedded registry, 1 = another start-up failure, 70 = stopped after an internal error.

With no upstreams configured, portier starts a local registry (docker-registry) itself, storing
data in data/registry, and with no certificates configured it generates a self-signed one in
certs/self-signed (its SHA-256 fingerprint is logged). With auth.mode htpasswd (the default) and
no htpasswd file yet, it creates auth/htpasswd with user "admin" and prints the password once.

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -h, --help          this text
`

/** EX_SOFTWARE: the gateway stopped itself after an error it did not expect (see the README). */
const EXIT_INTERNAL_ERROR = 70

export async function serve(args: string[]): Promise<number> {
  const { values } = parseCommand('serve', args, { config: configOption, help: helpOption }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const file = configPath(values.config)
  const { config, sources } = await loadChecked(file)
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
    import('../observe/log.js'),
    import('../app/index.js'),
    import('../embedded/registry.js'),
    import('../observe/internal-errors.js'),
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
      // close() runs once however often it is asked; a step that failed is logged, the others still ran.
      started.close().then(resolve, (error: unknown) => {
        log.error({ err: error instanceof Error ? error.message : String(error) }, 'a shutdown step failed')
        resolve()
      })
    }
    if (stopSignal) onStop(stopSignal)
  })
  log.info(exitCode === 0 ? 'stopped' : `stopped after an internal error; exit code ${exitCode}`)
  log.flush()
  return exitCode
}
