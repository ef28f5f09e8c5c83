// Prometheus metrics: one registry, every metric Portier exports, with small bounded label sets.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Operation } from '../registry/classify.js'
import { INTERNAL_ERROR_KINDS, type InternalErrorKind } from './internal-errors.js'

export interface MetricsOptions {
  /** Adds a `repository` label to the push/pull/byte counters. */
  perRepository: boolean
  /** Distinct repositories labelled before the rest are counted as "other". */
  maxRepositories: number
}

/** What the record step knows about one finished request. */
export interface RequestMetric {
  operation: Operation | 'token' | 'ui' | 'unknown'
  method: string
  status: number
  seconds: number
  repository?: string
  bytesReceived: number
  bytesSent: number
}

export interface CertificateInfo {
  names: string[]
  notAfter: Date
}

export type AuthOutcome = 'success' | 'no_credentials' | 'invalid_credentials' | 'locked_out' | 'denied' | 'busy'
export type UpstreamErrorKind = 'connect' | 'timeout' | 'reset' | 'other'

/** Durations from a cached HEAD (~1 ms) to a multi-GiB layer over a slow link (~30 min). */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800]
const OTHER = 'other'

export class Metrics {
  readonly registry = new Registry()
  private readonly repositories = new Set<string>()
  private certificates: () => readonly CertificateInfo[] = () => []

  private readonly requests: Counter<'operation' | 'method' | 'status_class'>
  private readonly duration: Histogram<'operation'>
  private readonly received: Counter<'operation'>
  private readonly sent: Counter<'operation'>
  private readonly blobsPushed: Counter<string>
  private readonly blobsPulled: Counter<string>
  private readonly blobsDeleted: Counter<string>
  private readonly manifestsPushed: Counter<string>
  private readonly manifestsPulled: Counter<string>
  private readonly manifestsDeleted: Counter<string>
  private readonly repositoryReceived: Counter<'repository'> | undefined
  private readonly repositorySent: Counter<'repository'> | undefined
  readonly inFlight: Gauge
  readonly openConnections: Gauge
  private readonly auth: Counter<'mode' | 'result'>
  private readonly passwordVerifications: Counter
  private readonly passwordChecksRefused: Counter
  private readonly limitRejections: Counter<'limit'>
  private readonly rateLimitedRequests: Counter<'rule' | 'by'>
  readonly upstreamUp: Gauge<'upstream'>
  readonly upstreamDuration: Histogram<'upstream'>
  readonly upstreamErrors: Counter<'upstream' | 'kind'>
  readonly upstreamInFlight: Gauge<'upstream'>
  readonly healthChecks: Counter<'upstream' | 'result'>
  readonly upstreamFailovers: Counter<'upstream' | 'reason'>
  readonly mirrorBranchFailures: Counter<'upstream' | 'operation'>
  readonly acmeCertificates: Counter<'kind'>
  readonly acmeFailures: Counter
  private readonly internalErrors: Counter<'kind'>
  readonly manifestCacheHits: Counter
  readonly manifestCacheMisses: Counter
  readonly manifestCacheBytes: Gauge
  readonly blobStorageReads: Counter<'upstream' | 'result'>
  readonly blobStorageBytes: Counter<'upstream'>
  readonly blobStorageUploads: Counter<'upstream' | 'result'>
  readonly blobStorageUploadBytes: Counter<'upstream'>
  readonly blobStorageUploadDigests: Counter<'source'>
  readonly tagCacheHits: Counter
  readonly tagCacheMisses: Counter
  readonly tagCacheEntries: Gauge

