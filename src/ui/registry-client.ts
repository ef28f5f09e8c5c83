// The web UI's calls to the registry: routed and forwarded exactly as a client's request would be (the same strategy, failover, merged catalog and mirrored deletes), with the upstream's credentials.
import { createHash } from 'node:crypto'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { request as undiciRequest } from 'undici'
import type { Readable } from 'node:stream'
import { classify, type Scope } from '../registry/classify.js'
import { isRegistryErrorCode, RegistryError } from '../registry/errors.js'
import type { ClientView } from '../forward/headers.js'
import type { RouteContext } from '../forward/forward.js'
import type { InternalAnswer } from '../routing/router.js'
import { readCapped } from '../lib/body.js'
import { BoundedCache } from '../lib/bounded-cache.js'

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
] as const

/** Manifests and image configs are small; anything larger than this is not read into memory. */
const MAX_DOCUMENT_BYTES = 8 * 1024 * 1024
const CATALOG_PAGE = 1000

export interface FetchedManifest {
  digest: string
  mediaType: string
  bytes: number
  body: unknown
}

export interface RegistryClient {
  /** Up to `n` repository names after `last`, and whether the registry has more. */
  catalog(last: string | undefined, n?: number): Promise<{ repositories: string[]; more: boolean }>
  /** Every tag of a repository ([] when the repository does not exist). */
  tags(repository: string): Promise<string[]>
  manifest(repository: string, reference: string): Promise<FetchedManifest>
  /** The digest a tag points at, or undefined when the tag is gone. */
  digestOf(repository: string, tag: string): Promise<string | undefined>
  /** A small JSON blob (an image config). */
  blobJson(repository: string, digest: string): Promise<unknown>
  /** DELETE /v2/<repository>/manifests/<digest>; the registry's refusal comes back as a RegistryError. */
  deleteManifest(repository: string, digest: string): Promise<void>
}

type Answer = InternalAnswer

async function readDocument(body: Readable, max: number): Promise<Buffer> {
  const tooLarge = (): RegistryError => new RegistryError('BAD_GATEWAY', { reason: `the registry sent more than ${max} bytes for a document` })
  return await readCapped(body, { maxBytes: max, tooLarge, rest: 'destroy' })
}

/** Reads the rest of an answer whose body is not wanted. */
async function dump(body: Readable): Promise<void> {
  body.on('error', () => undefined)
  body.resume()
  await new Promise<void>((resolve) => {
    if (body.readableEnded || body.destroyed) return resolve()
    body.once('end', resolve)
    body.once('close', resolve)
  })
}

