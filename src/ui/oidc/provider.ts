// The OpenID provider as Portier sees it: discovered (again at each sign-in), reached through its own CA if configured, and whether it can be reached.
import { rootCertificates } from 'node:tls'
import * as client from 'openid-client'
import { Agent, fetch as undiciFetch } from 'undici'

/** A call to the provider that got no HTTP answer: refused, timed out, a TLS failure. */
export class ProviderUnreachable extends Error {
  override readonly name = 'ProviderUnreachable'
}

export interface ProviderOptions {
  issuer: string
  clientId: string
  /** Undefined: a public client (PKCE, no secret). */
  clientSecret: string | undefined
  /** PEM text of extra CA certificates (ui.oidc.ca_file). */
  ca: string | undefined
  timeoutMs: number
}

export type ProviderStatus =
  | { state: 'starting' }
  | { state: 'ready'; since: string }
  | { state: 'unavailable'; reason: string; since: string }

export interface Provider {
  /** Discovers the provider now (single flight); throws when it cannot. Each sign-in starts here, so a provider gone since start-up is noticed before the browser is sent to it. */
  discover(): Promise<client.Configuration>
  /** The last discovered configuration, if any. */
  current(): client.Configuration | undefined
  status(): ProviderStatus
  /** Records a failure seen outside discovery (the token request), so the login page and /readyz tell it. */
  markUnavailable(reason: string): void
  close(): Promise<void>
}

/** The first line of an error and of each cause, joined: "fetch failed: connect ECONNREFUSED 127.0.0.1:4443". */
export function describeError(error: unknown): string {
  const parts: string[] = []
  let current: unknown = error
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    const message = current instanceof Error ? current.message : typeof current === 'string' ? current : JSON.stringify(current)
    const first = message.split('\n')[0] ?? ''
    if (first && !parts.includes(first)) parts.push(first)
    current = current instanceof Error ? current.cause : undefined
  }
  return parts.join(': ') || 'unknown error'
}

/** The reason the provider could not be reached, when `error` (or one of its causes) says so. */
export function unreachable(error: unknown): string | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 6 && current instanceof Error; depth++) {
    if (current instanceof ProviderUnreachable) return current.message
    current = current.cause
  }
  return undefined
}

function unreachableReason(url: string, error: unknown): string {
  const origin = (() => {
    try {
      return new URL(url).origin
    } catch {
      return url
    }
  })()
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return `${origin} did not answer in time`
  const detail = describeError(error).replace(/^fetch failed: /, '')
  const tls = /certificate|self.signed|unable to verify|CERT_|SSL|TLS/i.test(detail) ? ' (a private CA? set ui.oidc.ca_file)' : ''
  return `cannot reach ${origin}: ${detail}${tls}`
}

export function createProvider(options: ProviderOptions): Provider {
  const agent = new Agent({
    connect: { ...(options.ca ? { ca: [...rootCertificates, options.ca] } : {}), timeout: options.timeoutMs },
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  })
  // Every call openid-client makes goes through here: one agent (pooled connections, the configured CA), and
  // failures to reach the provider told apart from answers that fail validation.
  const fetchThroughAgent: client.CustomFetch = async (url, init) => {
    try {
      const response = await undiciFetch(url, { ...init, dispatcher: agent })
      // undici's Response is the same WHATWG class as the global one, typed separately.
      return response as unknown as Response
    } catch (error) {
      throw new ProviderUnreachable(unreachableReason(url, error), { cause: error })
    }
  }
  const timeoutSeconds = Math.max(1, Math.ceil(options.timeoutMs / 1000))
  const authentication = options.clientSecret === undefined ? client.None() : client.ClientSecretBasic(options.clientSecret)
  let configuration: client.Configuration | undefined
  let status: ProviderStatus = { state: 'starting' }
  let pending: Promise<client.Configuration> | undefined

  const discover = (): Promise<client.Configuration> => {
    pending ??= (async () => {
      try {
        const found = await client.discovery(new URL(options.issuer), options.clientId, undefined, authentication, {
          [client.customFetch]: fetchThroughAgent,
          timeout: timeoutSeconds,
        })
        found[client.customFetch] = fetchThroughAgent
        found.timeout = timeoutSeconds
        // OpenID Connect lets a client trust an ID token from the token endpoint on TLS alone; Portier checks
        // its signature against the provider's JWKS as well, so a token the provider's keys did not sign is refused.
        client.enableNonRepudiationChecks(found)
        configuration = found
        if (status.state !== 'ready') status = { state: 'ready', since: new Date().toISOString() }
        return found
      } catch (error) {
        const reason = unreachable(error) ?? `discovery at ${options.issuer} failed: ${describeError(error)}`
        status = { state: 'unavailable', reason, since: new Date().toISOString() }
        throw new ProviderUnreachable(reason, { cause: error })
      } finally {
        pending = undefined
      }
    })()
    return pending
  }

  return {
    discover,
    current: () => configuration,
    status: () => status,
    markUnavailable(reason) {
      status = { state: 'unavailable', reason, since: new Date().toISOString() }
    },
    close: () => agent.close(),
  }
}