  constructor(private readonly options: MetricsOptions) {
    const registers = [this.registry]
    collectDefaultMetrics({ register: this.registry })
    this.requests = new Counter({
      name: 'portier_requests_total',
      help: 'Requests answered, by registry operation, method and status class (2xx, 4xx, ...; 499 = client went away).',
      labelNames: ['operation', 'method', 'status_class'],
      registers,
    })
    this.duration = new Histogram({
      name: 'portier_request_duration_seconds',
      help: 'Time from request start to the end of the response, by registry operation.',
      labelNames: ['operation'],
      buckets: REQUEST_BUCKETS,
      registers,
    })
    this.received = new Counter({ name: 'portier_received_bytes_total', help: 'Request body bytes received from clients and passed upstream, by operation.', labelNames: ['operation'], registers })
    this.sent = new Counter({ name: 'portier_sent_bytes_total', help: 'Response body bytes sent to clients, by operation.', labelNames: ['operation'], registers })
    const repo = options.perRepository ? ['repository'] : []
    this.blobsPushed = new Counter({ name: 'portier_blobs_pushed_total', help: 'Blob uploads completed (201 Created).', labelNames: repo, registers })
    this.blobsPulled = new Counter({ name: 'portier_blobs_pulled_total', help: 'Blob downloads answered with 200 or 206.', labelNames: repo, registers })
    this.blobsDeleted = new Counter({ name: 'portier_blobs_deleted_total', help: 'Blobs deleted (202 Accepted).', labelNames: repo, registers })
    this.manifestsPushed = new Counter({ name: 'portier_manifests_pushed_total', help: 'Manifests stored (201 Created).', labelNames: repo, registers })
    this.manifestsPulled = new Counter({ name: 'portier_manifests_pulled_total', help: 'Manifests downloaded with GET (200); HEAD checks are not counted.', labelNames: repo, registers })
    this.manifestsDeleted = new Counter({ name: 'portier_manifests_deleted_total', help: 'Manifests deleted (202 Accepted).', labelNames: repo, registers })
    if (options.perRepository) {
      this.repositoryReceived = new Counter({ name: 'portier_repository_received_bytes_total', help: 'Request body bytes received, by repository.', labelNames: ['repository'], registers })
      this.repositorySent = new Counter({ name: 'portier_repository_sent_bytes_total', help: 'Response body bytes sent, by repository.', labelNames: ['repository'], registers })
    }
    this.inFlight = new Gauge({ name: 'portier_requests_in_flight', help: 'Requests being handled now.', registers })
    this.openConnections = new Gauge({ name: 'portier_open_connections', help: 'Client connections open on the main listener.', registers })
    this.auth = new Counter({
      name: 'portier_auth_attempts_total',
      help: 'Authentication and authorization outcomes, by auth mode and result (success, no_credentials, invalid_credentials, locked_out, denied, busy: too many password checks waiting).',
      labelNames: ['mode', 'result'],
      registers,
    })
    this.passwordVerifications = new Counter({
      name: 'portier_password_verifications_total',
      help: 'Passwords compared with a stored hash (bcrypt on Node\'s thread pool; the decoy run for unknown users included). Cached credentials are not compared again.',
      registers,
    })
    this.passwordChecksRefused = new Counter({
      name: 'portier_password_checks_refused_total',
      help: 'Password checks refused with 503 because auth.password_checks.queue was full.',
      registers,
    })
    this.limitRejections = new Counter({ name: 'portier_limit_rejections_total', help: 'Requests refused or cut by a limit, by limit (blob_max_bytes, manifest_max_bytes, max_exchanges_per_user, max_exchanges_per_address, max_connections, min_rate).', labelNames: ['limit'], registers })
    this.rateLimitedRequests = new Counter({ name: 'portier_rate_limited_total', help: 'Requests refused with 429 by a request rate limit (limits.rate), by rule (its name, or rate[index]) and by what the bucket counts (user, or address for anonymous callers).', labelNames: ['rule', 'by'], registers })
    this.upstreamUp = new Gauge({ name: 'portier_upstream_up', help: '1 when the upstream passes its health checks, 0 when it is marked down.', labelNames: ['upstream'], registers })
    this.upstreamDuration = new Histogram({
      name: 'portier_upstream_response_seconds',
      help: 'Time from sending a request upstream to its response headers.',
      labelNames: ['upstream'],
      buckets: REQUEST_BUCKETS,
      registers,
    })
    this.upstreamErrors = new Counter({ name: 'portier_upstream_errors_total', help: 'Failed upstream requests, by kind (connect, timeout, reset, other).', labelNames: ['upstream', 'kind'], registers })
    this.upstreamInFlight = new Gauge({ name: 'portier_upstream_requests_in_flight', help: 'Requests sent to the upstream and not yet complete.', labelNames: ['upstream'], registers })
    const certificates = (): readonly CertificateInfo[] => this.certificates()
    new Gauge({
      name: 'portier_tls_certificate_expiry_timestamp_seconds',
      help: 'When each served certificate expires (Unix time), by its first name.',
      labelNames: ['name'],
      registers,
      collect() {
        this.reset()
        for (const certificate of certificates()) this.set({ name: certificate.names[0] ?? 'unnamed' }, Math.floor(certificate.notAfter.getTime() / 1000))
      },
    })
    this.acmeCertificates = new Counter({ name: 'portier_acme_certificates_total', help: 'Certificates obtained from the ACME CA, by kind (issued: first one, renewed).', labelNames: ['kind'], registers })
    this.acmeFailures = new Counter({ name: 'portier_acme_failures_total', help: 'Failed ACME orders and renewals (each is retried with backoff).', registers })
    this.manifestCacheHits = new Counter({ name: 'portier_manifest_cache_hits_total', help: 'Manifest GET/HEAD by digest answered from memory (cache.manifests).', registers })
    this.manifestCacheMisses = new Counter({ name: 'portier_manifest_cache_misses_total', help: 'Manifest GET/HEAD by digest the cache could not answer (sent upstream).', registers })
    this.manifestCacheBytes = new Gauge({ name: 'portier_manifest_cache_bytes', help: 'Manifest bytes held in memory (cache.manifests).', registers })
    this.blobStorageReads = new Counter({
      name: 'portier_blob_storage_reads_total',
      help: 'Blob GET/HEAD for an upstream with storage: answered from its storage (result 200, 206, 416) or left to the registry (no_link, other_link, no_file, io_error, not_readable, range).',
      labelNames: ['upstream', 'result'],
      registers,
    })
    this.blobStorageBytes = new Counter({ name: 'portier_blob_storage_bytes_total', help: 'Blob bytes sent from an upstream\'s storage.', labelNames: ['upstream'], registers })
    this.blobStorageUploads = new Counter({
      name: 'portier_blob_storage_uploads_total',
      help: 'Upload requests on sessions Portier holds in an upstream\'s storage (storage_uploads), by status (201 is a committed blob).',
      labelNames: ['upstream', 'result'],
      registers,
    })
    this.blobStorageUploadBytes = new Counter({ name: 'portier_blob_storage_upload_bytes_total', help: 'Blob bytes written into an upstream\'s storage by uploads.', labelNames: ['upstream'], registers })
    this.blobStorageUploadDigests = new Counter({
      name: 'portier_blob_storage_upload_digests_total',
      help: 'Blob commits into an upstream\'s storage by where the sha256 came from: running (this process hashed the upload as it arrived), peer (the worker or instance that did, asked through the primary or over Redis), read (the data read again).',
      labelNames: ['source'],
      registers,
    })
    this.tagCacheHits = new Counter({ name: 'portier_tag_cache_hits_total', help: 'Manifest HEAD/GET by tag answered from the tag cache (cache.tags) without the upstream.', registers })
    this.tagCacheMisses = new Counter({ name: 'portier_tag_cache_misses_total', help: 'Manifest HEAD/GET by tag the tag cache could not answer (sent upstream).', registers })
    this.tagCacheEntries = new Gauge({ name: 'portier_tag_cache_entries', help: 'Tag resolutions held (cache.tags; expired ones count until looked at or pushed out).', registers })
    this.healthChecks = new Counter({ name: 'portier_upstream_health_checks_total', help: 'Active health checks, by result (success, failure).', labelNames: ['upstream', 'result'], registers })
    this.upstreamFailovers = new Counter({
      name: 'portier_upstream_failovers_total',
      help: 'Reads moved on from this upstream to another, by reason (connect: unreachable; not_found: a mirror lacked it).',
      labelNames: ['upstream', 'reason'],
      registers,
    })
    this.internalErrors = new Counter({
      name: 'portier_internal_errors_total',
      help: 'Errors Portier did not expect, by kind (request_handler, admin_handler, health_check: caught and answered 500; uncaught_exception, unhandled_rejection: the process drains and exits).',
      labelNames: ['kind'],
      registers,
    })
    // Every kind is exported from the start, so an alert on any increase sees the first one.
    for (const kind of INTERNAL_ERROR_KINDS) this.internalErrors.inc({ kind }, 0)
    this.mirrorBranchFailures = new Counter({
      name: 'portier_mirror_branch_failures_total',
      help: 'Mirrored writes this upstream failed its part of (routing.strategy mirror), by registry operation.',
      labelNames: ['upstream', 'operation'],
      registers,
    })
  }

