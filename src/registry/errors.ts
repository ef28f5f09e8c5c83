// The one place that knows the registry's error codes, their HTTP statuses and the JSON error body.
import type { ServerResponse } from 'node:http'

export const errorCatalogue = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  RANGE_INVALID: { status: 416, message: 'invalid content range' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  TAG_INVALID: { status: 400, message: 'manifest reference is not a valid tag or digest' },
  TOO_LARGE: { status: 413, message: 'request body exceeds the configured size limit' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  NOT_FOUND: { status: 404, message: 'no such registry endpoint' },
  PATH_INVALID: { status: 400, message: 'request path is not valid' },
  HTTPS_REQUIRED: { status: 400, message: 'this port speaks HTTPS: send the request to https://' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  TOO_SLOW: { status: 408, message: 'the transfer was slower than the minimum rate (timeouts.min_rate)' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  GATEWAY_TIMEOUT: { status: 504, message: 'upstream registry did not answer in time' },
  BAD_GATEWAY: { status: 502, message: 'upstream registry failed' },
  INTERNAL: { status: 500, message: 'internal error in the gateway' },
  REQUEST_INVALID: { status: 400, message: 'the request could not be read as HTTP/1.1' },
} as const

export type RegistryErrorCode = keyof typeof errorCatalogue

// The registry's own wire codes. Portier-only conditions map onto the closest registry code so
// that docker/skopeo print something meaningful; the HTTP status carries the precise meaning.
const wireCode: Record<RegistryErrorCode, string> = {
  BLOB_UNKNOWN: 'BLOB_UNKNOWN',
  BLOB_UPLOAD_INVALID: 'BLOB_UPLOAD_INVALID',
  BLOB_UPLOAD_UNKNOWN: 'BLOB_UPLOAD_UNKNOWN',
  DIGEST_INVALID: 'DIGEST_INVALID',
  MANIFEST_INVALID: 'MANIFEST_INVALID',
  MANIFEST_UNKNOWN: 'MANIFEST_UNKNOWN',
  NAME_INVALID: 'NAME_INVALID',
  RANGE_INVALID: 'RANGE_INVALID',
  NAME_UNKNOWN: 'NAME_UNKNOWN',
  SIZE_INVALID: 'SIZE_INVALID',
  TAG_INVALID: 'TAG_INVALID',
  TOO_LARGE: 'SIZE_INVALID',
  UNAUTHORIZED: 'UNAUTHORIZED',
  DENIED: 'DENIED',
  UNSUPPORTED: 'UNSUPPORTED',
  NOT_FOUND: 'NOT_FOUND',
  PATH_INVALID: 'NAME_INVALID',
  HTTPS_REQUIRED: 'UNSUPPORTED',
  TOOMANYREQUESTS: 'TOOMANYREQUESTS',
  TOO_SLOW: 'UNAVAILABLE',
  UNAVAILABLE: 'UNAVAILABLE',
  GATEWAY_TIMEOUT: 'UNAVAILABLE',
  BAD_GATEWAY: 'UNAVAILABLE',
  // distribution's own code for a 500.
  INTERNAL: 'UNKNOWN',
  REQUEST_INVALID: 'UNSUPPORTED',
}

/** True for the catalogue's own codes only: `in` would also accept 'constructor', 'toString', … from the prototype. */
export function isRegistryErrorCode(code: string): code is RegistryErrorCode {
  return Object.hasOwn(errorCatalogue, code)
}

export class RegistryError extends Error {
  readonly code: RegistryErrorCode
  readonly status: number
  readonly detail: unknown
  readonly headers: Record<string, string>

  constructor(code: RegistryErrorCode, detail?: unknown, headers: Record<string, string> = {}, message?: string) {
    // A code from outside the catalogue (a cast from an upstream's answer) is the gateway's own fault.
    const known = isRegistryErrorCode(code) ? code : 'INTERNAL'
    super(message ?? errorCatalogue[known].message)
    this.code = known
    this.status = errorCatalogue[known].status
    this.detail = detail
    this.headers = headers
  }

  get wireCode(): string {
    return wireCode[this.code]
  }

  body(): string {
    const entry: { code: string; message: string; detail?: unknown } = { code: this.wireCode, message: this.message }
    if (this.detail !== undefined) entry.detail = this.detail
    return JSON.stringify({ errors: [entry] })
  }
}

/** Writes a registry-format JSON error; used for every response Portier makes itself. */
export function sendRegistryError(res: ServerResponse, error: RegistryError): void {
  if (res.headersSent) {
    // Too late for a status line: end the response abnormally so the client sees a failure,
    // never a silently truncated success.
    res.destroy(error)
    return
  }
  const body = error.body()
  res.statusCode = error.status
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0')
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value)
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
