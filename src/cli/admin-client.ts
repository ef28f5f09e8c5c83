// The commands' client for the admin API (/admin/api/...): where the running gateway's admin API is, how to trust it, whose credentials to send.
/*
 * A command that talks to the admin API (portier maintenance, gc, retention):
 *
 *   const { values } = parseCommand('gc', args, { ...adminClientOptions, help: helpOption }, 0)
 *   const client = await adminClient(values, 'gc')
 *   const answer = await client.call('POST', '/admin/api/gc', { dry_run: true })
 *   if (!answer.ok) return answer.exitCode          // said why on stderr (unreachable, or the refusal): 1
 *
 * (request() and fail() for commands that read a refusal themselves.)
 *
 * The password is asked only when --user is given (or PORTIER_ADMIN_USER is set): from
 * PORTIER_ADMIN_PASSWORD, else the terminal (no echo), else the first line of stdin.
 */
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import type { Config } from '../app/config.js'
import { parseListen } from '../app/listen.js'
import { configOption, configPath, UsageError } from './args.js'
import { load } from './load.js'

export const adminClientOptions = {
  config: configOption,
  'admin-url': { type: 'string' },
  user: { type: 'string', short: 'u' },
  ca: { type: 'string' },
  insecure: { type: 'boolean' },
} as const

export interface AdminClientValues {
  config?: string | undefined
  'admin-url'?: string | undefined
  user?: string | undefined
  ca?: string | undefined
  insecure?: boolean | undefined
}

export const adminClientUsage = `Where and how (every admin command):
  --admin-url URL     the admin API's origin, e.g. http://127.0.0.1:9113 (default: admin.listen of
                      the configuration, else server.listen when admin.on_main_listener is set)
  -u, --user USER     an administrator (ui.admin_users) of the htpasswd file; the password comes
                      from $PORTIER_ADMIN_PASSWORD, else the terminal, else the first line of stdin.
                      Not needed with auth.mode none. Also $PORTIER_ADMIN_USER.
  --ca FILE           trust this certificate (PEM) for an https:// admin URL (default: the
                      self-signed certificate in tls.self_signed.dir, when there is one)
  --insecure          do not verify the https:// admin URL's certificate
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
`

export interface AdminAnswer {
  ok: boolean
  status: number
  /** The parsed JSON answer (the admin API always answers JSON), or the text when it was not JSON. */
  body: unknown
  headers: Record<string, string | string[] | undefined>
}

export interface AdminClient {
  /** e.g. http://127.0.0.1:9113 */
  origin: string
  request(method: string, path: string, body?: unknown): Promise<AdminAnswer>
  /** Prints a refused answer on stderr in one line (the API's `error`, its code and status); returns exit code 1. */
  fail(answer: AdminAnswer): number
  /**
   * One request whose failure ends the command: the answer's body when it succeeded; else the exit code (1),
   * after one line on stderr saying why (the admin API could not be reached, or its refusal).
   */
  call(method: string, path: string, body?: unknown): Promise<{ ok: true; body: unknown } | { ok: false; exitCode: number }>
}

/** A wildcard listen address is reached on loopback from the same host or container. */
function loopbackFor(host: string): string {
  if (host === '' || host === '0.0.0.0') return '127.0.0.1'
  if (host === '::') return '[::1]'
  return host.includes(':') ? `[${host}]` : host
}

/** The admin API's origin from the configuration: the admin listener, else the main listener serving the admin paths. */
export function adminOrigin(config: Config, command?: string): string {
  if (config.admin.listen) {
    const admin = parseListen(config.admin.listen)
    if (admin.port === 0) throw new UsageError('admin.listen has port 0 (any free port): give --admin-url with the port the gateway logged (admin_listen)', command)
    return `http://${loopbackFor(admin.host)}:${admin.port}`
  }
  if (!config.admin.on_main_listener) {
    throw new UsageError('the configuration has no admin listener (admin.listen is empty and admin.on_main_listener is false): give --admin-url', command)
  }
  const main = parseListen(config.server.listen)
  return `${config.tls.enabled ? 'https' : 'http'}://${loopbackFor(main.host)}:${main.port}`
}