  /** The repository label value: the name itself while under the cap, then "other". */
  private repositoryLabel(repository: string): string {
    if (this.repositories.has(repository)) return repository
    if (this.repositories.size >= this.options.maxRepositories) return OTHER
    this.repositories.add(repository)
    return repository
  }

  request(metric: RequestMetric): void {
    const { operation, status } = metric
    this.requests.inc({ operation, method: metric.method, status_class: statusClass(status) })
    this.duration.observe({ operation }, metric.seconds)
    if (metric.bytesReceived > 0) this.received.inc({ operation }, metric.bytesReceived)
    if (metric.bytesSent > 0) this.sent.inc({ operation }, metric.bytesSent)
    let labels = {}
    if (this.options.perRepository && metric.repository) {
      const repository = this.repositoryLabel(metric.repository)
      labels = { repository }
      if (metric.bytesReceived > 0) this.repositoryReceived?.inc(labels, metric.bytesReceived)
      if (metric.bytesSent > 0) this.repositorySent?.inc(labels, metric.bytesSent)
    }
    this.registryCounter(operation, status)?.inc(labels)
  }

  /** Which push/pull/delete counter a successful request adds to, if any. */
  private registryCounter(operation: RequestMetric['operation'], status: number): Counter<string> | undefined {
    switch (operation) {
      case 'upload.finish':
      case 'upload.monolithic':
        return status === 201 ? this.blobsPushed : undefined
      case 'blob.get':
        return status === 200 || status === 206 ? this.blobsPulled : undefined
      case 'blob.delete':
        return status === 202 ? this.blobsDeleted : undefined
      case 'manifest.put':
        return status === 201 ? this.manifestsPushed : undefined
      case 'manifest.get':
        return status === 200 ? this.manifestsPulled : undefined
      case 'manifest.delete':
        return status === 202 ? this.manifestsDeleted : undefined
      default:
        return undefined
    }
  }

