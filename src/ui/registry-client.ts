// The web UI's calls to the upstream registry: through the gateway's own upstream pools, with the upstream's credentials.
import { createHash } from 'node:crypto'
import { request as undiciRequest } from 'undici'
import type { Readable } from 'node:stream'
import { classify, type Scope } from '../registry/classify.js'
import { isRegistryErrorCode, RegistryError } from '../registry/errors.js'
import type { Upstream, UpstreamSet } from '../upstreams/upstreams.js'
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

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Readable & { dump(): Promise<void> }
}

async function readDocument(body: Readable, max: number): Promise<Buffer> {
  const tooLarge = (): RegistryError => new RegistryError('BAD_GATEWAY', { reason: `the registry sent more than ${max} bytes for a document` })
  return await readCapped(body, { maxBytes: max, tooLarge, rest: 'destroy' })
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
  return new RegistryError('UNAVAILABLE', { reason: error instanceof Error ? error.message : String(error) })
}

/** Mints a token for an upstream that verifies Portier's tokens (see AuthSetup.issueServiceToken); the UI checks the user's access before it calls. */
export type ServiceTokens = (access: Scope[]) => Promise<{ token: string; expiresIn: number }>

export interface RegistryClientOptions {
  serviceTokens?: ServiceTokens
  /** Upstreams hold different repositories (routing by-repository or mirror): the catalog is merged from all. */
  catalogFromAll?: boolean
  /** Every upstream holds a copy (routing mirror): a delete goes to each, as the gateway sends a client's. */
  deleteOnAll?: boolean
}

export function createRegistryClient(upstreams: UpstreamSet, options: RegistryClientOptions = {}): RegistryClient {
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

  /** One call to `upstream`, or to the upstream that would serve the same request from a client. */
  async function call(method: 'GET' | 'HEAD' | 'DELETE', path: string, accept?: string, to?: Upstream): Promise<Answer> {
    const request = classify(method, path)
    const upstream = to ?? upstreams.pick(request)
    const headers: Record<string, string> = {}
    // An upstream that verifies Portier's tokens gets one; otherwise its own credentials, if any.
    const bearer = upstream.forwardAuthorization ? await bearerFor(request.scopes) : undefined
    if (bearer) headers.authorization = bearer
    else if (upstream.authorization) headers.authorization = upstream.authorization
    if (accept) headers.accept = accept
    try {
      const answer = await upstream.pool.request({ origin: upstream.origin, method, path, headers })
      return { status: answer.statusCode, headers: answer.headers, body: answer.body }
    } catch (error) {
      throw unreachable(error)
    }
  }

  const manifestPath = (repository: string, reference: string): string => `/v2/${repository}/manifests/${reference}`

  return {
    async catalog(last, n = CATALOG_PAGE) {
      const query = new URLSearchParams({ n: String(n) })
      if (last !== undefined) query.set('last', last)
      const page = async (upstream?: Upstream): Promise<{ repositories: string[]; more: boolean }> => {
        const answer = await call('GET', `/v2/_catalog?${query}`, undefined, upstream)
        if (answer.status !== 200) throw await failure(answer, 'the catalog')
        const parsed = JSON.parse((await readDocument(answer.body, MAX_DOCUMENT_BYTES)).toString('utf8')) as { repositories?: unknown }
        const repositories = Array.isArray(parsed.repositories) ? parsed.repositories.filter((name): name is string => typeof name === 'string') : []
        return { repositories, more: header(answer.headers, 'link') !== undefined }
      }
      if (!options.catalogFromAll || upstreams.all.length < 2) return page()
      // Each upstream's first n names after `last` together hold the first n of the union.
      const pages = await Promise.allSettled(upstreams.all.map((upstream) => page(upstream)))
      const answered = pages.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []))
      if (answered.length === 0) throw (pages[0] as PromiseRejectedResult).reason
      const union = [...new Set(answered.flatMap((result) => result.repositories))].sort()
      return { repositories: union.slice(0, n), more: union.length > n || answered.some((result) => result.more) }
    },

    async tags(repository) {
      const answer = await call('GET', `/v2/${repository}/tags/list`)
      if (answer.status === 404) {
        await answer.body.dump()
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
      await answer.body.dump()
      if (answer.status === 404) return undefined
      if (answer.status !== 200) throw await failure(answer, `manifest ${repository}:${tag}`)
      return header(answer.headers, 'docker-content-digest')
    },

    async blobJson(repository, digest) {
      let answer = await call('GET', `/v2/${repository}/blobs/${digest}`)
      const location = header(answer.headers, 'location')
      if ((answer.status === 307 || answer.status === 302) && location && /^https?:\/\//.test(location)) {
        // Storage backends that redirect blob downloads (S3, GCS): fetch from there, without our credentials.
        await answer.body.dump()
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
      const deleteOn = async (upstream?: Upstream): Promise<void> => {
        const answer = await call('DELETE', manifestPath(repository, digest), undefined, upstream)
        if (answer.status === 202 || answer.status === 200) {
          await answer.body.dump()
          return
        }
        throw await failure(answer, `delete of ${repository}@${digest}`)
      }
      if (!options.deleteOnAll || upstreams.all.length < 2) return deleteOn()
      const results = await Promise.allSettled(upstreams.all.map((upstream) => deleteOn(upstream)))
      const errors = results.flatMap((result) => (result.status === 'rejected' ? [result.reason as unknown] : []))
      // A mirror that never had the manifest is not a failure, unless none had it.
      const unknown = (error: unknown): boolean => error instanceof RegistryError && (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NOT_FOUND')
      const real = errors.filter((error) => !unknown(error))
      if (real.length > 0) throw real[0]
      if (errors.length === results.length) throw errors[0]
    },
  }
}
