// Upload sessions pinned to upstreams by signed URLs: reading the sessions a client's URL names, and signing the Location an upstream answers.
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { sessionFromLocation, TOKEN_PARAM, type UpstreamSession, type UploadTokens } from '../uploads/token.js'
import { targetOf, type SignedTarget } from '../uploads/session.js'
import type { Upstream } from '../upstreams/upstreams.js'
import type { UpstreamChoice } from './strategy.js'

export class SignedUploads {
  constructor(
    private readonly tokens: UploadTokens,
    private readonly upstreams: UpstreamChoice,
  ) {}

  /** The sessions a client's upload URL names; anything not signed by us is an unknown upload. */
  sessions(request: RegistryRequest): SignedTarget[] {
    const repository = request.repository ?? ''
    const sessions = this.tokens.read(repository, request.uploadId, request.params.get(TOKEN_PARAM))
    if (!sessions) throw uploadUnknown('the upload URL is not one this gateway issued, or it was altered')
    return sessions.map((session) => {
      const upstream = this.upstreams.byName.get(session.upstream)
      if (!upstream) throw uploadUnknown('the upload belongs to an upstream that is no longer configured')
      return targetOf(upstream, repository, session)
    })
  }

  /**
   * Rewrites the upload Location an upstream answered into a signed URL: the session at `index`
   * becomes the one the upstream named (its new `_state`), the others stay as they were.
   */
  locationSigner(repository: string, sessions: UpstreamSession[], index: number): (location: string, upstream: Upstream) => string {
    return (location, upstream) => {
      const found = sessionFromLocation(upstream.name, location)
      if (!found || found.repository !== repository) return location
      const next = [...sessions]
      next[index] = found.session
      return `${new URL(location).origin}${this.tokens.clientPath(repository, next)}`
    }
  }
}

export function uploadUnknown(reason: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', { reason })
}
