// `portier healthcheck`: asks the running gateway, at the addresses its config names, whether it is alive (for HEALTHCHECK and probes).
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Config } from '../app/config.js'
import { parseListen } from '../app/listen.js'
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { load } from './load.js'

export const usage = `Usage: portier healthcheck [--config FILE]

Exits 0 when the running gateway answers: the admin listener's /healthz (admin.listen), else /healthz
on server.listen when admin.on_main_listener is set, else /v2/ there (200, or 401 with authentication
on). Exits 1 when it does not answer within 4 s. The image's HEALTHCHECK runs it.

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -h, --help          this text
`

export async function healthcheck(args: string[]): Promise<number> {
  const { values } = parseCommand('healthcheck', args, { config: configOption, help: helpOption }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const result = await runProbe(healthProbe(load(configPath(values.config)).config), 4000)
  process.stdout.write(`${result.ok ? 'healthy' : 'unhealthy'}: ${result.detail}\n`)
  return result.ok ? 0 : 1
}

export interface HealthProbe {
  url: string
  /** Statuses that mean "alive": /healthz answers 200; /v2/ answers 200, or 401 once authentication is on. */
  healthy: number[]
}

/** A wildcard listen address is reached on loopback from inside the same host or container. */
function loopbackFor(host: string): string {
  if (host === '' || host === '0.0.0.0') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

/** What to ask: the admin listener's /healthz; else /healthz on the main listener when it serves the admin paths; else /v2/ there. */
export function healthProbe(config: Config): HealthProbe {
  if (config.admin.listen) {
    const admin = parseListen(config.admin.listen)
    return { url: `http://${loopbackFor(admin.host)}:${admin.port}/healthz`, healthy: [200] }
  }
  const main = parseListen(config.server.listen)
  const origin = `${config.tls.enabled ? 'https' : 'http'}://${loopbackFor(main.host)}:${main.port}`
  return config.admin.on_main_listener ? { url: `${origin}/healthz`, healthy: [200] } : { url: `${origin}/v2/`, healthy: [200, 401] }
}

/** Sends the probe; resolves with the status, or an error message when nothing answered in time. */
export function runProbe(probe: HealthProbe, timeoutMs: number): Promise<{ ok: boolean; detail: string }> {
  return new Promise((resolve) => {
    const url = new URL(probe.url)
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest
    // The gateway's own certificate may be self-signed or name another host: liveness is not about trust.
    const req = send(url, { method: 'GET', timeout: timeoutMs, rejectUnauthorized: false, agent: false }, (res) => {
      res.resume()
      const status = res.statusCode ?? 0
      resolve({ ok: probe.healthy.includes(status), detail: `${probe.url} answered ${status}` })
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', (error) => resolve({ ok: false, detail: `${probe.url}: ${error.message}` }))
    req.end()
  })
}
