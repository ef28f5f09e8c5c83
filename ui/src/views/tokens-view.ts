// <tokens-view>: "Access tokens": a signed-in user's tokens for docker login (made here, the secret shown once, revoked here); administrators see all and make robot accounts.
import { LitElement, html, nothing } from 'lit'
import type { AccessTokenEntry, AccessTokenPage, CreatedAccessToken, SessionInfo } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'
import { formatDate } from '../format.js'
import './copy-line.js'

export class TokensView extends LitElement {
  static override properties = {
    session: { attribute: false },
    page: { state: true },
    created: { state: true },
    error: { state: true },
    busy: { state: true },
    showAll: { state: true },
    confirming: { state: true },
  }

  declare session: SessionInfo
  declare page: AccessTokenPage | undefined
  declare created: CreatedAccessToken | undefined
  declare error: string
  declare busy: boolean
  declare showAll: boolean
  /** The id of the token whose Revoke button asks for confirmation. */
  declare confirming: string

  constructor() {
    super()
    this.page = undefined
    this.created = undefined
    this.error = ''
    this.busy = false
    this.showAll = false
    this.confirming = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  override connectedCallback(): void {
    super.connectedCallback()
    void this.load()
  }

  private async load(): Promise<void> {
    try {
      this.page = await call<AccessTokenPage>('GET', `tokens${query({ all: this.showAll ? 1 : undefined })}`)
      this.error = ''
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault()
    const form = event.target as HTMLFormElement
    const data = new FormData(form)
    const field = (name: string): string => String(data.get(name) ?? '').trim()
    const body: Record<string, unknown> = { name: field('name'), scopes: field('scopes').split(/\s+/).filter((scope) => scope !== ''), robot: data.get('robot') === 'on' }
    if (field('expires')) body.expires = field('expires')
    this.busy = true
    try {
      this.created = await call<CreatedAccessToken>('POST', 'tokens', body)
      this.error = ''
      form.reset()
      await this.load()
      await this.updateComplete
      this.querySelector<HTMLElement>('.token-once')?.focus()
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.busy = false
    }
  }

  private async revoke(token: AccessTokenEntry): Promise<void> {
    if (this.confirming !== token.id) {
      this.confirming = token.id
      return
    }
    this.busy = true
    try {
      await call('DELETE', `tokens${query({ id: token.id })}`)
      this.confirming = ''
      if (this.created?.id === token.id) this.created = undefined
      await this.load()
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.busy = false
    }
  }

  private toggleAll(event: Event): void {
    this.showAll = (event.target as HTMLInputElement).checked
    void this.load()
  }

  private renderCreated(created: CreatedAccessToken): unknown {
    const host = this.session.registryHost
    return html`
      <section class="card token-once" tabindex="-1" aria-labelledby="token-once-title">
        <h2 id="token-once-title">Your new token “${created.name}”</h2>
        <p><strong>Copy it now: it is shown only this once.</strong> Portier keeps only a hash of it.</p>
        <copy-line .text=${created.token} .label=${'Copy the token'}></copy-line>
        <p>Log in with it as the password (user <code>${created.owner}</code>):</p>
        <copy-line .text=${`docker login -u '${created.owner}' ${host}`} .label=${'Copy the login command'}></copy-line>
        <p class="muted">It can ${created.scopes.join(', ')}${created.expiresAt ? html`, until ${formatDate(created.expiresAt)}` : ', with no end date'}.</p>
        ${created.groups.length > 0 ? html`<p class="muted">It acts with your groups as of now (${created.groups.join(', ')}): a change of your groups later reaches tokens made after it.</p>` : nothing}
        <p><button type="button" class="quiet" @click=${() => (this.created = undefined)}>I have stored it</button></p>
      </section>
    `
  }

  private renderTable(page: AccessTokenPage): unknown {
    if (page.tokens.length === 0) return html`<p class="muted">No tokens yet.</p>`
    return html`
      <table>
        <thead>
          <tr><th>Name</th>${page.admin ? html`<th>Owner</th>` : nothing}<th>Scopes</th><th>Expires</th><th>Last used</th><th>State</th><th><span class="visually-hidden">Actions</span></th></tr>
        </thead>
        <tbody>
          ${page.tokens.map((token) => html`
            <tr data-token=${token.id}>
              <td>${token.name} <span class="muted">…${token.hint}</span></td>
              ${page.admin ? html`<td>${token.owner}${token.robot ? html` <span class="badge">robot</span>` : nothing}</td>` : nothing}
              <td>${token.scopes.map((scope) => html`<code>${scope}</code> `)}${token.groups.length > 0 ? html`<br><span class="muted">as ${token.groups.join(', ')}</span>` : nothing}</td>
              <td>${token.expiresAt ? formatDate(token.expiresAt) : 'never'}</td>
              <td>${token.lastUsedAt ? html`${formatDate(token.lastUsedAt)} <span class="muted">from ${token.lastUsedFrom}</span>` : 'never'}</td>
              <td><span class="state ${token.state === 'active' ? 'up' : 'down'}">${token.state}</span></td>
              <td class="actions">
                ${token.state === 'revoked'
                  ? nothing
                  : html`<button type="button" class="danger quiet" ?disabled=${this.busy} aria-label=${`${this.confirming === token.id ? 'Confirm revoking' : 'Revoke'} ${token.name}`} @click=${() => void this.revoke(token)}>${this.confirming === token.id ? 'Confirm revoke' : 'Revoke'}</button>`}
              </td>
            </tr>`)}
        </tbody>
      </table>
    `
  }

  protected override render(): unknown {
    const page = this.page
    return html`
      <h1 tabindex="-1">Access tokens</h1>
      <p>A token is a password for <code>docker login</code>, <code>podman login</code> and CI jobs that can do only what you choose,
        and no more than you may. Revoke it here and it stops working at once.</p>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${this.created ? this.renderCreated(this.created) : nothing}
      <section aria-labelledby="token-new-title">
        <h2 id="token-new-title">New token</h2>
        <form class="token-form" @submit=${(event: SubmitEvent) => void this.create(event)}>
          <label>Name <input name="name" required maxlength="100" placeholder="e.g. laptop or ci"></label>
          <label>Scopes <input name="scopes" required size="40" placeholder="repository:team/*:pull,push"></label>
          <label>Expires in <input name="expires" size="8" placeholder=${page?.defaultExpiry ?? '90d'}></label>
          ${page?.admin ? html`<label class="check"><input type="checkbox" name="robot" aria-describedby="robot-hint"> Robot account</label>
            <span id="robot-hint" class="hint">logs in as robot$NAME and gets exactly these scopes</span>` : nothing}
          <button type="submit" class="primary" ?disabled=${this.busy}>Create token</button>
        </form>
        <p class="hint">Scopes: <code>repository:NAME:ACTIONS</code>, NAME a repository or a glob (<code>team/*</code>, <code>team/**</code>), ACTIONS
          <code>pull</code>, <code>push</code>, <code>delete</code> or <code>*</code>; separate several with spaces.
          ${page?.maxExpiry ? html`At most ${page.maxExpiry}.` : html`<code>never</code> for no end date.`}</p>
      </section>
      <section aria-labelledby="token-list-title">
        <h2 id="token-list-title">${this.showAll ? 'Every token' : 'Your tokens'}</h2>
        ${page?.admin ? html`<label class="check"><input type="checkbox" .checked=${this.showAll} @change=${(event: Event) => this.toggleAll(event)}> Show every user's tokens and robot accounts</label>` : nothing}
        ${page === undefined ? (this.error ? nothing : html`<p role="status">Loading…</p>`) : this.renderTable(page)}
      </section>
    `
  }
}

customElements.define('tokens-view', TokensView)
