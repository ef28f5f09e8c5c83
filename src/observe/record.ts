// The pipeline's last step: one access-log line and one metrics update per request, written when it ends.
import { randomUUID } from 'node:crypto'
import { PasswordChecksBusy } from '../auth/basic.js'
import type { RegistryRequest } from '../registry/classify.js'
import { causeChain } from '../errors/cause.js'
import type { RegistryError } from '../registry/errors.js'
import { scalarLogger, type Logger } from './log.js'
import type { AuthOutcome, Metrics } from './metrics.js'
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
  /** The size of a blob an upload held in storage committed (its URL carries no `_state` to read it from). */
  blobBytes?: number
  /** The Docker-Content-Digest the upstream answered with (pushed blob or manifest, pulled manifest). */
  contentDigest?: string | undefined
  /** Whether the request carried credentials: an Authorization header, or a token endpoint's form naming a user (or a valid refresh token). */
  credentialsSent?: boolean
  /** How authentication ended when credentials were checked (the audit trail's login attempts); never the credentials. */
  authOutcome?: AuthOutcome
  /** The access token (its id, tok_…) an accepted login used; never its secret. */
  accessToken?: string
  /** The refresh token (its id, the JWT's `jti`) a refresh grant at the token endpoint was given; never the token. */
  refreshToken?: string
  /** The user name a Basic Authorization header or a token endpoint's form named (or a refresh token's account), right or wrong (who tried to log in; control characters replaced); never the password. */
  loginName?: string
  /** The client's User-Agent and Host headers (events name them). */
  userAgent?: string | undefined
  host?: string | undefined
  /** The public origin the client reached, e.g. https://registry.example.com (events build content URLs on it). */
  publicOrigin?: string | undefined
  /** The content's media type: the request's Content-Type for a manifest PUT, the response's for a GET/HEAD. */
  mediaType?: string | undefined
  /** The response's Content-Length (a pulled manifest or blob's size, HEAD included). */
  contentLength?: number | undefined
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/

/** The client's X-Request-Id when it is a sane token, else a fresh one. */
export function requestIdFrom(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header
  return value !== undefined && REQUEST_ID.test(value) ? value : randomUUID()
}

/** Told of every finished request after the access log and metrics (the store, events, the audit trail). */
export type FinishedListener = (finished: FinishedRequest) => void

export class Recorder {
  private readonly listeners: FinishedListener[] = []
  /** The success lines' logger: their fields are scalars, so redaction (which costs per field) cannot change them. */
  private readonly access: Logger

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics | undefined,
    private readonly recent: RecentPushes,
  ) {
    this.access = scalarLogger(log)
  }

  /** Adds a listener; the returned function removes it. A listener that throws is logged, never the request's problem. */
  listen(listener: FinishedListener): () => void {
    this.listeners.push(listener)
    return () => {
      const index = this.listeners.indexOf(listener)
      if (index >= 0) this.listeners.splice(index, 1)
    }
  }

  record(finished: FinishedRequest): void {
    this.write(finished)
    for (const listener of this.listeners) {
      try {
        listener(finished)
      } catch (error) {
        this.log.error({ err: error, request_id: finished.requestId }, 'a listener of finished requests failed')
      }
    }
  }

  private write(finished: FinishedRequest): void {
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
      ...(finishedUpload && request ? { blob_bytes: pushedBlobBytes(finished, request) } : {}),
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
    // Too many password checks at once (503) is the clients' burst, not the gateway failing: a warning, or anyone could fill the error log.
    const loginBurst = failure instanceof PasswordChecksBusy
    if (failure && failure.status >= 500 && !loginBurst) this.log.error(line, failure.message)
    else if (failure && !firstChallenge) this.log.warn(line, failure.message)
    else if (failure) this.log.info(line, failure.message)
    else this.access.info(line, 'request')

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

/**
 * A pushed blob's size: what a session in storage committed, else the bytes the registry session held
 * before this request (from its signed `_state`) plus this request's.
 */
export function pushedBlobBytes(finished: FinishedRequest, request: RegistryRequest): number {
  return finished.blobBytes ?? (stateOffset(request.params.get('_state')) ?? 0) + finished.bytesReceived
}
