// registry:2's notification events (distribution 2.8 notifications/event.go), made from finished requests the way its bridge makes them.
import { randomUUID } from 'node:crypto'
import { pushedBlobBytes, type FinishedRequest } from '../observe/record.js'
import type { EventAction } from './section.js'

/** The envelope's media type: receivers written for registry:2 check it. */
export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json'
/** What registry 2.8 reports as a blob's media type in push and pull events (it does not know better). */
export const BLOB_MEDIA_TYPE = 'application/octet-stream'

/** One event, its fields in registry:2's order and with its omissions (Go's omitempty) so receivers see the same JSON. */
export interface RegistryEvent {
  id: string
  timestamp: string
  action: EventAction
  target: {
    mediaType?: string
    size?: number
    digest?: string
    length?: number
    repository?: string
    fromRepository?: string
    url?: string
    tag?: string
  }
  /** registry:2 always writes id, method and useragent (no omitempty), even empty. */
  request: { id: string; addr?: string; host?: string; method: string; useragent: string }
  actor: { name?: string }
  source: { addr?: string; instanceID?: string }
}

/** Who generates the events: this Portier (registry:2: os.Hostname() and its port, a UUID per start). */
export interface EventSource {
  addr: string
  instanceID: string
}

const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

function isDigest(reference: string | undefined): reference is string {
  return reference !== undefined && DIGEST.test(reference)
}

/** registry:2 names the content by URL on the host the client used (X-Forwarded-* honoured, like its URL builder). */
function contentUrl(finished: FinishedRequest, kind: 'manifests' | 'blobs', repository: string, digest: string): string | undefined {
  const origin = finished.publicOrigin ?? (finished.host ? `https://${finished.host}` : undefined)
  return origin ? `${origin}/v2/${repository}/${kind}/${digest}` : undefined
}

/** A media type without parameters (a manifest's Content-Type may carry a charset). */
function bare(mediaType: string | undefined): string | undefined {
  const value = mediaType?.split(';')[0]?.trim()
  return value ? value : undefined
}

function base(finished: FinishedRequest, action: EventAction, source: EventSource, at: Date): RegistryEvent {
  const request: RegistryEvent['request'] = { id: finished.requestId, method: finished.method, useragent: finished.userAgent ?? '' }
  // registry:2 puts the client address (after its trusted-proxy headers) and the Host header here.
  const ordered = { id: request.id, addr: finished.clientIp || undefined, host: finished.host || undefined, method: request.method, useragent: request.useragent }
  return {
    id: randomUUID(),
    timestamp: at.toISOString(),
    action,
    target: {},
    request: dropUndefined(ordered) as RegistryEvent['request'],
    actor: finished.user ? { name: finished.user } : {},
    source: { addr: source.addr, instanceID: source.instanceID },
  }
}

function dropUndefined<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined && field !== '')) as Partial<T>
}

function target(fields: RegistryEvent['target']): RegistryEvent['target'] {
  return dropUndefined(fields)
}

/**
 * The events a finished request makes, as registry 2.8 would have sent them: a blob upload that finished (201) is a
 * blob push; a manifest PUT (201) a manifest push, with the tag when pushed by tag; a manifest or blob GET/HEAD answered
 * 200 a pull (registry 2.8 serves HEAD through the same handler and reports it too); a manifest or blob DELETE (202) a
 * delete. Portier's own: a cross-repository mount (201) is `mount`; a login (GET /v2/ or the token endpoint with
 * credentials) is `login` or `login_failed`.
 */
