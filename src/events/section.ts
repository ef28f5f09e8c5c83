// The `events` config section: webhook endpoints with registry:2's notification knobs (same names), plus Portier's own.
import { z } from 'zod'
import { duration, flag, list, section, strings, text, whole, oneOf } from '../config/fields.js'
import { globProblem, repositoryGlobExpected } from '../lib/glob.js'

/** registry:2's actions (push, pull, delete) are sent unless ignored; Portier's own only to an endpoint that lists them. */
export const REGISTRY_ACTIONS = ['push', 'pull', 'delete'] as const
export const PORTIER_ACTIONS = ['mount', 'login', 'login_failed', 'retention_delete', 'gc'] as const
export type EventAction = (typeof REGISTRY_ACTIONS)[number] | (typeof PORTIER_ACTIONS)[number]

const headerValue = z.union([z.string(), z.array(z.string())], { error: 'a string or a list of strings (registry:2 writes a list)' })

/** registry:2 writes `headers: {Authorization: [Bearer x]}`; a plain string is taken too. Values are lists either way. */
const headers = z
  .record(z.string(), headerValue, { error: 'a mapping of header names to a string or a list of strings' })
  .transform((map) => Object.fromEntries(Object.entries(map).map(([name, value]) => [name, typeof value === 'string' ? [value] : value])))
  .default(() => ({}))

const endpoint = section({
  name: text({ pattern: /^[A-Za-z0-9._-]{1,64}$/, expect: 'a name of 1-64 letters, digits, ".", "_" or "-"' }),
  /** registry:2: a disabled endpoint gets nothing (its queue is kept). */
  disabled: flag().default(false),
  url: text({ pattern: /^https?:\/\/[^\s]+$/, expect: 'an http:// or https:// URL like "http://listener:8080/api/notification"' }),
  headers,
  /** registry:2 defaults: timeout 1s, threshold 10, backoff 1s. */
  timeout: duration().default(1_000),
  threshold: whole({ min: 1 }).default(10),
  backoff: duration().default(1_000),
  /** Portier: the backoff doubles after each failure past the threshold, up to this. */
  max_backoff: duration().default(60_000),
  /** Portier: an event still undelivered this long after it happened goes to the dead-letter list (`portier events retry` sends it again). */
  deadletter_after: duration(366 * 86_400_000).default(86_400_000),
  /** registry:2's older spelling of ignore.mediatypes; both are honoured. */
  ignoredmediatypes: strings().default(() => []),
  ignore: section({
    mediatypes: strings().default(() => []),
    actions: strings().default(() => []),
  }).prefault({}),
  /** Portier: only events on repositories matching one of these globs (empty: all). */
  repositories: strings((glob) => (globProblem(glob) ? repositoryGlobExpected : undefined)).default(() => []),
  /** Portier's own actions this endpoint wants (registry:2's push, pull, delete always come unless ignored). */
  actions: list(oneOf(PORTIER_ACTIONS)).default(() => []),
  /** Portier: a file holding the HMAC-SHA256 key; each POST then carries X-Portier-Signature: sha256=<hex of HMAC(body)>. */
  secret_file: text().default(''),
  tls: section({
    /** PEM CA certificates trusted for this receiver (in addition to the system roots). */
    ca_file: text().default(''),
    insecure_skip_verify: flag().default(false),
  }).prefault({}),
})

/** Undelivered events wait in the store (store.path), so they survive restarts. */
export const eventsSection = section({
  endpoints: list(endpoint)
    .superRefine((endpoints, context) => {
      const names = new Set<string>()
      endpoints.forEach((entry, index) => {
        if (names.has(entry.name)) context.addIssue({ code: 'custom', path: [index, 'name'], input: entry.name, message: 'a name no other endpoint has' })
        names.add(entry.name)
      })
    })
    .default(() => []),
}).prefault({})

export type EventsConfig = z.output<typeof eventsSection>
export type EndpointConfig = EventsConfig['endpoints'][number]
