// Calls to Portier's UI API: same origin, the session cookie rides along, the CSRF token goes in a header.
import type { ErrorBody } from '../../src/ui/types.js'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly detail: unknown,
  ) {
    super(message)
  }

  /** A sentence for people: the detail's reason and fix when the server gave them. */
  get explanation(): string {
    const detail = (this.detail ?? {}) as { reason?: unknown; fix?: unknown }
    const reason = typeof detail.reason === 'string' ? detail.reason : this.message
    const fix = typeof detail.fix === 'string' ? ` To allow it: ${detail.fix}.` : ''
    return `${reason.charAt(0).toUpperCase()}${reason.slice(1)}.${fix}`
  }
}

let csrfToken = ''
let signedOutHandler: (() => void) | undefined

export function setCsrfToken(token: string): void {
  csrfToken = token
}

/** Called when a call finds the session gone (expired, revoked, user removed). */
export function onSignedOut(handler: () => void): void {
  signedOutHandler = handler
}

export async function call<T>(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response: Response
  try {
    response = await fetch(`/ui/api/${path}`, {
      method,
      headers,
      credentials: 'same-origin',
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
  } catch {
    throw new ApiError(0, 'NETWORK', 'Portier cannot be reached; check your connection', undefined)
  }
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = text ? JSON.parse(text) : undefined
  } catch {
    parsed = undefined
  }
  if (!response.ok) {
    const first = (parsed as ErrorBody | undefined)?.errors?.[0]
    const error = new ApiError(response.status, first?.code ?? 'UNKNOWN', first?.message ?? `HTTP ${response.status}`, first?.detail)
    if (response.status === 401 && path !== 'login' && path !== 'session') signedOutHandler?.()
    throw error
  }
  return parsed as T
}

const prefetched = new Map<string, Promise<unknown>>()

/** Starts a GET now (e.g. while the session is still being checked); the next get() of the same path takes it. */
export function prefetch(path: string): void {
  const pending = call('GET', path)
  pending.catch(() => undefined)
  prefetched.set(path, pending)
}

/** A GET, answered by a matching prefetch when there is one. */
export function get<T>(path: string): Promise<T> {
  const pending = prefetched.get(path)
  prefetched.delete(path)
  // A prefetch that failed (not signed in yet) is simply asked again.
  return pending ? (pending as Promise<T>).catch(() => call<T>('GET', path)) : call<T>('GET', path)
}

export function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== '') search.set(name, String(value))
  const text = search.toString()
  return text ? `?${text}` : ''
}
