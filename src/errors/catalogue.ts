// Every error Portier answers, declared once and grouped by subsystem: its HTTP status, default message and code on the wire.

/**
 * Who answers with the code, and so which wire format it is rendered in:
 * - registry: distribution's own codes, on the registry API (/v2/) and the web UI's API (/ui/api/),
 *   both in the registry's JSON error format (docker clients and the UI's front end parse it);
 * - gateway: conditions only Portier has (size limits, slow transfers, upstream failures, HTTPS on the
 *   plain port), on the same surfaces and in the same format, under the closest registry wire code;
 * - token: the token endpoint (/token), in the registry's format plus OAuth2's error and
 *   error_description (docker reads the first, OAuth2 libraries the second);
 * - admin: the admin listener (/metrics, /healthz, /readyz), a small JSON object `{ error, code }`.
 */
export type Subsystem = 'registry' | 'gateway' | 'token' | 'admin'

export interface CatalogueEntry {
  status: number
  message: string
  /** The code the registry's error format carries (docker, skopeo and podman print it). */
  wire: string
}

export interface TokenCatalogueEntry extends CatalogueEntry {
  /** RFC 6749 §5.2 error code (the `error` field OAuth2 clients read). */
  oauth: string
}

// `satisfies` keeps each group's keys literal, so the code types below are exact.
const registry = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry', wire: 'BLOB_UNKNOWN' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid', wire: 'BLOB_UPLOAD_INVALID' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry', wire: 'BLOB_UPLOAD_UNKNOWN' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content', wire: 'DIGEST_INVALID' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid', wire: 'MANIFEST_INVALID' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown', wire: 'MANIFEST_UNKNOWN' },
  NAME_INVALID: { status: 400, message: 'invalid repository name', wire: 'NAME_INVALID' },
  RANGE_INVALID: { status: 416, message: 'invalid content range', wire: 'RANGE_INVALID' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry', wire: 'NAME_UNKNOWN' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length', wire: 'SIZE_INVALID' },
  TAG_INVALID: { status: 400, message: 'manifest reference is not a valid tag or digest', wire: 'TAG_INVALID' },
  UNAUTHORIZED: { status: 401, message: 'authentication required', wire: 'UNAUTHORIZED' },
  DENIED: { status: 403, message: 'requested access to the resource is denied', wire: 'DENIED' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported', wire: 'UNSUPPORTED' },
  NOT_FOUND: { status: 404, message: 'no such registry endpoint', wire: 'NOT_FOUND' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests', wire: 'TOOMANYREQUESTS' },
  UNAVAILABLE: { status: 503, message: 'service unavailable', wire: 'UNAVAILABLE' },
} as const satisfies Record<string, CatalogueEntry>

// Portier-only conditions map onto the closest registry wire code so that docker/skopeo print
// something meaningful; the HTTP status carries the precise meaning.
const gateway = {
  TOO_LARGE: { status: 413, message: 'request body exceeds the configured size limit', wire: 'SIZE_INVALID' },
  PATH_INVALID: { status: 400, message: 'request path is not valid', wire: 'NAME_INVALID' },
  HTTPS_REQUIRED: { status: 400, message: 'this port speaks HTTPS: send the request to https://', wire: 'UNSUPPORTED' },
  TOO_SLOW: { status: 408, message: 'the transfer was slower than the minimum rate (timeouts.min_rate)', wire: 'UNAVAILABLE' },
  GATEWAY_TIMEOUT: { status: 504, message: 'upstream registry did not answer in time', wire: 'UNAVAILABLE' },
  BAD_GATEWAY: { status: 502, message: 'upstream registry failed', wire: 'UNAVAILABLE' },
  // distribution's own code for a 500.
  INTERNAL: { status: 500, message: 'internal error in the gateway', wire: 'UNKNOWN' },
  REQUEST_INVALID: { status: 400, message: 'the request could not be read as HTTP/1.1', wire: 'UNSUPPORTED' },
  // A web UI or API body that is not the JSON object the endpoint takes.
  BODY_INVALID: { status: 400, message: 'the request body is not a JSON object', wire: 'UNSUPPORTED' },
  // distribution has no code for it; docker, skopeo and podman print DENIED with the message naming the rule.
  TAG_IMMUTABLE: { status: 403, message: 'the tag is immutable (immutable_tags)', wire: 'DENIED' },
  // Maintenance mode (src/housekeeping/maintenance.ts): a write while the registry is read-only. distribution's own
  // read-only answer (405 UNSUPPORTED): clients parse the body of a 4xx and print its message, while for a 503 skopeo
  // printed only "received unexpected HTTP status: 503". Retry-After is added when the end is known.
  READ_ONLY: { status: 405, message: 'registry is in read-only mode (maintenance)', wire: 'UNSUPPORTED' },
  // A push into a pull-through cache's prefix (src/cache/): distribution's proxy mode answers UNSUPPORTED too.
  CACHE_READ_ONLY: { status: 405, message: 'this repository is a pull-through cache: it can be pulled, not pushed to', wire: 'UNSUPPORTED' },
} as const satisfies Record<string, CatalogueEntry>

// The token endpoint's refusals. `oauth` values are what it has always answered; clients match on them.
const token = {
  TOKEN_REQUEST_INVALID: { status: 400, message: 'the token request is not valid', wire: 'UNSUPPORTED', oauth: 'invalid_request' },
  TOKEN_GRANT_TYPE_UNSUPPORTED: { status: 400, message: 'grant_type must be password or refresh_token', wire: 'UNSUPPORTED', oauth: 'unsupported_grant_type' },
  TOKEN_GRANT_INVALID: { status: 400, message: 'refresh token is not valid', wire: 'UNAUTHORIZED', oauth: 'invalid_grant' },
  TOKEN_CREDENTIALS_INVALID: { status: 401, message: 'incorrect username or password', wire: 'UNAUTHORIZED', oauth: 'invalid_client' },
  TOKEN_METHOD_NOT_ALLOWED: { status: 405, message: 'use GET or POST', wire: 'UNSUPPORTED', oauth: 'method_not_allowed' },
  TOKEN_BODY_TOO_LARGE: { status: 413, message: 'request body too large', wire: 'UNSUPPORTED', oauth: 'payload_too_large' },
  TOKEN_UNAVAILABLE: { status: 503, message: 'too many logins at once; try again shortly', wire: 'UNAVAILABLE', oauth: 'temporarily_unavailable' },
  TOKEN_INTERNAL: { status: 500, message: 'the token server failed', wire: 'UNKNOWN', oauth: 'server_error' },
} as const satisfies Record<string, TokenCatalogueEntry>

// The admin listener's refusals (Prometheus and load balancers read the status; people read `error`).
const admin = {
  ADMIN_NOT_FOUND: { status: 404, message: 'not found', wire: 'NOT_FOUND' },
  ADMIN_METHOD_NOT_ALLOWED: { status: 405, message: 'method not allowed', wire: 'UNSUPPORTED' },
  METRICS_DISABLED: { status: 404, message: 'metrics are disabled (metrics.enabled: false)', wire: 'NOT_FOUND' },
  METRICS_UNAUTHORIZED: { status: 401, message: 'credentials required', wire: 'UNAUTHORIZED' },
  METRICS_DENIED: { status: 403, message: 'this address may not read /metrics (admin.allow)', wire: 'DENIED' },
  // The admin API (/admin/api/..., src/admin/api.ts).
  ADMIN_UNAUTHORIZED: { status: 401, message: 'an administrator\'s credentials are required', wire: 'UNAUTHORIZED' },
  ADMIN_DENIED: { status: 403, message: 'this user is not an administrator (ui.admin_users)', wire: 'DENIED' },
  ADMIN_BAD_REQUEST: { status: 400, message: 'the request is not valid', wire: 'UNSUPPORTED' },
  ADMIN_CONFLICT: { status: 409, message: 'the request conflicts with what is running now', wire: 'UNSUPPORTED' },
  // Garbage collection (src/housekeeping/gc.ts) with no registry storage or binary at hand: the message says what to configure.
  GC_UNAVAILABLE: { status: 503, message: 'garbage collection cannot run here', wire: 'UNAVAILABLE' },
  // Several instances: GC and retention take a lock in shared.redis (or PostgreSQL); without it a run could happen twice.
  HOUSEKEEPING_LOCK_UNAVAILABLE: { status: 503, message: 'the lock shared by the instances cannot be reached', wire: 'UNAVAILABLE' },
  ADMIN_INTERNAL: { status: 500, message: 'internal error; see the gateway log', wire: 'UNKNOWN' },
} as const satisfies Record<string, CatalogueEntry>

export const catalogueBySubsystem = { registry, gateway, token, admin } as const satisfies Record<Subsystem, Record<string, CatalogueEntry>>

export type RegistryErrorCode = keyof typeof registry | keyof typeof gateway
export type TokenErrorCode = keyof typeof token
export type AdminErrorCode = keyof typeof admin
export type ErrorCode = RegistryErrorCode | TokenErrorCode | AdminErrorCode

// A code declared in two groups would make its subsystem ambiguous: this fails to compile then.
type Disjoint<A, B> = [Extract<keyof A, keyof B>] extends [never] ? true : false
type AllDisjoint = [
  Disjoint<typeof registry, typeof gateway>,
  Disjoint<typeof registry, typeof token>,
  Disjoint<typeof registry, typeof admin>,
  Disjoint<typeof gateway, typeof token>,
  Disjoint<typeof gateway, typeof admin>,
  Disjoint<typeof token, typeof admin>,
]
export const codesAreUnique: AllDisjoint extends true[] ? true : never = true

export interface CodeEntry extends CatalogueEntry {
  subsystem: Subsystem
  oauth?: string
}

/** The catalogue by code: each code once, with its subsystem. */
export const catalogue: Readonly<Record<ErrorCode, CodeEntry>> = Object.freeze(
  Object.fromEntries(
    (Object.entries(catalogueBySubsystem) as Array<[Subsystem, Record<string, CatalogueEntry>]>).flatMap(([subsystem, entries]) =>
      Object.entries(entries).map(([code, entry]) => [code, Object.freeze({ ...entry, subsystem })]),
    ),
  ) as Record<ErrorCode, CodeEntry>,
)

/** True for the catalogue's own codes only: `in` would also accept 'constructor', 'toString', … from the prototype. */
export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(catalogue, code)
}

/** A code of the registry API (distribution's or the gateway's own): what a RegistryError may carry. */
export function isRegistryErrorCode(code: string): code is RegistryErrorCode {
  return Object.hasOwn(registry, code) || Object.hasOwn(gateway, code)
}
