// Runs the real gateway process (`node dist/cli.js serve`, what the image runs) with a temp config, and stops it.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, rmSync, writeFileSync, copyFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import type { Test } from 'tap'
import yaml from 'js-yaml'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const CLI = join(ROOT, 'dist', 'cli.js')

export interface GatewayOptions {
  /** Config tree written as portier.yaml; `server.listen` defaults to 127.0.0.1:0 (any free port). */
  config?: Record<string, unknown>
  env?: NodeJS.ProcessEnv
  /** Working directory (certs/, data/ are relative to it); a fresh temp dir by default. */
  cwd?: string
  /** How long start-up may take before the test fails (a bound for a loaded machine, not a speed check). */
  readyTimeoutMs?: number
  /** A command the gateway runs under, e.g. setpriv arguments that switch the uid (the node binary and its arguments follow). */
  wrapper?: string[]
}

export interface LogLine {
  level: number
  msg: string
  [key: string]: unknown
}

export interface GatewayHandle {
  /** e.g. https://127.0.0.1:PORT */
  url: string
  /** host:port for skopeo/docker references, e.g. 127.0.0.1:PORT */
  host: string
  port: number
  cwd: string
  /** A directory holding ca.crt (the served certificate), for skopeo --dest-cert-dir. */
  certDir: string
  /** Path of the certificate the gateway serves by default (self-signed unless configured). */
  caFile: string
  child: ChildProcess
  logs: LogLine[]
  stderr(): string
  /** The admin listener, e.g. http://127.0.0.1:PORT (undefined when admin.listen is empty). */
  adminUrl: string | undefined
  /** Resolves with the first log line matching, waiting up to timeoutMs. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /**
   * Resolves once every line logged before the call is in `logs`. The gateway writes its log in batches (up to
   * 100 ms), so a test that looks at `logs` right after a response must wait: this sends a GET /v2/ with a unique
   * X-Request-Id and waits for its access-log line, which comes after everything logged earlier.
   */
  logsSettled(): Promise<void>
  /** SIGTERM and wait (SIGKILL after 10 s); removes the temp dir it made. Idempotent. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** The environment without PORTIER_* variables: those are configuration to Portier, and the harness's own (PORTIER_KEEP_TMP, …) are not. */
export function withoutPortierVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('PORTIER_')))
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

