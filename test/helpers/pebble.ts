// Runs a real ACME CA on loopback: Debian's pebble plus pebble-challtestsrv as its DNS server, which
// answers every name with 127.0.0.1, so any test name validates against the gateway's own listeners.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { runOk } from './exec.js'
import { freePort } from './ports.js'

export const PEBBLE_BIN = process.env.PORTIER_PEBBLE_BIN ?? 'pebble'
export const CHALLTESTSRV_BIN = process.env.PORTIER_CHALLTESTSRV_BIN ?? 'pebble-challtestsrv'

export interface PebbleOptions {
  /** Where pebble sends HTTP-01 validations (the gateway's plain-HTTP listener). */
  httpPort: number
  /** Where pebble sends TLS-ALPN-01 validations (the gateway's TLS listener). */
  tlsPort: number
  /** certificateValidityPeriod in seconds (pebble's default is about five years). */
  validitySeconds?: number
  /** Names pebble refuses to issue for. */
  blocklist?: string[]
  /** Require external account binding with these key ids → base64url HMAC keys. */
  eab?: Record<string, string>
  /** Start the processes now (default) or later with start(). */
  start?: boolean
}

export interface PebbleHandle {
  /** https://127.0.0.1:PORT/dir, served with `caBundle`. */
  directoryUrl: string
  /** PEM file of pebble's own TLS certificate: what a client needs as ca_bundle to talk to it. */
  caBundle: string
  managementUrl: string
  dir: string
  start(): Promise<void>
  /** The root that issues certificates (from the management API); changes on every pebble start. */
  root(): Promise<string>
  /** pebble's log so far. */
  log(): string
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 5000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)))
    req.on('error', reject)
    req.end()
  })
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 3000)
    child.once('exit', () => {
      clearTimeout(killer)
      live.delete(child)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

export async function startPebble(options: PebbleOptions): Promise<PebbleHandle> {
  const dir = mkdtempSync(join(tmpdir(), 'portier-pebble-'))
  const [acmePort, managementPort, dnsPort, dnsManagementPort] = [await freePort(), await freePort(), await freePort(), await freePort()]
  const caBundle = join(dir, 'pebble.crt')
  const key = join(dir, 'pebble.key')
  // Pebble's own HTTPS certificate, made fresh for each run.
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', caBundle, '-days', '2', '-subj', '/CN=pebble test CA API',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ])
  const configFile = join(dir, 'pebble.json')
  writeFileSync(configFile, JSON.stringify({
    pebble: {
      listenAddress: `127.0.0.1:${acmePort}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: caBundle,
      privateKey: key,
      httpPort: options.httpPort,
      tlsPort: options.tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: options.eab !== undefined,
      ...(options.eab ? { externalAccountMACKeys: options.eab } : {}),
      ...(options.validitySeconds ? { certificateValidityPeriod: options.validitySeconds } : {}),
      ...(options.blocklist ? { domainBlocklist: options.blocklist } : {}),
    },
  }))
  let output = ''
  let children: ChildProcess[] = []
  const directoryUrl = `https://127.0.0.1:${acmePort}/dir`
  const managementUrl = `https://127.0.0.1:${managementPort}`
  const ca = readFileSync(caBundle, 'utf8')

  const launch = (command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess => {
    const child = spawn(command, args, { cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    live.add(child)
    const collect = (chunk: Buffer): void => {
      output += chunk.toString()
    }
    child.stdout?.on('data', collect)
    child.stderr?.on('data', collect)
    child.once('exit', () => live.delete(child))
    return child
  }

  const handle: PebbleHandle = {
    directoryUrl,
    caBundle,
    managementUrl,
    dir,
    async start() {
      children = [
        launch(CHALLTESTSRV_BIN, [
          '-defaultIPv4', '127.0.0.1', '-defaultIPv6', '',
          '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '',
          '-management', `127.0.0.1:${dnsManagementPort}`,
        ]),
        // No random validation sleeps; authorizations never reused, so every order validates.
        launch(PEBBLE_BIN, ['-config', configFile, '-dnsserver', `127.0.0.1:${dnsPort}`, '-strict=false'], { PEBBLE_VA_NOSLEEP: '1', PEBBLE_AUTHZREUSE: '0' }),
      ]
      const deadline = Date.now() + 15_000
      for (;;) {
        try {
          if ((await get(directoryUrl, ca)).status === 200) return
        } catch {
          // Not listening yet.
        }
        for (const child of children) {
          if (child.exitCode !== null) throw new Error(`pebble exited early (${child.exitCode}):\n${output}`)
        }
        if (Date.now() > deadline) throw new Error(`pebble did not answer ${directoryUrl} within 15 s:\n${output}`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    },
    async root() {
      const answer = await get(`${managementUrl}/roots/0`, ca)
      if (answer.status !== 200) throw new Error(`pebble roots/0 answered ${answer.status}`)
      return answer.body
    },
    log: () => output,
    async stop() {
      await Promise.all(children.map(stopChild))
      children = []
    },
  }
  if (options.start !== false) {
    try {
      await handle.start()
    } catch (error) {
      await handle.stop()
      rmSync(dir, { recursive: true, force: true })
      throw error
    }
  }
  return handle
}

/** Starts pebble for one test; stops it and removes its files in teardown (printing its log when the test failed). */
export async function pebbleFixture(t: Test, options: PebbleOptions): Promise<PebbleHandle> {
  const pebble = await startPebble(options)
  t.teardown(async () => {
    if (!t.passing()) process.stderr.write(`--- pebble log (last 3000 chars)\n${pebble.log().slice(-3000)}\n`)
    await pebble.stop()
    if (process.env.PORTIER_KEEP_TMP !== '1') rmSync(pebble.dir, { recursive: true, force: true })
  })
  return pebble
}
