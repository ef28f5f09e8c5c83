// The pipeline's last step: one access-log line and one metrics update per request, written when it ends.
import { randomUUID } from 'node:crypto'
import type { RegistryRequest } from '../registry/classify.js'
import { causeChain } from '../errors/cause.js'
import type { RegistryError } from '../registry/errors.js'
import type { Logger } from './log.js'
import type { Metrics } from './metrics.js'
import type { RecentPushes } from './recent.js'
import { stateOffset } from '../uploads/state.js'

export interface FinishedRequest {
  requestId: string
  method: string
  /** Undefined when the request never became a registry operation (bad path, token endpoint). */
  request: RegistryRequest | undefined
  /** Set for requests outside the registry API, e.g. "token". */
  route?: 'token' | 'ui'
  status: number
  seconds: number
  clientIp: string
  user: string | undefined
  upstream: string | undefined
  bytesReceived: number
  bytesSent: number
  failure: RegistryError | undefined
  /** The Docker-Content-Digest the upstream answered with (pushed blob or manifest, pulled manifest). */
  contentDigest?: string | undefined
  /** Whether the request carried an Authorization header. */
  credentialsSent?: boolean
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/** The client's X-Request-Id when it is a sane token, else a fresh one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header
  return value !== undefined && REQUEST_ID.test(value) ? value : randomUUID()
}

export class Recorder {
  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics | undefined,
    private readonly recent: RecentPushes,
  ) {}

  record(finished: FinishedRequest): void {
    const { request, failure, status } = finished
    const finishedUpload = (request?.op === 'upload.finish' || request?.op === 'upload.monolithic') && status === 201
    const digest = finished.contentDigest ?? (request?.op === 'upload.finish' ? request.params.get('digest') ?? undefined : undefined)
    const causes = failure ? causeChain(failure) : undefined
    const line = {
      request_id: finished.requestId,
      method: finished.method,
      op: request?.op ?? finished.route,
      repository: request?.repository,
      reference: request?.reference,
      digest,
      status,
      bytes_in: finished.bytesReceived,
      bytes_out: finished.bytesSent,
      // A pushed blob's size: the bytes its session held before this request (from the signed _state) plus this request's.
      ...(finishedUpload && request ? { blob_bytes: (stateOffset(request.params.get('_state')) ?? 0) + finished.bytesReceived } : {}),
      ms: Math.round(finished.seconds * 10_000) / 10,
      client: finished.clientIp,
      user: finished.user || undefined,
      upstream: finished.upstream,
      ...(failure ? { error: failure.code, detail: failure.detail } : {}),
      // What went wrong underneath (an upstream's socket error, say): never sent to the client, so logged here.
      ...(causes ? { cause: causes } : {}),
    }
    // Clients send credentials only after a 401 (docker's first /v2/): that challenge is routine, not a warning.
    const firstChallenge = failure?.code === 'UNAUTHORIZED' && finished.credentialsSent === false
    if (failure && failure.status >= 500) this.log.error(line, failure.message)
    else if (failure && !firstChallenge) this.log.warn(line, failure.message)
    else if (failure) this.log.info(line, failure.message)
    else this.log.info(line, 'request')

    if (request?.op === 'manifest.put' && status === 201 && request.repository) {
      this.recent.add({ at: new Date().toISOString(), user: finished.user || undefined, repository: request.repository, reference: request.reference, digest })
    }
    if (!this.metrics) return
    this.metrics.request({
      operation: request?.op ?? finished.route ?? 'unknown',
      method: finished.method,
      status,
      seconds: finished.seconds,
      ...(request?.repository ? { repository: request.repository } : {}),
      bytesReceived: finished.bytesReceived,
      bytesSent: finished.bytesSent,
    })
    if (failure?.code === 'TOO_LARGE') {
      const limit = (failure.detail as { limit?: unknown } | undefined)?.limit
      this.metrics.limitRejected(typeof limit === 'string' ? limit : 'unknown')
    }
  }
}
