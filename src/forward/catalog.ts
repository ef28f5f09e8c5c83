// The catalog of upstreams that do not share storage: merged, de-duplicated and paginated by Portier.
import { RegistryError } from '../registry/errors.js'
import { drain, readJson, RETRY_AFTER_SECONDS, type Exchange, type ExchangeResult, type Forwarder } from './forward.js'
import type { RouteContext } from './forward.js'
import { hasNextPage, mergeNamePages } from './paging.js'
import type { Upstream } from '../upstreams/upstreams.js'

/** Entries per page when the client does not ask (distribution's default catalog.maxentries). */
export const DEFAULT_PAGE = 1000

export interface CatalogPage {
  repositories: string[]
  /** Set when there is more after this page: the `last` to continue from. */
  nextLast?: string
}

/** One upstream's entries after `last`, and whether it has more than it returned. */
export interface UpstreamPage {
  repositories: string[]
  more: boolean
}

/** The catalog's view of the shared paging rules (see mergeNamePages). */
export function mergePages(pages: UpstreamPage[], n: number, visible: (names: string[]) => string[]): CatalogPage {
  const page = mergeNamePages(pages.map((one) => ({ names: one.repositories, more: one.more })), n, visible)
  return page.nextLast === undefined ? { repositories: page.names } : { repositories: page.names, nextLast: page.nextLast }
}

function pageSize(params: URLSearchParams): number {
  const text = params.get('n')
  if (text === null || !/^\d{1,9}$/.test(text)) return DEFAULT_PAGE
  return Math.min(Number(text), DEFAULT_PAGE)
}

export class MergedCatalog {
  constructor(
    private readonly forwarder: Forwarder,
    private readonly onUpstreamError: (upstream: Upstream, reason: string) => void,
  ) {}

  async serve(upstreams: Upstream[], context: RouteContext, prefixes?: ReadonlyMap<string, string>): Promise<ExchangeResult> {
    const { res } = context
    context.req.resume()
    const { body, headers } = await this.answer(upstreams, context, prefixes)
    res.writeHead(200, headers)
    context.bytes.sent += body.length
    res.end(body)
    return { status: 200 }
  }

  /**
   * The merged page the client asked for (`n`, `last`), as the JSON body and headers of the answer.
   * `prefixes` (upstream name -> prefix) lists pull-through caches: their repositories are shown under their prefix.
   */
  async answer(upstreams: Upstream[], context: RouteContext, prefixes?: ReadonlyMap<string, string>): Promise<{ body: Buffer; headers: Record<string, string> }> {
    const { request } = context
    const n = pageSize(request.params)
    const last = request.params.get('last') ?? undefined
    const results = await Promise.all(upstreams.map(async (upstream) => {
      const prefix = prefixes?.get(upstream.name)
      if (prefix === undefined) return await this.fetchPage(context, upstream, `/v2/_catalog?${pageQuery(n, last)}`)
      // The cache's registry names its repositories without the prefix: `last` is translated, the names prefixed back.
      const below = `${prefix}/`
      if (last !== undefined && last >= below && !last.startsWith(below)) return { repositories: [], more: false }
      const page = await this.fetchPage(context, upstream, `/v2/_catalog?${pageQuery(n, last !== undefined && last.startsWith(below) ? last.slice(below.length) : undefined)}`)
      return page && { ...page, repositories: page.repositories.map((name) => `${below}${name}`) }
    }))
    const pages = results.filter((page): page is UpstreamPage => page !== undefined)
    if (pages.length === 0) {
      throw new RegistryError('UNAVAILABLE', { upstreams: upstreams.map((upstream) => upstream.name) }, { 'Retry-After': RETRY_AFTER_SECONDS }, 'no upstream answered the catalog')
    }
    const visible = (names: string[]): string[] => {
      if (!context.filterJson) return names
      const filtered = context.filterJson({ repositories: names }) as { repositories?: unknown }
      return Array.isArray(filtered.repositories) ? filtered.repositories.filter((name): name is string => typeof name === 'string') : []
    }
    const page = mergePages(pages, n, visible)
    const body = Buffer.from(JSON.stringify({ repositories: page.repositories }))
    const headers: Record<string, string> = {
      'content-type': 'application/json; charset=utf-8',
      'docker-distribution-api-version': 'registry/2.0',
      'content-length': String(body.length),
    }
    if (page.nextLast !== undefined) {
      headers.link = `</v2/_catalog?${new URLSearchParams({ last: page.nextLast, n: String(n) }).toString()}>; rel="next"`
    }
    return { body, headers }
  }

  /** One upstream's page, or undefined (reported) when it could not give one. */
  private async fetchPage(context: RouteContext, upstream: Upstream, path: string): Promise<UpstreamPage | undefined> {
    const exchange: Exchange = { ...context, upstream }
    try {
      let response = await this.forwarder.send(exchange, 'GET', path, null, 'none')
      if (response.statusCode === 400 && (await isPageTooLarge(response))) {
        // Its catalog.maxentries is below the page asked for (registry 2.8 refuses n above it): ask
        // without n, which gets its largest page and a Link when it has more; the merge stops there.
        response = await this.forwarder.send(exchange, 'GET', withoutPageSize(path), null, 'none')
      }
      if (response.statusCode !== 200) {
        drain(response)
        this.onUpstreamError(upstream, `answered ${response.statusCode}`)
        return undefined
      }
      const more = hasNextPage(response.headers.link)
      const parsed = (await readJson(response)) as { repositories?: unknown }
      const repositories = Array.isArray(parsed.repositories) ? parsed.repositories.filter((name): name is string => typeof name === 'string') : []
      return { repositories, more }
    } catch (error) {
      this.onUpstreamError(upstream, error instanceof Error ? error.message : String(error))
      return undefined
    }
  }
}

/** Whether a 400 is registry 2.8's PAGINATION_NUMBER_INVALID (the body is read either way). */
async function isPageTooLarge(response: Awaited<ReturnType<Forwarder['send']>>): Promise<boolean> {
  const body = (await readJson(response).catch(() => undefined)) as { errors?: Array<{ code?: unknown }> } | undefined
  return Array.isArray(body?.errors) && body.errors.some((error) => error.code === 'PAGINATION_NUMBER_INVALID')
}

function pageQuery(n: number, last: string | undefined): URLSearchParams {
  const query = new URLSearchParams({ n: String(Math.max(n, 1)) })
  if (last !== undefined) query.set('last', last)
  return query
}

function withoutPageSize(path: string): string {
  const [base, query = ''] = path.split('?', 2) as [string, string?]
  const params = new URLSearchParams(query)
  params.delete('n')
  const rest = params.toString()
  return rest ? `${base}?${rest}` : base
}
