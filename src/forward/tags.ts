// Tag lists paged by Portier: registry 2.8 ignores `n` and `last`, so the gateway sorts, cuts and links the pages itself, for one upstream or merged over several.
import { RegistryError } from '../registry/errors.js'
import { clientResponseHeaders, type Headers } from './headers.js'
import { drain, pathOf, readJson, RETRY_AFTER_SECONDS, upstreamFailure, type Exchange, type ExchangeResult, type Forwarder, type UpstreamResponse } from './forward.js'
import { compareNames, hasNextPage, mergeNamePages, type UpstreamNames } from './paging.js'
import type { RouteContext } from './forward.js'
import type { Upstream } from '../upstreams/upstreams.js'

/** What one upstream said about the tag list. */
type TagAnswer =
  | { kind: 'page'; upstream: Upstream; page: UpstreamNames; headers: Record<string, string | string[] | undefined> }
  /** Anything but 200 (404 NAME_UNKNOWN above all): relayed when no upstream has a list. */
  | { kind: 'refused'; upstream: Upstream; response: UpstreamResponse }
  | { kind: 'failed'; upstream: Upstream; error: unknown }

/** A tag list page (JSON body and headers), or the first upstream's refusal when none has a list. */
export type TagListing =
  | { kind: 'list'; body: Buffer; headers: Headers }
  | { kind: 'refused'; upstream: Upstream; response: UpstreamResponse }

/** `n` as the client asked; undefined (every tag) when absent or not a count. */
export function tagPageSize(params: URLSearchParams): number | undefined {
  const text = params.get('n')
  if (text === null || !/^\d{1,9}$/.test(text)) return undefined
  return Number(text)
}

/** The spec's next-page link: the same `n`, and `last` set to the page's last tag. */
export function tagsLink(repository: string, n: number | undefined, last: string): string {
  const query = new URLSearchParams()
  if (n !== undefined) query.set('n', String(n))
  query.set('last', last)
  return `</v2/${repository}/tags/list?${query.toString()}>; rel="next"`
}

export class TagLists {
  constructor(
    private readonly forwarder: Forwarder,
    private readonly onUpstreamError: (upstream: Upstream, reason: string) => void,
  ) {}

  /** Answers GET /v2/<name>/tags/list from the upstreams' lists (merged when there are several). */
  async serve(upstreams: Upstream[], context: RouteContext): Promise<ExchangeResult> {
    const { res } = context
    context.req.resume()
    const listing = await this.list(upstreams, context)
    if (listing.kind === 'refused') {
      // No upstream has a list: the (first) upstream's own answer, e.g. 404 NAME_UNKNOWN, is the client's.
      await this.forwarder.relay({ ...context, upstream: listing.upstream }, listing.response)
      return { status: listing.response.statusCode }
    }
    res.writeHead(200, listing.headers)
    context.bytes.sent += listing.body.length
    res.end(listing.body)
    return { status: 200 }
  }

  /** The page of the tag list the client asked for, or the upstream's refusal when no upstream has a list. */
  async list(upstreams: Upstream[], context: RouteContext): Promise<TagListing> {
    const { request } = context
    const repository = request.repository ?? ''
    const n = tagPageSize(request.params)
    // The client's query goes upstream as it is: a registry that pages (3.x) then sends less, and says so in its Link.
    const answers = await Promise.all(upstreams.map((upstream) => this.ask(context, upstream, pathOf(request))))

    const pages: UpstreamNames[] = []
    let firstPage: Extract<TagAnswer, { kind: 'page' }> | undefined
    const refused: Array<{ upstream: Upstream; response: UpstreamResponse }> = []
    for (const answer of answers) {
      if (answer.kind === 'page') {
        pages.push(answer.page)
        firstPage ??= answer
      }
      else if (answer.kind === 'refused') refused.push(answer)
    }
    if (!firstPage) {
      const first = refused.shift()
      for (const other of refused) drain(other.response)
      if (first) return { kind: 'refused', upstream: first.upstream, response: first.response }
      const failed = answers[0]
      if (upstreams.length === 1 && failed?.kind === 'failed') throw upstreamFailure(failed.error, failed.upstream)
      throw new RegistryError('UNAVAILABLE', { upstreams: upstreams.map((upstream) => upstream.name) }, { 'Retry-After': RETRY_AFTER_SECONDS }, 'no upstream answered the tag list')
    }
    for (const other of refused) {
      // A mirror that lacks the repository is normal after a quorum push; anything else is worth a line.
      if (other.response.statusCode !== 404) this.onUpstreamError(other.upstream, `answered ${other.response.statusCode}`)
      drain(other.response)
    }

    const page = mergeNamePages(pages, n ?? Number.MAX_SAFE_INTEGER, (names) => names)
    const body = Buffer.from(JSON.stringify({ name: repository, tags: page.names }))
    // The (first) upstream's own headers travel on; the body, its length and the Link are the gateway's.
    const headers = clientResponseHeaders(firstPage.headers, 200, firstPage.upstream.origin, context.client)
    delete headers.link
    headers['content-type'] = 'application/json; charset=utf-8'
    headers['docker-distribution-api-version'] = 'registry/2.0'
    headers['content-length'] = String(body.length)
    if (page.nextLast !== undefined) headers.link = tagsLink(repository, n, page.nextLast)
    return { kind: 'list', body, headers }
  }

  private async ask(context: RouteContext, upstream: Upstream, path: string): Promise<TagAnswer> {
    const exchange: Exchange = { ...context, upstream }
    let response: UpstreamResponse
    try {
      response = await this.forwarder.send(exchange, 'GET', path, null, 'none')
    } catch (error) {
      this.onUpstreamError(upstream, error instanceof Error ? error.message : String(error))
      return { kind: 'failed', upstream, error }
    }
    if (response.statusCode !== 200) return { kind: 'refused', upstream, response }
    try {
      const more = hasNextPage(response.headers.link)
      const parsed = (await readJson(response)) as { tags?: unknown }
      const last = context.request.params.get('last') ?? undefined
      const tags = Array.isArray(parsed.tags) ? parsed.tags.filter((tag): tag is string => typeof tag === 'string') : []
      // registry 2.8 ignores `last` and lists in storage order: keep what comes after `last`, sorted.
      const after = last === undefined ? tags : tags.filter((tag) => compareNames(tag, last) > 0)
      return { kind: 'page', upstream, page: { names: after.sort(compareNames), more }, headers: response.headers }
    } catch (error) {
      this.onUpstreamError(upstream, error instanceof Error ? error.message : String(error))
      return { kind: 'failed', upstream, error }
    }
  }
}
