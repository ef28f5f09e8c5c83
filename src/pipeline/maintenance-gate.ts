// The pipeline's maintenance stage (after authorize, before route): refuses writes while maintenance is on, and tells Maintenance which writes are in flight.
import type { Maintenance } from '../housekeeping/maintenance.js'
import type { Operation, RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'

/** A write let through: told once how it ended (the status sent, and the upload URL answered). */
export interface WriteTicket {
  done(status: number, location: string | undefined): void
}

export type MaintenanceGate = (request: RegistryRequest) => WriteTicket | undefined

/** Writes that need no upload session: refused while maintenance is on (new uploads: unless they belong to a push in flight, see NEW_UPLOADS). */
const NEW_WRITES: ReadonlySet<Operation> = new Set<Operation>(['upload.start', 'upload.mount', 'upload.monolithic', 'manifest.delete', 'blob.delete'])
/** New uploads, which a push in flight may still begin during the drain (its next layers, its config blob). */
const NEW_UPLOADS: ReadonlySet<Operation> = new Set<Operation>(['upload.start', 'upload.mount', 'upload.monolithic'])
/** Requests on an upload session: refused while on unless the session began before maintenance and the drain deadline has not passed. */
const SESSION_WRITES: ReadonlySet<Operation> = new Set<Operation>(['upload.chunk', 'upload.finish'])
/** Reading or cancelling a session changes no content: always let through, but counted on the session. */
const SESSION_OTHERS: ReadonlySet<Operation> = new Set<Operation>(['upload.status', 'upload.cancel'])

/** The upload id in an upload URL (`/v2/<name>/blobs/uploads/<id>?...`), as the client will send it back. */
export function uploadIdFromLocation(location: string | undefined): string | undefined {
  if (!location) return undefined
  const match = /\/blobs\/uploads\/([^/?#]+)/.exec(location)
  return match?.[1]
}

/** The refusal: 405 UNSUPPORTED in the registry's JSON error format (as distribution's read-only mode), Retry-After when the maintenance has an expected end. */
export function readOnlyError(maintenance: Maintenance, request: RegistryRequest): RegistryError {
  const status = maintenance.status()
  const retryAfter = maintenance.retryAfterSeconds()
  const detail: Record<string, unknown> = { reason: status.message, operation: request.op }
  if (status.since) detail.since = status.since
  if (status.until) detail.until = status.until
  return new RegistryError(
    'READ_ONLY',
    detail,
    retryAfter === undefined ? {} : { 'Retry-After': String(retryAfter) },
    `registry is in read-only mode (maintenance): ${status.message}`,
  )
}

export function createMaintenanceGate(maintenance: Maintenance): MaintenanceGate {
  return (request) => {
    const op = request.op
    const repository = request.repository
    if (op === 'manifest.put') {
      // Refused while on, except the last step of a push whose blobs went in (within the drain deadline).
      if (!maintenance.admitsManifest(repository)) throw readOnlyError(maintenance, request)
      const finished = maintenance.writeStarted()
      return {
        done(status) {
          finished()
          if (status === 201 && repository !== undefined) maintenance.manifestStored(repository)
        },
      }
    }
    if (NEW_WRITES.has(op)) {
      if (maintenance.isOn && !(NEW_UPLOADS.has(op) && maintenance.admitsNewUpload(repository))) throw readOnlyError(maintenance, request)
      const finished = maintenance.writeStarted()
      return {
        done(status, location) {
          finished()
          // A mount or a one-request upload stored a blob; its manifest follows.
          if (status === 201 && (op === 'upload.mount' || op === 'upload.monolithic') && repository !== undefined) maintenance.blobCommitted(repository)
          // A POST (or a mount the registry could not do, which it answers as a new upload) opened a session.
          if (status === 202 && (op === 'upload.start' || op === 'upload.mount')) {
            const uploadId = uploadIdFromLocation(location)
            if (uploadId) maintenance.uploadStarted(uploadId, repository)
          }
        },
      }
    }
    if (SESSION_WRITES.has(op) || SESSION_OTHERS.has(op)) {
      const uploadId = request.uploadId
      if (SESSION_WRITES.has(op) && !maintenance.admitsUpload(uploadId)) throw readOnlyError(maintenance, request)
      // A status GET of a session begun elsewhere (another instance, before a restart) is only a read.
      const finished = (uploadId === undefined ? undefined : maintenance.uploadRequest(uploadId)) ?? (op === 'upload.status' ? undefined : maintenance.writeStarted())
      if (!finished) return undefined
      return {
        done(status) {
          finished()
          if (uploadId === undefined) return
          // Committed, cancelled, or gone from the registry: the session holds no drain any more.
          const committed = op === 'upload.finish' && status === 201
          const ended = committed || (op === 'upload.cancel' && (status === 204 || status === 404)) || status === 404
          // Before the session ends, so a drain never sees the push with neither its session nor its blob.
          if (committed && repository !== undefined) maintenance.blobCommitted(repository)
          if (ended) maintenance.uploadEnded(uploadId)
        },
      }
    }
    return undefined
  }
}
