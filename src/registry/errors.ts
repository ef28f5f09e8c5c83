// The registry API's errors: RegistryError (a catalogue code of the registry or gateway subsystem) and the registry's JSON error body.
import type { ServerResponse } from 'node:http'
import { catalogueBySubsystem, isRegistryErrorCode, type RegistryErrorCode } from '../errors/catalogue.js'
import { PortierError } from '../errors/portier-error.js'

export { isRegistryErrorCode, type RegistryErrorCode }

/** The registry API's codes with their status and default message (the catalogue's registry and gateway groups). */
export const errorCatalogue = { ...catalogueBySubsystem.registry, ...catalogueBySubsystem.gateway }

/** The registry's error body, `{"errors":[{code,message,detail}]}`: docker, skopeo, podman and the UI's front end parse it. */
export function registryErrorBody(error: PortierError): string {
  const entry: { code: string; message: string; detail?: unknown } = { code: error.wireCode, message: error.message }
  if (error.detail !== undefined) entry.detail = error.detail
  return JSON.stringify({ errors: [entry] })
}

export class RegistryError extends PortierError<RegistryErrorCode> {
  /** `cause` (as in `new Error(message, { cause })`): the error behind this one, for logs only. */
  constructor(code: RegistryErrorCode, detail?: unknown, headers: Record<string, string> = {}, message?: string, options?: ErrorOptions) {
    // A token or admin code (or anything cast from an upstream's answer) is no registry code: a 500.
    super(isRegistryErrorCode(code) ? code : 'INTERNAL', { detail, headers, ...(message === undefined ? {} : { message }), cause: options?.cause })
  }

  body(): string {
    return registryErrorBody(this)
  }
}

/** Writes a registry-format JSON error; used for every response Portier makes itself. */
export function sendRegistryError(res: ServerResponse, error: RegistryError): void {
  if (res.headersSent) {
    // Too late for a status line: end the response abnormally so the client sees a failure,
    // never a silently truncated success.
    res.destroy(error)
    return
  }
  const body = error.body()
  res.statusCode = error.status
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Content-Length', Buffer.byteLength(body))
  res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0')
  for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value)
  res.end(res.req.method === 'HEAD' ? undefined : body)
}
