// The JSON shapes of the web UI's API (/ui/api/...), shared by the server and the front end (type-only).

/** GET /ui/api/session, POST /ui/api/login. */
export interface SessionInfo {
  /** The account; '' when auth.mode is none. */
  user: string
  anonymous: boolean
  /** Send back as X-CSRF-Token on every POST and DELETE. */
  csrfToken: string
  expiresAt: string
  /** Whether this user sees the status panel. */
  admin: boolean
  /** host[:port] for `docker pull` lines, from server.public_url or the request's Host. */
  registryHost: string
  authMode: string
}

/** GET /ui/api/session when nobody is signed in (401 detail). */
export interface SignedOut {
  loginAvailable: boolean
  reason?: string
}

export interface RepositoryEntry {
  name: string
  canPush: boolean
  canDelete: boolean
}

/** GET /ui/api/repositories?q=&n=&last= */
export interface RepositoryPage {
  repositories: RepositoryEntry[]
  /** Pass as `last` for the next page; absent on the last page. */
  next?: string
}

/** One tag of a repository with what its manifest says. */
export interface TagSummary {
  tag: string
  digest: string
  mediaType: string
  kind: 'image' | 'index' | 'other'
  /** Sum of the compressed layer sizes (for an index: of every platform's image). */
  size?: number
  /** The image config's `created` (for an index: the newest platform image). */
  created?: string
  /** e.g. ["linux/amd64", "linux/arm64/v8"] */
  platforms: string[]
  /** Set when this tag's manifest could not be read; the other fields are then empty. */
  error?: string
}

/** GET /ui/api/tags?repository=&n=&last= */
export interface TagPage {
  repository: string
  tags: TagSummary[]
  /** How many tags the repository has in all. */
  total: number
  next?: string
  canDelete: boolean
  canPush: boolean
}

export interface LayerSummary {
  digest: string
  mediaType: string
  size: number
}

export interface HistoryEntry {
  created?: string
  createdBy?: string
  comment?: string
  emptyLayer: boolean
}

export interface ImageConfigSummary {
  digest: string
  created?: string
  platform?: string
  env: string[]
  entrypoint: string[]
  cmd: string[]
  workingDir?: string
  user?: string
  exposedPorts: string[]
  labels: Record<string, string>
  history: HistoryEntry[]
}

export interface PlatformManifest {
  digest: string
  mediaType: string
  size: number
  platform?: string
}

/** GET /ui/api/manifest?repository=&reference= */
export interface ManifestDetail {
  repository: string
  reference: string
  digest: string
  mediaType: string
  kind: 'image' | 'index' | 'other'
  /** Bytes of the manifest itself. */
  manifestSize: number
  /** Compressed size of the layers (images). */
  size?: number
  layers: LayerSummary[]
  config?: ImageConfigSummary
  /** The platform images of an index. */
  manifests: PlatformManifest[]
  canDelete: boolean
}

/** GET /ui/api/delete-plan?repository=&digest=: what a delete would remove. */
export interface DeletePlan {
  repository: string
  digest: string
  /** Every tag of the repository that points at the digest: all of them go with it. */
  tags: string[]
}

/** DELETE /ui/api/manifest?repository=&digest= */
export interface DeleteResult extends DeletePlan {
  deleted: true
}

export interface StatusUpstream {
  name: string
  url: string
  /** undefined: not checked (yet). */
  healthy?: boolean
  detail?: string
  since?: string
}

export interface StatusCertificate {
  names: string[]
  notAfter: string
  selfSigned?: boolean
}

export interface StatusPush {
  at: string
  user?: string
  repository: string
  reference?: string
}

/** GET /ui/api/status (admins only). */
export interface StatusSnapshot {
  upstreams: StatusUpstream[]
  certificates: StatusCertificate[]
  recentPushes: StatusPush[]
}

/** The registry's error body, which every failing /ui/api call answers with. */
export interface ErrorBody {
  errors: Array<{ code: string; message: string; detail?: unknown }>
}