export function eventsOf(finished: FinishedRequest, source: EventSource, at = new Date()): RegistryEvent[] {
  const { request, status } = finished
  if (!request) {
    if (finished.route === 'token' && finished.credentialsSent) return [login(finished, source, at)]
    return []
  }
  const repository = request.repository
  if (request.op === 'base' && finished.credentialsSent && (status === 200 || status === 401)) return [login(finished, source, at)]
  if (!repository) return []
  const event = (action: EventAction, fields: RegistryEvent['target']): RegistryEvent[] => {
    const made = base(finished, action, source, at)
    made.target = target(fields)
    return [made]
  }

  switch (request.op) {
    case 'upload.finish':
    case 'upload.monolithic': {
      if (status !== 201) return []
      const digest = finished.contentDigest ?? request.params.get('digest') ?? undefined
      if (!isDigest(digest)) return []
      const size = pushedBlobBytes(finished, request)
      return event('push', { mediaType: BLOB_MEDIA_TYPE, size, digest, length: size, repository, url: contentUrl(finished, 'blobs', repository, digest) })
    }
    case 'upload.mount': {
      const digest = finished.contentDigest ?? request.params.get('mount') ?? undefined
      if (status !== 201 || !isDigest(digest)) return []
      return event('mount', { mediaType: BLOB_MEDIA_TYPE, digest, repository, fromRepository: request.mountFrom, url: contentUrl(finished, 'blobs', repository, digest) })
    }
    case 'manifest.put': {
      const digest = finished.contentDigest
      if (status !== 201 || !isDigest(digest)) return []
      const size = finished.bytesReceived
      const tag = isDigest(request.reference) ? undefined : request.reference
      return event('push', { mediaType: bare(finished.mediaType), size, digest, length: size, repository, url: contentUrl(finished, 'manifests', repository, digest), tag })
    }
    case 'manifest.get':
    case 'manifest.head': {
      const digest = finished.contentDigest ?? (isDigest(request.reference) ? request.reference : undefined)
      if (status !== 200 || !isDigest(digest)) return []
      const size = finished.contentLength ?? (request.op === 'manifest.get' ? finished.bytesSent : undefined)
      const tag = isDigest(request.reference) ? undefined : request.reference
      return event('pull', { mediaType: bare(finished.mediaType), size, digest, length: size, repository, url: contentUrl(finished, 'manifests', repository, digest), tag })
    }
    case 'blob.get':
    case 'blob.head': {
      const digest = isDigest(request.reference) ? request.reference : undefined
      // A ranged read (206) is a pull in registry:2 too, but its size would be the range's: the whole blob's is unknown here.
      if (status !== 200 || !digest) return []
      const size = finished.contentLength ?? (request.op === 'blob.get' ? finished.bytesSent : undefined)
      return event('pull', { mediaType: BLOB_MEDIA_TYPE, size, digest, length: size, repository, url: contentUrl(finished, 'blobs', repository, digest) })
    }
    case 'manifest.delete':
    case 'blob.delete': {
      if (status !== 202) return []
      // registry:2 sends a manifest or blob delete with the digest only; a tag deleted through Portier names the tag (as distribution v3 does).
      return isDigest(request.reference) ? event('delete', { digest: request.reference, repository }) : event('delete', { repository, tag: request.reference })
    }
    default:
      return []
  }
}

function login(finished: FinishedRequest, source: EventSource, at: Date): RegistryEvent {
  const event = base(finished, finished.status < 400 ? 'login' : 'login_failed', source, at)
  // The name the credentials gave, right or wrong (the token endpoint has no identity of its own here); never a password.
  const name = finished.user || finished.loginName
  event.actor = name ? { name } : {}
  return event
}

/** An event Portier makes outside a request (retention delete, gc): no request behind it but the module's own name. */
export function systemEvent(action: EventAction, fields: RegistryEvent['target'], actor: string, source: EventSource, at = new Date()): RegistryEvent {
  return {
    id: randomUUID(),
    timestamp: at.toISOString(),
    action,
    target: target(fields),
    request: { id: randomUUID(), method: '', useragent: '' },
    actor: { name: actor },
    source: { addr: source.addr, instanceID: source.instanceID },
  }
}

/** The body registry:2 posts: an envelope of events (one per POST here, as registry 2.8 sends them). */
export function envelope(events: readonly RegistryEvent[]): string {
  return JSON.stringify({ events })
}
