// Sorted name lists (catalog repositories, tags) merged over upstreams and cut into pages of `n`, with the `last` to continue from.

/** One upstream's names after `last`, and whether it has more than it returned. */
export interface UpstreamNames {
  names: string[]
  more: boolean
}

export interface NamePage {
  names: string[]
  /** Set when there is more after this page: the `last` to continue from. */
  nextLast?: string
}

/** Byte order, as distribution sorts repository names and tags. */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Merges pages that each upstream returned for the same `last` and `n`. Each list is sorted (as
 * the registry sorts), so the first `n` names of the union are among the first `n` of each. An
 * upstream that returned fewer names than it has only vouches for names up to its last one: the
 * merged page stops there too, and continues from there on the next page.
 */
export function mergeNamePages(pages: UpstreamNames[], n: number, visible: (names: string[]) => string[]): NamePage {
  let boundary: string | undefined
  for (const page of pages) {
    const last = page.names[page.names.length - 1]
    if (page.more && last !== undefined && (boundary === undefined || last < boundary)) boundary = last
  }
  const union = [...new Set(pages.flatMap((page) => page.names))].sort(compareNames)
  const vouched = boundary === undefined ? union : union.filter((name) => compareNames(name, boundary) <= 0)
  const truncated = vouched.length < union.length || pages.some((page) => page.more)
  const shown = visible(vouched)
  const names = shown.slice(0, n)
  const more = shown.length > n || truncated
  if (!more) return { names }
  const nextLast = shown.length > n ? names[names.length - 1] : (vouched[vouched.length - 1] ?? names[names.length - 1])
  return nextLast === undefined ? { names } : { names, nextLast }
}

/** True when an upstream's Link header announces a next page. */
export function hasNextPage(link: string | string[] | undefined): boolean {
  return typeof link === 'string' && /rel="?next"?/.test(link)
}
