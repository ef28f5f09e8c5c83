// Turns method + path into a registry operation, once, as data; nothing after this parses the URL.
import { RegistryError } from './errors.js'
import { isValidDigest, isValidReference, isValidRepository } from './names.js'

export type Action = 'pull' | 'push' | 'delete' | '*'

export interface Scope {
  type: 'repository' | 'registry'
  name: string
  actions: Action[]
}

export type Operation =
  | 'base'
  | 'catalog'
  | 'tags.list'
  | 'manifest.get'
  | 'manifest.head'
  | 'manifest.put'
  | 'manifest.delete'
  | 'blob.get'
  | 'blob.head'
  | 'blob.delete'
  | 'upload.start'
  | 'upload.monolithic'
  | 'upload.mount'
  | 'upload.status'
  | 'upload.chunk'
  | 'upload.finish'
  | 'upload.cancel'
  | 'referrers.list'

export interface RegistryRequest {
  op: Operation
  method: string
  /** Path as received (already checked to be safe), without the query. */
  path: string
  /** Raw query string without '?', passed upstream unchanged. */
  query: string
  params: URLSearchParams
  repository?: string
  /** Tag or digest for manifests, digest for blobs and referrers. */
  reference?: string
  uploadId?: string
  /** For cross-repository mounts: the source repository. */
  mountFrom?: string
  scopes: Scope[]
}

type Route = {
  pattern: RegExp
  methods: Partial<Record<string, Operation>>
  kind: 'manifest' | 'blob' | 'uploads' | 'upload' | 'tags' | 'referrers'
}

const routes: Route[] = [
  { pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, kind: 'manifest',
    methods: { GET: 'manifest.get', HEAD: 'manifest.head', PUT: 'manifest.put', DELETE: 'manifest.delete' } },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/$/, kind: 'uploads', methods: { POST: 'upload.start' } },
  { pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, kind: 'upload',
    methods: { GET: 'upload.status', PATCH: 'upload.chunk', PUT: 'upload.finish', DELETE: 'upload.cancel' } },
  { pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, kind: 'blob',
    methods: { GET: 'blob.get', HEAD: 'blob.head', DELETE: 'blob.delete' } },
  { pattern: /^\/v2\/(.+)\/tags\/list$/, kind: 'tags', methods: { GET: 'tags.list' } },
  { pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, kind: 'referrers', methods: { GET: 'referrers.list' } },
]

function actionsFor(method: string): Action[] {
  if (method === 'GET' || method === 'HEAD') return ['pull']
  if (method === 'DELETE') return ['delete']
  return ['pull', 'push']
}

// Encodings that would let a path mean something else after decoding: slash, backslash,
// dot (`%2e%2e` traversal), percent itself and control characters.
const forbiddenEncoding = /%(?:2f|5c|2e|25|[01][0-9a-f]|7f)/i
// Control characters, checked after decoding.
// eslint-disable-next-line no-control-regex
const controlCharacter = /[\u0000-\u001f\u007f]/

/** Decodes and checks a request path; throws PATH_INVALID for anything that could be ambiguous. */
export function safePath(rawPath: string): string {
  if (!rawPath.startsWith('/')) throw new RegistryError('PATH_INVALID', { reason: 'path must be absolute' })
  if (forbiddenEncoding.test(rawPath)) throw new RegistryError('PATH_INVALID', { reason: 'encoded separator, dot, percent or control character in path' })
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    throw new RegistryError('PATH_INVALID', { reason: 'malformed percent-encoding' })
  }
  if (controlCharacter.test(path)) throw new RegistryError('PATH_INVALID', { reason: 'control character in path' })
  if (path.includes('\\')) throw new RegistryError('PATH_INVALID', { reason: 'backslash in path' })
  if (path.includes('//')) throw new RegistryError('PATH_INVALID', { reason: 'empty path segment' })
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') throw new RegistryError('PATH_INVALID', { reason: 'dot segment in path' })
  }
  return path
}

/**
 * A manifest reference that is neither a tag nor a digest names no manifest: the OCI spec wants
 * 404 for reading or deleting a manifest that does not exist, and 400 only for a PUT that tries
 * to create one under that name.
 */
function invalidReference(method: string, reference: string): RegistryError {
  const detail = { reference: reference.slice(0, 300) }
  if (method !== 'PUT') return new RegistryError('MANIFEST_UNKNOWN', detail)
  return reference.includes(':') ? new RegistryError('DIGEST_INVALID', detail, {}, 'invalid digest') : new RegistryError('TAG_INVALID', detail)
}

/** Classifies one request. Throws RegistryError for paths and names that must not reach an upstream. */
export function classify(method: string, url: string): RegistryRequest {
  const queryAt = url.indexOf('?')
  const rawPath = queryAt === -1 ? url : url.slice(0, queryAt)
  const query = queryAt === -1 ? '' : url.slice(queryAt + 1)
  const path = safePath(rawPath)
  const params = new URLSearchParams(query)
  const base = { method, path, query, params }

  if (path === '/v2/' || path === '/v2') {
    if (method !== 'GET' && method !== 'HEAD') throw new RegistryError('UNSUPPORTED', { method })
    return { ...base, op: 'base', scopes: [] }
  }
  if (path === '/v2/_catalog') {
    if (method !== 'GET') throw new RegistryError('UNSUPPORTED', { method })
    return { ...base, op: 'catalog', scopes: [{ type: 'registry', name: 'catalog', actions: ['*'] }] }
  }

  for (const route of routes) {
    const match = route.pattern.exec(path)
    if (!match) continue
    const repository = match[1] as string
    const second = match[2]
    if (!isValidRepository(repository)) {
      throw new RegistryError('NAME_INVALID', { name: repository.slice(0, 300) }, {}, 'invalid repository name')
    }
    const op = route.methods[method]
    if (!op) throw new RegistryError('UNSUPPORTED', { method, path })
    const scopes: Scope[] = [{ type: 'repository', name: repository, actions: actionsFor(method) }]
    const request: RegistryRequest = { ...base, op, repository, scopes }

    switch (route.kind) {
      case 'manifest':
        if (!isValidReference(second as string)) throw invalidReference(method, second as string)
        request.reference = second
        break
      case 'blob':
      case 'referrers':
        if (!isValidDigest(second as string)) throw new RegistryError('DIGEST_INVALID', { digest: (second as string).slice(0, 300) })
        request.reference = second
        break
      case 'upload':
        if (!/^[A-Za-z0-9_.=-]{1,256}$/.test(second as string)) throw new RegistryError('BLOB_UPLOAD_INVALID', { uuid: second })
        request.uploadId = second
        break
      case 'uploads': {
        const from = params.get('from')
        const mount = params.get('mount')
        const digest = params.get('digest')
        if (mount !== null) {
          if (!isValidDigest(mount)) throw new RegistryError('DIGEST_INVALID', { digest: mount.slice(0, 300) })
          request.reference = mount
          if (from !== null) {
            if (!isValidRepository(from)) throw new RegistryError('NAME_INVALID', { name: from.slice(0, 300) })
            request.op = 'upload.mount'
            request.mountFrom = from
            scopes.push({ type: 'repository', name: from, actions: ['pull'] })
          }
        } else if (digest !== null) {
          if (!isValidDigest(digest)) throw new RegistryError('DIGEST_INVALID', { digest: digest.slice(0, 300) })
          request.op = 'upload.monolithic'
          request.reference = digest
        }
        break
      }
      case 'tags':
        break
    }
    return request
  }
  throw new RegistryError('NOT_FOUND', { path })
}