function header(headers: Answer['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** Turns a registry's error answer into the same error for the UI's caller (its code when Portier knows it). */
async function failure(answer: Answer, what: string): Promise<RegistryError> {
  let code: string | undefined
  let message: string | undefined
  try {
    const parsed = JSON.parse((await readDocument(answer.body, 64 * 1024)).toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> }
    code = parsed.errors?.[0]?.code
    message = parsed.errors?.[0]?.message
  } catch {
    // Not JSON: the status decides.
  }
  if (answer.status === 401) {
    return new RegistryError('BAD_GATEWAY', { reason: `the registry asked for credentials on ${what}; give the upstream a username and password in Portier's config` })
  }
  if (code !== undefined && isRegistryErrorCode(code) && code !== 'UNAUTHORIZED') {
    return new RegistryError(code, { upstream: message ?? code, status: answer.status })
  }
  if (answer.status === 404) return new RegistryError('NOT_FOUND', { what })
  if (answer.status === 405) return new RegistryError('UNSUPPORTED', { what, status: 405 })
  return new RegistryError('BAD_GATEWAY', { what, status: answer.status, ...(code ? { upstream: code } : {}) })
}

function unreachable(error: unknown): RegistryError {
  if (error instanceof RegistryError) return error
  return new RegistryError('UNAVAILABLE', { reason: error instanceof Error ? error.message : String(error) }, {}, undefined, { cause: error })
}

/** Mints a token for an upstream that verifies Portier's tokens (see AuthSetup.issueServiceToken); the UI checks the user's access before it calls. */
export type ServiceTokens = (access: Scope[]) => Promise<{ token: string; expiresIn: number }>

/** Serves a request the gateway makes for itself: the router's `answer`. */
export type RoutedAnswer = (context: RouteContext) => Promise<InternalAnswer>

export interface RegistryClientOptions {
  serviceTokens?: ServiceTokens
}

/** How the UI's own requests look to the forwarding: a local caller (no client address to pass on). */
const UI_CALLER: ClientView = {
  peer: '127.0.0.1',
  clientIp: '127.0.0.1',
  forwardedFor: '127.0.0.1',
  proto: 'https',
  host: 'portier-ui',
  publicOrigin: 'https://portier-ui.invalid',
}

/** A request with only the headers the UI sends, already complete: forwarding reads its headers, never a body. */
function uiRequest(method: string, path: string, headers: Record<string, string>): IncomingMessage {
  const req = new IncomingMessage(new Socket())
  req.method = method
  req.url = path
  req.headers = headers
  req.complete = true
  req.push(null)
  return req
}

export function createRegistryClient(answer: RoutedAnswer, options: RegistryClientOptions = {}): RegistryClient {
  const { serviceTokens } = options
  const tokens = new BoundedCache<string, { authorization: string; until: number }>({ max: 1000 })

  /** Bearer credentials for exactly the scopes of one call, reused until shortly before they expire. */
  async function bearerFor(scopes: Scope[]): Promise<string | undefined> {
    if (!serviceTokens) return undefined
    const key = scopes.map((scope) => `${scope.type}:${scope.name}:${scope.actions.join(',')}`).join(' ')
    const cached = tokens.get(key)
    if (cached && cached.until > Date.now()) return cached.authorization
    const issued = await serviceTokens(scopes.map((scope) => ({ ...scope, actions: [...scope.actions] })))
    const entry = { authorization: `Bearer ${issued.token}`, until: Date.now() + Math.max(0, issued.expiresIn - 15) * 1000 }
    tokens.set(key, entry)
    return entry.authorization
  }

  /**
   * One call, routed as a client's: an upstream that verifies Portier's tokens gets one (the
   * forwarding passes it only to upstreams with forward_authorization); others get their own credentials.
   */
  async function call(method: 'GET' | 'HEAD' | 'DELETE', path: string, accept?: string): Promise<Answer> {
    const request = classify(method, path)
    const headers: Record<string, string> = {}
    const bearer = await bearerFor(request.scopes)
    if (bearer) headers.authorization = bearer
    if (accept) headers.accept = accept
    const req = uiRequest(method, path, headers)
    try {
      return await answer({ request, req, res: new ServerResponse(req), client: UI_CALLER, limit: undefined, bytes: { received: 0, sent: 0 } })
    } catch (error) {
      throw unreachable(error)
    }
  }

  const manifestPath = (repository: string, reference: string): string => `/v2/${repository}/manifests/${reference}`

  return {
    async catalog(last, n = CATALOG_PAGE) {
      const query = new URLSearchParams({ n: String(n) })
      if (last !== undefined) query.set('last', last)
      // Routing decides: one upstream's own pages, or the catalog merged over several (with its page-boundary rule).
      const answered = await call('GET', `/v2/_catalog?${query}`)
      if (answered.status !== 200) throw await failure(answered, 'the catalog')
      const parsed = JSON.parse((await readDocument(answered.body, MAX_DOCUMENT_BYTES)).toString('utf8')) as { repositories?: unknown }
      const repositories = Array.isArray(parsed.repositories) ? parsed.repositories.filter((name): name is string => typeof name === 'string') : []
      return { repositories, more: header(answered.headers, 'link') !== undefined }
    },

    async tags(repository) {
      const answer = await call('GET', `/v2/${repository}/tags/list`)
      if (answer.status === 404) {
        await dump(answer.body)
        return []
      }
      if (answer.status !== 200) throw await failure(answer, `the tags of ${repository}`)
      const parsed = JSON.parse((await readDocument(answer.body, MAX_DOCUMENT_BYTES)).toString('utf8')) as { tags?: unknown }
      return Array.isArray(parsed.tags) ? parsed.tags.filter((tag): tag is string => typeof tag === 'string') : []
    },

    async manifest(repository, reference) {
      const answer = await call('GET', manifestPath(repository, reference), MANIFEST_TYPES.join(', '))
      if (answer.status !== 200) throw await failure(answer, `manifest ${repository}:${reference}`)
      const bytes = await readDocument(answer.body, MAX_DOCUMENT_BYTES)
      let body: unknown
      try {
        body = JSON.parse(bytes.toString('utf8'))
      } catch {
        throw new RegistryError('MANIFEST_INVALID', { reason: 'the registry returned a manifest that is not JSON' })
      }
      const declaredType = (body as { mediaType?: unknown }).mediaType
      const contentType = header(answer.headers, 'content-type')?.split(';')[0]?.trim()
      return {
        digest: header(answer.headers, 'docker-content-digest') ?? `sha256:${createHash('sha256').update(bytes).digest('hex')}`,
        mediaType: typeof declaredType === 'string' ? declaredType : contentType ?? 'application/octet-stream',
        bytes: bytes.length,
        body,
      }
    },

    async digestOf(repository, tag) {
      const answer = await call('HEAD', manifestPath(repository, tag), MANIFEST_TYPES.join(', '))
      await dump(answer.body)
      if (answer.status === 404) return undefined
      if (answer.status !== 200) throw await failure(answer, `manifest ${repository}:${tag}`)
      return header(answer.headers, 'docker-content-digest')
    },

    async blobJson(repository, digest) {
      let answer = await call('GET', `/v2/${repository}/blobs/${digest}`)
      const location = header(answer.headers, 'location')
      if ((answer.status === 307 || answer.status === 302) && location && /^https?:\/\//.test(location)) {
        // Storage backends that redirect blob downloads (S3, GCS): fetch from there, without our credentials.
        await dump(answer.body)
        try {
          const redirected = await undiciRequest(location, { method: 'GET' })
          answer = { status: redirected.statusCode, headers: redirected.headers, body: redirected.body }
        } catch (error) {
          throw unreachable(error)
        }
      }
      if (answer.status !== 200) throw await failure(answer, `blob ${digest}`)
      const bytes = await readDocument(answer.body, MAX_DOCUMENT_BYTES)
      try {
        return JSON.parse(bytes.toString('utf8')) as unknown
      } catch {
        throw new RegistryError('BLOB_UNKNOWN', { reason: `${digest} is not a JSON document` })
      }
    },

    async deleteManifest(repository, digest) {
      // Routing decides: one upstream, or every mirror under routing.mirror.require.
      const answered = await call('DELETE', manifestPath(repository, digest))
      if (answered.status === 202 || answered.status === 200) {
        await dump(answered.body)
        return
      }
      throw await failure(answered, `delete of ${repository}@${digest}`)
    },
  }
}