/** The password for --user: $PORTIER_ADMIN_PASSWORD, else the terminal (no echo), else stdin's first line. */
async function adminPassword(user: string): Promise<string> {
  const fromEnvironment = process.env.PORTIER_ADMIN_PASSWORD
  if (fromEnvironment !== undefined && fromEnvironment !== '') return fromEnvironment
  const { readPassword } = await import('../auth/passwd.js')
  return readPassword(`Password for ${user}: `, false)
}

/** `command`: whose usage follows a usage error. */
export async function adminClient(values: AdminClientValues, command: string): Promise<AdminClient> {
  const user = values.user || process.env.PORTIER_ADMIN_USER || undefined
  // The configuration is read only for what the options leave open: where the API is, which certificate to trust.
  let config: Config | undefined
  const configured = (): Config => (config ??= load(configPath(values.config)).config)
  const origin = values['admin-url'] || adminOrigin(configured(), command)
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    throw new UsageError(`--admin-url ${origin} is not a URL (expected e.g. http://127.0.0.1:9113)`, command)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--admin-url must be http:// or https://, not ${url.protocol}`, command)
  let ca: Buffer | undefined
  if (url.protocol === 'https:' && !values.insecure) {
    const caFile = values.ca ?? join(configured().tls.self_signed.dir, 'cert.pem')
    try {
      ca = readFileSync(caFile)
    } catch (error) {
      if (values.ca !== undefined) throw new UsageError(`--ca ${values.ca}: ${(error as Error).message}`, command)
      // No self-signed certificate here: the system's roots decide (a real certificate).
    }
  }
  const authorization = user ? `Basic ${Buffer.from(`${user}:${await adminPassword(user)}`).toString('base64')}` : undefined

  const client: AdminClient = {
    origin: url.origin,
    async call(method, path, body) {
      let answer: AdminAnswer
      try {
        answer = await client.request(method, path, body)
      } catch (error) {
        process.stderr.write(`portier: could not reach the admin API: ${(error as Error).message}\n`)
        return { ok: false, exitCode: 1 }
      }
      return answer.ok ? { ok: true, body: answer.body } : { ok: false, exitCode: client.fail(answer) }
    },
    request(method, path, body) {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body))
      const headers: Record<string, string> = { accept: 'application/json' }
      if (authorization) headers.authorization = authorization
      if (payload) {
        headers['content-type'] = 'application/json'
        headers['content-length'] = String(payload.length)
      }
      const target = new URL(path, url.origin)
      return new Promise((resolve, reject) => {
        const send = target.protocol === 'https:' ? httpsRequest : httpRequest
        const req = send(target, { method, headers, timeout: 30_000, agent: false, ...(target.protocol === 'https:' ? { rejectUnauthorized: !values.insecure, ...(ca ? { ca } : {}) } : {}) }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('error', reject)
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let parsed: unknown = text
            try {
              parsed = text === '' ? undefined : JSON.parse(text)
            } catch {
              // Not JSON (a proxy's error page): shown as text.
            }
            const status = res.statusCode ?? 0
            resolve({ ok: status >= 200 && status < 300, status, body: parsed, headers: res.headers })
          })
        })
        req.on('timeout', () => req.destroy(new Error('no answer within 30 s')))
        req.on('error', (error) => reject(new Error(`${target.origin}: ${error.message}`)))
        req.end(payload)
      })
    },
    fail(answer) {
      const body = answer.body
      const error = typeof body === 'object' && body !== null && 'error' in body ? String((body as { error: unknown }).error) : typeof body === 'string' ? body : JSON.stringify(body ?? '')
      const code = typeof body === 'object' && body !== null && 'code' in body ? ` (${String((body as { code: unknown }).code)})` : ''
      const hint = answer.status === 401 && !user ? '; give --user USER (an administrator in ui.admin_users)' : ''
      process.stderr.write(`portier: the admin API answered ${answer.status}: ${error}${code}${hint}\n`)
      return 1
    },
  }
  return client
}