export async function startGateway(options: GatewayOptions = {}): Promise<GatewayHandle> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`)
  const madeCwd = options.cwd === undefined
  const cwd = options.cwd ?? (await mkdtemp(join(tmpdir(), 'portier-gw-')))
  const config = structuredClone(options.config ?? {}) as Record<string, Record<string, unknown>>
  config.server = { ...(config.server ?? {}) }
  // Port 0: the kernel picks a free port at bind time (no race with tests running in parallel);
  // the real port is read from the 'portier ready' log line.
  if (config.server.listen === undefined) config.server.listen = '127.0.0.1:0'
  config.admin = { ...(config.admin ?? {}) }
  if (config.admin.listen === undefined) config.admin.listen = '127.0.0.1:0'
  // Tests get open access unless they are about auth.
  if (config.auth === undefined) config.auth = { mode: 'none' }
  const configFile = join(cwd, 'portier.yaml')
  writeFileSync(configFile, yaml.dump(config))

  // The V8 flags the image runs with (Dockerfile ENTRYPOINT): the tests run the process the image runs.
  const argv = [...(options.wrapper ?? []), process.execPath, '--max-semi-space-size=1', '--liftoff-only', '--no-concurrent-recompilation', CLI, 'serve', '--config', configFile]
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd,
    // Test-harness variables (PORTIER_KEEP_TMP, PORTIER_REGISTRY_BIN, …) are not gateway config:
    // pass only the ones the test sets for the gateway.
    env: { ...withoutPortierVariables(process.env), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  live.add(child)
  const logs: LogLine[] = []
  const waiters: Array<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }> = []
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: LogLine
    try {
      line = JSON.parse(text) as LogLine
    } catch {
      line = { level: 30, msg: text }
    }
    logs.push(line)
    for (const waiter of [...waiters]) {
      if (waiter.match(line)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve(line)
      }
    }
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('exit', (code, signal) => {
      live.delete(child)
      done({ code, signal })
    }),
  )

  const waitForLog = (match: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> => {
    const found = logs.find(match)
    if (found) return Promise.resolve(found)
    return new Promise((resolveLine, reject) => {
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1)
        reject(new Error(`no matching gateway log line within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`))
      }, timeoutMs)
      const waiter = {
        match,
        resolve: (line: LogLine) => {
          clearTimeout(timer)
          resolveLine(line)
        },
      }
      waiters.push(waiter)
    })
  }

  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined
  const stop = (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopped ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        const result = await exited
        clearTimeout(killer)
        if (madeCwd && process.env.PORTIER_KEEP_TMP !== '1') rmSync(cwd, { recursive: true, force: true })
        return result
      }
      const result = await exited
      if (madeCwd && process.env.PORTIER_KEEP_TMP !== '1') rmSync(cwd, { recursive: true, force: true })
      return result
    })()
    return stopped
  }

  try {
    await Promise.race([
      waitForLog((line) => line.msg === 'portier ready', options.readyTimeoutMs ?? 90_000),
      exited.then(({ code }) => {
        throw new Error(`gateway exited with code ${code} before it was ready; stderr: ${stderr.slice(-2000)}`)
      }),
    ])
  } catch (error) {
    await stop()
    throw error
  }
  const ready = logs.find((line) => line.msg === 'portier ready') as LogLine & { listen: string; admin_listen?: string }
  const port = Number(String(ready.listen).split(':').pop())
  const adminUrl = ready.admin_listen ? `http://127.0.0.1:${String(ready.admin_listen).split(':').pop()}` : undefined
  const tlsEnabled = (config.tls as { enabled?: boolean } | undefined)?.enabled !== false
  const certificates = (config.tls as { certificates?: Array<{ cert: string }> } | undefined)?.certificates
  const caFile = certificates?.[0] ? resolve(cwd, certificates[0].cert) : join(cwd, 'certs', 'self-signed', 'cert.pem')
  const certDir = join(cwd, 'client-certs')
  mkdirSync(certDir, { recursive: true })
  if (tlsEnabled && existsSync(caFile)) copyFileSync(caFile, join(certDir, 'ca.crt'))

  const logsSettled = async (): Promise<void> => {
    const marker = `logs-settled-${randomUUID()}`
    const send = tlsEnabled ? httpsRequest : httpRequest
    await new Promise<void>((done, fail) => {
      const req = send({ host: '127.0.0.1', port, path: '/v2/', headers: { 'x-request-id': marker }, rejectUnauthorized: false, agent: false }, (res) => {
        res.resume()
        res.once('end', done)
        res.once('error', fail)
      })
      req.once('error', fail)
      req.end()
    })
    await waitForLog((line) => line.request_id === marker)
  }

  return {
    url: `${tlsEnabled ? 'https' : 'http'}://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    adminUrl,
    cwd,
    certDir,
    caFile,
    child,
    logs,
    stderr: () => stderr,
    waitForLog,
    logsSettled,
    stop,
  }
}

/** Starts a gateway for one test and stops it in teardown (printing its output when the test failed). */
export async function gatewayFixture(t: Test, options: GatewayOptions = {}): Promise<GatewayHandle> {
  const gateway = await startGateway(options)
  t.teardown(async () => {
    if (!t.passing()) {
      process.stderr.write(`--- gateway stderr\n${gateway.stderr().slice(-3000)}\n--- gateway log (last 30)\n`)
      for (const line of gateway.logs.slice(-30)) process.stderr.write(`${JSON.stringify(line)}\n`)
    }
    await gateway.stop()
  })
  return gateway
}
