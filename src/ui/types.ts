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
  /** The password form. */
  loginAvailable: boolean
  reason?: string
  /** Single sign-on (ui.oidc), when configured. */
  sso?: SsoOffer
}

/** The single sign-on button of the login page. */
export interface SsoOffer {
  /** "Sign in with <label>". */
  label: string
  /** Where the button goes (a full-page navigation). */
  loginUrl: string
  /** False while the provider cannot be reached; `reason` says why. */
  available: boolean
  reason?: string
}

/** POST /ui/api/logout */
export interface SignOutResult {
  signedOut: true
  /** Single sign-on sessions: the provider's sign-out page, to end its session too. */
  endSessionUrl?: string
}

export interface RepositoryEntry {
  name: string
  canPush: boolean
  canDelete: boolean
  /** The remote registry this repository is a pull-through cache of (caches); absent for local repositories. */
  cachedFrom?: string
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

/** A webhook endpoint's health (events.endpoints). */
export interface StatusWebhook {
  name: string
  url: string
  disabled: boolean
  pending: number
  dead: number
  delivered: number
  failed: number
  /** Seconds since the endpoint last accepted an event; absent before the first. */
  lastSuccessAgeSeconds?: number
  /** Seconds it has been failing without a success; absent when it is not failing. */
  failingForSeconds?: number
}

/** GET /ui/api/status (admins only). */
export interface StatusSnapshot {
  upstreams: StatusUpstream[]
  certificates: StatusCertificate[]
  recentPushes: StatusPush[]
  /** Webhook endpoints; absent when none are configured. */
  webhooks?: StatusWebhook[]
  /** Garbage collection: the run in progress and the last runs (newest first). */
  gc?: StatusGc
}

/** One finished garbage collection, as the status panel shows it. */
export interface StatusGcRun {
  id: string
  finishedAt: string
  durationSeconds: number
  result: 'success' | 'failure'
  error?: string
  dryRun: boolean
  deleteUntagged: boolean
  trigger: string
  by?: string
  bytesFreed: number
  bytesAfter: number
  blobsDeleted: number
  manifestsDeleted: number
  blobsEligible: number
}

export interface StatusGc {
  running?: { phase: string; message: string }
  history: StatusGcRun[]
  schedule: string
}

/** DELETE /ui/api/repository: every manifest of a repository deleted; `gcRun` when a collection was started after. */
export interface RepositoryDeleteResult {
  repository: string
  tags: string[]
  manifests: string[]
  gcRun?: string
}

/** The registry's error body, which every failing /ui/api call answers with. */
/** GET /ui/api/audit: one entry of the audit trail (times ISO 8601). */
export interface AuditEntryView {
  id: number
  at: string
  action: string
  outcome: string
  status: number
  user?: string
  client: string
  userAgent?: string
  repository?: string
  tag?: string
  digest?: string
  size?: number
  sourceRepository?: string
  /** What the action was done to when it is no repository (an access token). */
  subject?: string
  requestId: string
}

/** GET /ui/api/audit?repo=&user=&since=&action=&limit= (administrators). */
export interface AuditPage {
  entries: AuditEntryView[]
}

export interface ErrorBody {
  errors: Array<{ code: string; message: string; detail?: unknown }>
}

/** GET /ui/api/maintenance: the banner's state for every visitor; administrators also get who, the drain and the writes in flight. */
export interface MaintenanceInfo {
  on: boolean
  message: string
  since?: string
  /** The expected end, when given. */
  until?: string
  by?: string
  drainUntil?: string
  inFlight?: { uploads: number; writes: number }
  /** Whether this visitor may switch it (PUT /ui/api/maintenance with { on, message?, retry_after? }). */
  canSwitch: boolean
}

/** GET /ui/api/retention (administrators): what retention would delete now, from its last dry run (`?refresh=1` runs a new one). */
export interface RetentionPreview {
  /** Whether retention.rules holds at least one rule; without one nothing is ever deleted. */
  configured: boolean
  /** When the dry run shown finished; absent before the first one. */
  ranAt?: string
  deletions: Array<{ repository: string; tags: string[]; digest: string; reason: string }>
  totals?: { repositories: number; tagsKept: number; tagsDeleted: number; manifestsDeleted: number }
  /** Why no new dry run could be made (one is running, the registry failed). */
  error?: string
}

/** One sample of the registry storage (GET /ui/api/usage, GET /admin/api/usage). */
export interface StorageSampleView {
  at: string
  /** Allocated on disk under the storage root (du). */
  diskBytes: number
  apparentBytes: number
  /** The distinct blobs every repository references, a layer shared by repositories counted once. */
  blobBytes: number
  repositories: number
  /** start, schedule (gc.usage_interval) or gc (after a collection). */
  reason: string
}

/** GET /ui/api/usage?since=30d (administrators): storage over time and the newest repository sizes. */
export interface StorageOverTime {
  /** Whether Portier can read the registry's storage (embedded registry, or gc.registry_config). */
  available: boolean
  /** Oldest first. */
  samples: StorageSampleView[]
  /** When the repository sizes were measured. */
  sizesAt?: string
  /** Largest first; a layer shared by several images of a repository is counted once. */
  repositories: Array<{ repository: string; bytes: number; blobs: number }>
}

/** GET /ui/api/pulls?repository=&days=30: manifest GETs per UTC day, oldest first, days without pulls as 0. */
export interface PullsPerDay {
  repository: string
  days: Array<{ day: string; pulls: number }>
  total: number
}

/** One access token as the "Access tokens" page lists it (never its secret). */
export interface AccessTokenEntry {
  id: string
  name: string
  /** A user, or robot$NAME. */
  owner: string
  robot: boolean
  /** The secret's last 4 characters. */
  hint: string
  scopes: string[]
  /** Groups of its owner recorded at creation (single sign-on, directory): the ACL matches them. */
  groups: string[]
  state: 'active' | 'expired' | 'revoked'
  createdAt: string
  createdBy: string
  expiresAt: string | null
  lastUsedAt: string | null
  lastUsedFrom: string | null
  revokedAt: string | null
  revokedBy: string | null
}

/** GET /ui/api/tokens: the signed-in user's tokens (an administrator's ?all=1: everyone's). */
export interface AccessTokenPage {
  tokens: AccessTokenEntry[]
  /** Administrators (ui.admin_users) see every token and make robot accounts. */
  admin: boolean
  /** e.g. "90d": the lifetime when none is chosen. */
  defaultExpiry: string
  /** e.g. "365d", or "" when a token may never expire. */
  maxExpiry: string
}

/** POST /ui/api/tokens: the new token with its secret, shown this once. */
export interface CreatedAccessToken extends AccessTokenEntry {
  token: string
}

/** GET /ui/api/access: the "Users & access" page for administrators. */
export interface AccessPage {
  users: {
    /** The htpasswd file's users; empty when Portier has no file (auth.mode none, external issuer). */
    names: string[]
    /** The file, or "" when there is none. */
    file: string
    writable: boolean
    /** Why users cannot be changed here (no file, read-only). */
    reason?: string
  }
  /** Groups of auth.groups in the configuration: read-only here. */
  configGroups: Array<{ name: string; members: string[] }>
  /** Groups made here (kept in the store). */
  groups: Array<{ name: string; members: string[]; updatedAt: string; updatedBy: string }>
  /** The rules of auth.acl, in order (first match wins): read-only here. */
  rules: Array<{ number: number; key: string; match: string; actions: string[]; comment?: string }>
  /** True when auth.acl is empty: the default rule lets every signed-in user do everything, so grants add nothing. */
  defaultRule: boolean
  /** Grants made here: they add to what the rules give (never take away). */
  grants: Array<{ id: number; kind: 'user' | 'group'; subject: string; repository: string; actions: string[]; createdAt: string; createdBy: string }>
  /** How soon other gateway instances see a change: "at once" (shared.redis) or "within 10s". */
  propagation: string
}

/** GET /ui/api/explain?user=&repository=: what the user may do on the repository, and through which rule or grant. */
export interface AccessExplanation {
  user: string
  repository: string
  /** The address rules with match.ip were checked against (the administrator's). */
  clientIp: string
  actions: Array<{ action: 'pull' | 'push' | 'delete'; granted: boolean; via: string[]; reason?: string }>
}
