// <portier-app>: the session (signed in or the login form), the header, and the view the hash route names.
import { LitElement, html, nothing } from 'lit'
import type { SessionInfo, SignedOut, SignOutResult } from '../../src/ui/types.js'
import { ApiError, call, onSignedOut, prefetch, setCsrfToken } from './api.js'
import { parseRoute, type Route } from './router.js'
import './views/login-view.js'
import { listPath } from './views/repositories-view.js'
import './views/tags-view.js'
import './views/manifest-view.js'
import './views/status-view.js'
import './views/audit-view.js'
import './views/tokens-view.js'
import './views/access-view.js'
import './views/maintenance-banner.js'

/** Views ask the app to go somewhere; `replace` keeps the history clean while a filter is typed. */
export interface NavigateDetail {
  href: string
  replace?: boolean
}

export class PortierApp extends LitElement {
  static override properties = {
    session: { state: true },
    signedOut: { state: true },
    route: { state: true },
    loading: { state: true },
    notice: { state: true },
  }

  declare session: SessionInfo | undefined
  declare signedOut: SignedOut | undefined
  declare route: Route
  declare loading: boolean
  declare notice: string

  constructor() {
    super()
    this.session = undefined
    this.signedOut = undefined
    this.route = parseRoute(location.hash)
    this.loading = true
    this.notice = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private readonly onHashChange = (): void => {
    this.route = parseRoute(location.hash)
    void this.focusHeading()
  }

  override connectedCallback(): void {
    super.connectedCallback()
    window.addEventListener('hashchange', this.onHashChange)
    onSignedOut(() => {
      if (!this.session) return
      this.session = undefined
      this.notice = 'Your session has ended. Sign in again.'
    })
    // The usual first page is the repository list: ask for it while the session is being checked.
    if (this.route.view === 'repositories') prefetch(listPath(this.route.q, this.route.last))
    void this.loadSession()
  }

  override disconnectedCallback(): void {
    window.removeEventListener('hashchange', this.onHashChange)
    super.disconnectedCallback()
  }

  private async loadSession(): Promise<void> {
    try {
      this.useSession(await call<SessionInfo>('GET', 'session'))
    } catch (error) {
      this.session = undefined
      this.signedOut = error instanceof ApiError && error.status === 401 ? ((error.detail ?? { loginAvailable: true }) as SignedOut) : { loginAvailable: true }
      if (!(error instanceof ApiError && error.status === 401)) this.notice = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.loading = false
    }
  }

  private useSession(session: SessionInfo): void {
    setCsrfToken(session.csrfToken)
    this.session = session
    this.notice = ''
  }

  private async signOut(): Promise<void> {
    try {
      const result = await call<SignOutResult>('POST', 'logout')
      // Single sign-on: Portier's session has ended; the provider's sign-out page ends its session too, then comes back.
      if (result.endSessionUrl) {
        location.assign(result.endSessionUrl)
        return
      }
    } finally {
      setCsrfToken('')
      this.session = undefined
      this.notice = 'You have signed out.'
      history.replaceState(null, '', '#/')
      this.route = parseRoute('#/')
    }
  }

  private navigate(event: CustomEvent<NavigateDetail>): void {
    const { href, replace } = event.detail
    if (replace) {
      history.replaceState(null, '', href)
      this.route = parseRoute(href)
    } else {
      location.hash = href
    }
  }

  private async focusHeading(): Promise<void> {
    await this.updateComplete
    this.querySelector<HTMLElement>('main h1')?.focus()
  }

  private view(session: SessionInfo): unknown {
    const route = this.route
    switch (route.view) {
      case 'repositories':
        document.title = 'Repositories · Portier'
        return html`<repositories-view .q=${route.q} .last=${route.last}></repositories-view>`
      case 'tags':
        document.title = `${route.repository} · Portier`
        return html`<tags-view .repository=${route.repository} .last=${route.last} .session=${session}></tags-view>`
      case 'manifest':
        document.title = `${route.repository}:${route.reference} · Portier`
        return html`<manifest-view .repository=${route.repository} .reference=${route.reference} .session=${session}></manifest-view>`
      case 'status':
        document.title = 'Status · Portier'
        return session.admin
          ? html`<status-view></status-view>`
          : html`<h1 tabindex="-1">Status</h1><p class="error" role="alert">The status panel is for administrators.</p>`
      case 'tokens':
        document.title = 'Access tokens · Portier'
        return html`<tokens-view .session=${session}></tokens-view>`
      case 'access':
        document.title = 'Users & access · Portier'
        return session.admin
          ? html`<access-view></access-view>`
          : html`<h1 tabindex="-1">Users &amp; access</h1><p class="error" role="alert">Users and access are for administrators.</p>`
      case 'audit': {
        document.title = 'Audit trail · Portier'
        const { repo, user, since, action } = route
        return session.admin
          ? html`<audit-view .filter=${{ repo, user, since, action }}></audit-view>`
          : html`<h1 tabindex="-1">Audit trail</h1><p class="error" role="alert">The audit trail is for administrators.</p>`
      }
    }
  }

  protected override render(): unknown {
    if (this.loading) return html`<main class="page"><p role="status">Loading…</p></main>`
    const session = this.session
    if (!session) {
      document.title = 'Sign in · Portier'
      return html`
        <maintenance-banner></maintenance-banner>
        <main class="page login-page">
          <login-view
            .signedOut=${this.signedOut ?? { loginAvailable: true }}
            .notice=${this.notice}
            @signed-in=${(event: CustomEvent<SessionInfo>) => this.useSession(event.detail)}
          ></login-view>
        </main>
      `
    }
    const current = this.route.view
    return html`
      <header class="bar">
        <a class="brand" href="#/">Portier</a>
        <nav aria-label="Main">
          <a href="#/" aria-current=${current === 'repositories' ? 'page' : nothing}>Repositories</a>
          ${session.admin ? html`<a href="#/status" aria-current=${current === 'status' ? 'page' : nothing}>Status</a>` : nothing}
          ${session.admin ? html`<a href="#/audit" aria-current=${current === 'audit' ? 'page' : nothing}>Audit</a>` : nothing}
          ${session.admin ? html`<a href="#/access" aria-current=${current === 'access' ? 'page' : nothing}>Users &amp; access</a>` : nothing}
          ${session.anonymous ? nothing : html`<a href="#/tokens" aria-current=${current === 'tokens' ? 'page' : nothing}>Access tokens</a>`}
        </nav>
        <span class="who">${session.anonymous ? 'Open access (auth off)' : html`Signed in as <strong>${session.user}</strong>`}</span>
        ${session.anonymous ? nothing : html`<button type="button" class="quiet" @click=${() => void this.signOut()}>Sign out</button>`}
      </header>
      <maintenance-banner></maintenance-banner>
      <main class="page" @navigate=${(event: CustomEvent<NavigateDetail>) => this.navigate(event)}>${this.view(session)}</main>
    `
  }
}

customElements.define('portier-app', PortierApp)
