// `portier serve`: loads the configuration, starts the gateway, prints the banner, and drains on SIGTERM/SIGINT or an internal error.
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { loadChecked } from './load.js'
import type { Config } from '../app/config.js'
import type { RunningPortier } from '../app/index.js'
// The server, the logger and their dependencies load only here: check-config and --help stay quick.

export const usage = `Usage: portier serve [--config FILE]

Runs the gateway. SIGTERM/SIGINT stop accepting connections, let in-flight requests finish for up
to server.drain_timeout, stop the embedded registry, and exit 0 (a second signal exits at once).
Exit codes: 2 = the configuration or a file it names is invalid, 3 = no registry binary for the
embedded registry, 1 = another start-up failure, 70 = stopped after an internal error.

With server.workers > 1 this process is the primary: it starts the embedded registry, forks the
workers (which share the listeners), restarts one that dies, and on SIGTERM/SIGINT drains them all.

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
  const loaded = await loadChecked(file)
  const { sources } = loaded
  // server.workers > 1: this process is the primary (it forks the workers), or one of the workers it forked
  // (the primary sets PORTIER_WORKER). With 1, nothing of the cluster is loaded.
  const worker = process.env.PORTIER_WORKER === undefined ? undefined : await import('../app/worker.js')
  const role = worker?.workerRole()
  if (!role && loaded.config.server.workers > 1) return primary(loaded.config, sources)
  const config = role && worker ? worker.workerConfig(loaded.config, role) : loaded.config
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
  const log = createLogger(config.log.level, config.log.format, role ? { worker: role.index } : {})
  if (!role) log.info({ sources: sources.length > 0 ? sources : ['defaults'] }, 'configuration loaded')
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
    running = await startPortier(config, log, role && worker ? worker.workerParts(config, role) : {})
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    log.fatal({ err: message }, 'start-up failed')
    log.flush()
    process.stderr.write(`portier: start-up failed: ${message}\n`)
    return error instanceof RegistryBinaryMissing ? 3 : 1
  }
  if (!role || role.banner) banner(running, config)
  const started = running
  if (role && worker) {
    // The primary says stop (its SIGTERM), or is gone: drain like on a signal (once).
    worker.onPrimaryStop(() => {
      if (!stopSignal) signalled('SIGTERM')
    })
    worker.announceReady(started.url, started.address.port)
  }
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
  worker?.leavePrimary()
  return exitCode
}

/** The primary of server.workers: forks and supervises the workers (src/app/workers.ts). */
async function primary(config: Config, sources: readonly string[]): Promise<number> {
  const [{ createLogger }, { runPrimary }] = await Promise.all([import('../observe/log.js'), import('../app/workers.js')])
  const log = createLogger(config.log.level, config.log.format)
  log.info({ sources: sources.length > 0 ? sources : ['defaults'], workers: config.server.workers }, 'configuration loaded; starting the worker processes (server.workers)')
  return runPrimary(config, log, { say: (line) => process.stderr.write(`${line}\n`) })
}

/** The operator's lines after start: the URL, the self-signed certificate, ACME, the generated admin. */
function banner(running: RunningPortier, config: Config): void {
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
}

