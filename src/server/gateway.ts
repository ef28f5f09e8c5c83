// The request pipeline, read top to bottom: classify → authenticate → authorize → limit → route → forward → record.
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { TLSSocket } from 'node:tls'
import { classify, type RegistryRequest } from '../registry/classify.js'
import { RegistryError, sendRegistryError } from '../registry/errors.js'
import { describeClient, type TrustedProxies } from '../proxy/headers.js'
import type { Limits } from '../proxy/limits.js'
import type { UpstreamSet } from '../proxy/upstreams.js'
import type { Forwarder } from '../proxy/forward.js'
import type { Logger } from '../observe/log.js'

export interface GatewayDeps {
  upstreams: UpstreamSet
  limits: Limits
  forwarder: Forwarder
  trustedProxies: TrustedProxies
  publicUrl: string
  /** Host to use when a client sends no usable Host header. */
  fallbackHost: string
  log: Logger
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void

export function createGateway(deps: GatewayDeps): RequestHandler {
  const { upstreams, limits, forwarder, trustedProxies, log } = deps

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = process.hrtime.bigint()
    let request: RegistryRequest | undefined
    let failure: RegistryError | undefined
    let upstreamName: string | undefined
    const encrypted = (req.socket as TLSSocket).encrypted === true
    const client = describeClient(req.headers, req.socket.remoteAddress, encrypted, trustedProxies, deps.publicUrl, deps.fallbackHost)
    try {
      request = classify(req.method ?? 'GET', req.url ?? '/')
      // authenticate + authorize: open access until the auth stage lands (every request is anonymous).
      const limit = limits.forRequest(request)
      const upstream = upstreams.pick(request)
      upstreamName = upstream.name
      await forwarder.forward({ request, req, res, client, upstream, limit })
    } catch (error) {
      failure = error instanceof RegistryError
        ? error
        : new RegistryError('BAD_GATEWAY', { reason: error instanceof Error ? error.message : String(error) }, {}, 'transfer failed')
      if (!res.headersSent) {
        sendRegistryError(res, failure)
      } else {
        // The status line is already out: break the connection so the client cannot mistake a short body for a whole one.
        res.destroy()
      }
    } finally {
      const ms = Number(process.hrtime.bigint() - startedAt) / 1e6
      const line = {
        method: req.method,
        op: request?.op,
        repository: request?.repository,
        reference: request?.reference,
        status: res.headersSent ? res.statusCode : 499,
        ms: Math.round(ms * 10) / 10,
        client: client.clientIp,
        upstream: upstreamName,
        ...(failure ? { error: failure.code, detail: failure.detail } : {}),
      }
      if (failure && failure.status >= 500) log.error(line, failure.message)
      else if (failure) log.warn(line, failure.message)
      else log.info(line, 'request')
    }
  }

  return (req, res) => {
    void handle(req, res)
  }
}
