// <repositories-view>: the repositories the user may pull, filtered by name, a page at a time (n/last).
import { LitElement, html, nothing } from 'lit'
import type { RepositoryPage } from '../../../src/ui/types.js'
import { ApiError, get, query } from '../api.js'
import { href } from '../router.js'
import type { NavigateDetail } from '../app.js'

const PAGE_SIZE = 100
const FILTER_DELAY_MS = 200

/** The API path of one page of the list. */
export function listPath(q: string, last: string): string {
  return `repositories${query({ q, last, n: PAGE_SIZE })}`
}

export class RepositoriesView extends LitElement {
  static override properties = {
    q: { attribute: false },
    last: { attribute: false },
    page: { state: true },
    error: { state: true },
  }

  declare q: string
  declare last: string
  declare page: RepositoryPage | undefined
  declare error: string
  private filterTimer: number | undefined
  private loadCount = 0

  constructor() {
    super()
    this.q = ''
    this.last = ''
    this.page = undefined
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('q') || changed.has('last')) void this.load()
  }

  private async load(): Promise<void> {
    const ticket = ++this.loadCount
    try {
      const page = await get<RepositoryPage>(listPath(this.q, this.last))
      if (ticket !== this.loadCount) return
      this.page = page
      this.error = ''
    } catch (error) {
      if (ticket !== this.loadCount) return
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  private filter(event: InputEvent): void {
    const value = (event.target as HTMLInputElement).value
    window.clearTimeout(this.filterTimer)
    this.filterTimer = window.setTimeout(() => {
      this.dispatchEvent(new CustomEvent<NavigateDetail>('navigate', { detail: { href: href({ view: 'repositories', q: value.trim(), last: '' }), replace: true }, bubbles: true }))
    }, FILTER_DELAY_MS)
  }

  protected override render(): unknown {
    const page = this.page
    return html`
      <h1 tabindex="-1">Repositories</h1>
      <form role="search" class="filter" @submit=${(event: Event) => event.preventDefault()}>
        <label for="repository-filter">Filter repositories</label>
        <input id="repository-filter" type="search" .value=${this.q} @input=${(event: InputEvent) => this.filter(event)} autocomplete="off" spellcheck="false" placeholder="part of a name, e.g. team/" />
      </form>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${page === undefined && !this.error ? html`<p role="status">Loading…</p>` : nothing}
      ${page
        ? page.repositories.length === 0
          ? html`<p role="status">${this.q ? `No repository you may pull matches “${this.q}”.` : 'There are no repositories you may pull yet.'}</p>`
          : html`
              <p class="count" role="status">${page.repositories.length}${page.next ? '+' : ''} ${page.repositories.length === 1 ? 'repository' : 'repositories'}${this.last ? ` after ${this.last}` : ''}</p>
              <ul class="repositories" aria-label="Repositories">
                ${page.repositories.map(
                  (repository) => html`<li>
                    <a href=${href({ view: 'tags', repository: repository.name, last: '' })}>${repository.name}</a>
                    ${repository.canPush ? html`<span class="badge">push</span>` : nothing}
                    ${repository.cachedFrom ? html`<span class="badge cached" title="pull-through cache: pulled from ${repository.cachedFrom}, cannot be pushed to">cache of ${repository.cachedFrom}</span>` : nothing}
                  </li>`,
                )}
              </ul>
            `
        : nothing}
      <nav class="pager" aria-label="Pages">
        ${this.last ? html`<a href=${href({ view: 'repositories', q: this.q, last: '' })}>First page</a>` : nothing}
        ${page?.next ? html`<a href=${href({ view: 'repositories', q: this.q, last: page.next })} rel="next">Next page</a>` : nothing}
      </nav>
    `
  }
}

customElements.define('repositories-view', RepositoriesView)
