// Hash routes: #/ (repositories), #/r/NAME (tags), #/r/NAME/-/REFERENCE (one image), #/status, #/tokens, #/access, #/audit?repo=&user=&since=&action=.
// "-" can never be a repository path component, so names with slashes stay unambiguous.

export type Route =
  | { view: 'repositories'; q: string; last: string }
  | { view: 'tags'; repository: string; last: string }
  | { view: 'manifest'; repository: string; reference: string }
  | { view: 'status' }
  | { view: 'tokens' }
  | { view: 'access' }
  | ({ view: 'audit' } & AuditFilter)

/** The audit page's filters, as the API takes them ('' for none). */
export interface AuditFilter {
  repo: string
  user: string
  since: string
  action: string
}

export function parseRoute(hash: string): Route {
  const text = hash.replace(/^#/, '')
  const queryAt = text.indexOf('?')
  const path = queryAt < 0 ? text : text.slice(0, queryAt)
  const params = new URLSearchParams(queryAt < 0 ? '' : text.slice(queryAt + 1))
  if (path === '/status') return { view: 'status' }
  if (path === '/tokens') return { view: 'tokens' }
  if (path === '/access') return { view: 'access' }
  if (path === '/audit') return { view: 'audit', repo: params.get('repo') ?? '', user: params.get('user') ?? '', since: params.get('since') ?? '', action: params.get('action') ?? '' }
  if (path.startsWith('/r/')) {
    const rest = decodeURIComponent(path.slice(3))
    const split = rest.indexOf('/-/')
    if (split > 0) return { view: 'manifest', repository: rest.slice(0, split), reference: rest.slice(split + 3) }
    return { view: 'tags', repository: rest, last: params.get('last') ?? '' }
  }
  return { view: 'repositories', q: params.get('q') ?? '', last: params.get('last') ?? '' }
}

export function href(route: Route): string {
  switch (route.view) {
    case 'status':
      return '#/status'
    case 'tokens':
      return '#/tokens'
    case 'access':
      return '#/access'
    case 'audit': {
      const params = new URLSearchParams()
      for (const key of ['repo', 'user', 'since', 'action'] as const) if (route[key]) params.set(key, route[key])
      const text = params.toString()
      return `#/audit${text ? `?${text}` : ''}`
    }
    case 'manifest':
      return `#/r/${route.repository}/-/${route.reference}`
    case 'tags':
      return `#/r/${route.repository}${route.last ? `?last=${encodeURIComponent(route.last)}` : ''}`
    case 'repositories': {
      const params = new URLSearchParams()
      if (route.q) params.set('q', route.q)
      if (route.last) params.set('last', route.last)
      const text = params.toString()
      return `#/${text ? `?${text}` : ''}`
    }
  }
}
