// Signed upload URLs: which upstream upload session(s) a client's upload belongs to, carried in the URL itself.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { loadSecret } from '../config/secret.js'
import type { RegistryRequest } from '../registry/classify.js'

/** One upstream's upload session, as its own Location named it. */
export interface UpstreamSession {
  /** Name of the upstream that holds the session. */
  upstream: string
  /** The upstream's upload UUID (last path segment of its Location). */
  uuid: string
  /** The upstream's `_state` query value, verbatim; undefined when it sent none. */
  state?: string
}

/** The query parameter of Portier's upload URLs. */
export const TOKEN_PARAM = '_portier'

const VERSION = 1
const MAC_BYTES = 16
const ID_BYTES = 4
const MAX_TOKEN_CHARS = 8192
const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const uploadPath = /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/

/** How a session's `_state` is stored in the token. */
const StateForm = {
  None: 0,
  /** The bytes of a padded base64url value (distribution's `_state`). */
  Padded: 1,
  Unpadded: 2,
  /** Anything else, kept as text. */
  Text: 3,
} as const
type StateForm = (typeof StateForm)[keyof typeof StateForm]

/** A 4-byte id per upstream name: tokens name upstreams by name, so reordering the config does not misroute. */
export function upstreamId(name: string): Buffer {
  return createHash('sha256').update(name).digest().subarray(0, ID_BYTES)
}

function encodeState(state: string | undefined): { form: StateForm; bytes: Buffer } {
  if (state === undefined) return { form: StateForm.None, bytes: Buffer.alloc(0) }
  if (/^[A-Za-z0-9_-]*={0,2}$/.test(state)) {
    const bytes = Buffer.from(state, 'base64url')
    const plain = bytes.toString('base64url')
    if (plain === state) return { form: StateForm.Unpadded, bytes }
    if (padded(plain) === state) return { form: StateForm.Padded, bytes }
  }
  return { form: StateForm.Text, bytes: Buffer.from(state, 'utf8') }
}

function padded(base64url: string): string {
  return base64url + '='.repeat((4 - (base64url.length % 4)) % 4)
}

function decodeState(form: number, bytes: Buffer): string | undefined | null {
  switch (form) {
    case StateForm.None:
      return bytes.length === 0 ? undefined : null
    case StateForm.Padded:
      return padded(bytes.toString('base64url'))
    case StateForm.Unpadded:
      return bytes.toString('base64url')
    case StateForm.Text:
      return bytes.toString('utf8')
    default:
      return null
  }
}

/**
 * Upload URLs of the form `/v2/<name>/blobs/uploads/<uuid>?_portier=<token>`, where the token is
 * base64url of: version, session count, then per session the upstream id, its UUID (16 bytes when
 * it is a standard UUID) and its `_state` bytes; then an HMAC-SHA256 (first 16 bytes) over the
 * repository and all of that. The path's UUID is the first session's. Any instance with the same
 * secret reads the token; a changed byte, another repository or an unknown upstream reads as nothing.
 */
export class UploadTokens {
  private readonly key: Buffer
  private readonly byId = new Map<string, string>()

  constructor(secret: Buffer, upstreamNames: readonly string[]) {
    this.key = createHmac('sha256', secret).update('portier-upload-url-v1').digest()
    for (const name of upstreamNames) {
      const id = upstreamId(name).toString('hex')
      const other = this.byId.get(id)
      if (other !== undefined && other !== name) throw new Error(`upstream names "${other}" and "${name}" share a token id; rename one of them`)
      this.byId.set(id, name)
    }
  }

  /** The client's upload path and query for these sessions (the first one names the path). */
  clientPath(repository: string, sessions: readonly UpstreamSession[]): string {
    const first = sessions[0]
    if (!first) throw new Error('an upload URL needs at least one session')
    return `/v2/${repository}/blobs/uploads/${first.uuid}?${TOKEN_PARAM}=${this.encode(repository, sessions)}`
  }

  encode(repository: string, sessions: readonly UpstreamSession[]): string {
    if (sessions.length === 0 || sessions.length > 255) throw new Error('an upload token holds 1 to 255 sessions')
    const parts: Buffer[] = [Buffer.from([VERSION, sessions.length])]
    for (const session of sessions) {
      parts.push(upstreamId(session.upstream))
      if (uuidPattern.test(session.uuid)) {
        parts.push(Buffer.from([0]), Buffer.from(session.uuid.replace(/-/g, ''), 'hex'))
      } else {
        const text = Buffer.from(session.uuid, 'utf8')
        if (text.length === 0 || text.length > 255) throw new Error(`upload id of ${session.upstream} is ${text.length} bytes long`)
        parts.push(Buffer.from([text.length]), text)
      }
      const state = encodeState(session.state)
      if (state.bytes.length > 0xffff) throw new Error(`upload state of ${session.upstream} is too long`)
      const header = Buffer.alloc(3)
      header.writeUInt8(state.form, 0)
      header.writeUInt16BE(state.bytes.length, 1)
      parts.push(header, state.bytes)
    }
    const body = Buffer.concat(parts)
    return Buffer.concat([body, this.mac(repository, body)]).toString('base64url')
  }