  /** Where the served certificates come from (read at every scrape). */
  watchCertificates(list: () => readonly CertificateInfo[]): void {
    this.certificates = list
  }

  authOutcome(mode: string, result: AuthOutcome): void {
    this.auth.inc({ mode, result })
  }

  passwordVerified(): void {
    this.passwordVerifications.inc()
  }

  passwordCheckRefused(): void {
    this.passwordChecksRefused.inc()
  }

  internalError(kind: InternalErrorKind): void {
    this.internalErrors.inc({ kind })
  }

  limitRejected(limit: string): void {
    this.limitRejections.inc({ limit })
  }

  rateLimited(rule: string, by: 'user' | 'address'): void {
    this.rateLimitedRequests.inc({ rule, by })
  }

  /** The text /metrics answers: this registry's, or what exposeWith() set (server.workers: every worker's sum). */
  async exposition(): Promise<{ contentType: string; body: string }> {
    if (this.exposer) return this.exposer()
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }

  exposeWith(exposer: () => Promise<{ contentType: string; body: string }>): void {
    this.exposer = exposer
  }

  private exposer: (() => Promise<{ contentType: string; body: string }>) | undefined
}

function statusClass(status: number): string {
  if (status === 499) return '499'
  return `${Math.floor(status / 100)}xx`
}
