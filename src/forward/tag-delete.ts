// Tag deletes: registry 2.8 cannot delete a tag and answers 400 DIGEST_INVALID; the OCI spec wants an unsupported delete said as such (405 UNSUPPORTED).
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { pathOf, upstreamFailure, type Exchange, type ExchangeResult, type Forwarder } from './forward.js'
import { clientResponseHeaders } from './headers.js'
import { readPrefix } from '../lib/body.js'

/** Error answers are small JSON; more than this is not a registry error body. */
const MAX_ERROR_BYTES = 64 * 1024

/** DELETE /v2/<name>/manifests/<tag> (not a digest). */
export function isTagDelete(request: RegistryRequest): boolean {
  return request.op === 'manifest.delete' && request.reference !== undefined && !request.reference.includes(':')
}

/**
 * How an upstream that cannot delete tags refuses one: 2.8 reads the tag as a digest and answers
 * 400 DIGEST_INVALID. An upstream that can (registry 3.x) answers 202 and is passed through.
 */
export function refusesTagDelete(status: number, body: Buffer): boolean {
  if (status !== 400) return false
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> }
    return parsed.errors?.[0]?.code === 'DIGEST_INVALID'
  } catch {
    return false
  }
}

export function tagDeleteUnsupported(request: RegistryRequest): RegistryError {
  return new RegistryError(
    'UNSUPPORTED',
    { repository: request.repository, tag: request.reference, reason: 'the upstream registry cannot delete tags; delete the manifest by digest' },
    {},
    'deleting a tag is not supported by the registry behind this gateway',
  )
}

/** Sends a tag delete to one upstream; its refusal becomes 405 UNSUPPORTED, any other answer is relayed. */
export async function deleteTag(forwarder: Forwarder, exchange: Exchange): Promise<ExchangeResult> {
  const { request, req, res, client, upstream } = exchange
  req.resume()
  const response = await forwarder.send(exchange, 'DELETE', pathOf(request), null, 'none').catch((error: unknown) => {
    throw upstreamFailure(error, upstream)
  })
  if (response.statusCode !== 400) {
    await forwarder.relay(exchange, response)
    return { status: response.statusCode }
  }
  const { head: body } = await readPrefix(response.body, MAX_ERROR_BYTES)
  if (refusesTagDelete(response.statusCode, body)) throw tagDeleteUnsupported(request)
  const headers = clientResponseHeaders(response.headers, response.statusCode, upstream.origin, client)
  headers['content-length'] = String(body.length)
  res.writeHead(response.statusCode, headers)
  exchange.bytes.sent += body.length
  res.end(body)
  return { status: response.statusCode }
}