  /** The sessions a client's upload URL names, or undefined when the token is missing, altered, or names an unknown upstream. */
  read(repository: string, uploadId: string | undefined, token: string | null): UpstreamSession[] | undefined {
    if (!token || token.length > MAX_TOKEN_CHARS || !/^[A-Za-z0-9_-]+$/.test(token)) return undefined
    const raw = Buffer.from(token, 'base64url')
    if (raw.length <= MAC_BYTES + 2) return undefined
    const body = raw.subarray(0, raw.length - MAC_BYTES)
    const mac = raw.subarray(raw.length - MAC_BYTES)
    if (!timingSafeEqual(mac, this.mac(repository, body))) return undefined
    const sessions = this.parse(body)
    if (!sessions || sessions[0]?.uuid !== uploadId) return undefined
    return sessions
  }

  private parse(body: Buffer): UpstreamSession[] | undefined {
    if (body[0] !== VERSION) return undefined
    const count = body[1] ?? 0
    let at = 2
    const sessions: UpstreamSession[] = []
    for (let index = 0; index < count; index++) {
      if (at + ID_BYTES + 1 > body.length) return undefined
      const upstream = this.byId.get(body.subarray(at, at + ID_BYTES).toString('hex'))
      at += ID_BYTES
      if (upstream === undefined) return undefined
      const uuidLength = body[at] as number
      at += 1
      let uuid: string
      if (uuidLength === 0) {
        if (at + 16 > body.length) return undefined
        const hex = body.subarray(at, at + 16).toString('hex')
        uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
        at += 16
      } else {
        if (at + uuidLength > body.length) return undefined
        uuid = body.subarray(at, at + uuidLength).toString('utf8')
        at += uuidLength
      }
      if (at + 3 > body.length) return undefined
      const form = body.readUInt8(at)
      const length = body.readUInt16BE(at + 1)
      at += 3
      if (at + length > body.length) return undefined
      const state = decodeState(form, body.subarray(at, at + length))
      at += length
      if (state === null) return undefined
      sessions.push(state === undefined ? { upstream, uuid } : { upstream, uuid, state })
    }
    return at === body.length && sessions.length > 0 ? sessions : undefined
  }

  private mac(repository: string, body: Buffer): Buffer {
    return createHmac('sha256', this.key).update(repository).update('\u0000').update(body).digest().subarray(0, MAC_BYTES)
  }
}

/** The session an upstream's upload Location (absolute or relative) names, or undefined when it is not an upload URL. */
export function sessionFromLocation(upstream: string, location: string): { repository: string; session: UpstreamSession } | undefined {
  let url: URL
  try {
    url = new URL(location, 'http://upstream.invalid/')
  } catch {
    return undefined
  }
  const match = uploadPath.exec(url.pathname)
  if (!match) return undefined
  const state = url.searchParams.get('_state')
  const session: UpstreamSession = { upstream, uuid: match[2] as string }
  if (state !== null) session.state = state
  return { repository: match[1] as string, session }
}

/** The upstream's own path and query for a session: its UUID and `_state`. */
export function sessionPath(repository: string, session: UpstreamSession): string {
  const query = session.state === undefined ? '' : `?${new URLSearchParams({ _state: session.state }).toString()}`
  return `/v2/${repository}/blobs/uploads/${session.uuid}${query}`
}

/** The client's request as the session's upstream must see it: its UUID and `_state` in place of Portier's token. */
export function sessionRequest(request: RegistryRequest, session: UpstreamSession): RegistryRequest {
  const params = new URLSearchParams(request.params)
  params.delete(TOKEN_PARAM)
  if (session.state === undefined) params.delete('_state')
  else params.set('_state', session.state)
  const path = `/v2/${request.repository ?? ''}/blobs/uploads/${session.uuid}`
  return { ...request, path, query: params.toString(), params, uploadId: session.uuid }
}

/**
 * The key that signs upload URLs: routing.secret when set, else the file, created with a random
 * key on first start. Instances behind one load balancer must share it.
 */
export function loadRoutingSecret(configured: string, file: string): { secret: Buffer; created: boolean } {
  return loadSecret(configured, file, 'routing.secret_file')
}
