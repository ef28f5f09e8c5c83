// <status-view>: what an operator glances at: upstream health, certificate expiry, recent pushes.
import { LitElement, html, nothing } from 'lit'
import type { StatusSnapshot } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'
import { formatDate } from '../format.js'
import { href } from '../router.js'

const DAY_MS = 86_400_000
const EXPIRY_WARNING_DAYS = 14

export class StatusView extends LitElement {
  static override properties = {
    status: { state: true },
    error: { state: true },
  }

  declare status: StatusSnapshot | undefined
  declare error: string

  constructor() {
    super()
    this.status = undefined
    this.error = ''
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
      this.status = await call<StatusSnapshot>('GET', 'status')
      this.error = ''
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  protected override render(): unknown {
    const status = this.status
    const now = Date.now()
    return html`
      <h1 tabindex="-1">Status</h1>
      <p><button type="button" class="quiet" @click=${() => void this.load()}>Refresh</button></p>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${status === undefined && !this.error ? html`<p role="status">Loading…</p>` : nothing}
      ${status
        ? html`
            <section aria-labelledby="upstreams-title">
              <h2 id="upstreams-title">Upstream registries</h2>
              <table class="responsive">
                <thead><tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Detail</th></tr></thead>
                <tbody>
                  ${status.upstreams.map(
                    (upstream) => html`<tr>
                      <th scope="row">${upstream.name}</th>
                      <td data-label="URL"><code>${upstream.url}</code></td>
                      <td data-label="State">${upstream.healthy === undefined
                        ? html`<span class="state unknown">unknown</span>`
                        : upstream.healthy
                          ? html`<span class="state up">up</span>`
                          : html`<span class="state down">down</span>`}${upstream.since ? html` <span class="muted">since ${formatDate(upstream.since)}</span>` : nothing}</td>
                      <td data-label="Detail">${upstream.detail ?? ''}</td>
                    </tr>`,
                  )}
                </tbody>
              </table>
            </section>
            <section aria-labelledby="certificates-title">
              <h2 id="certificates-title">Certificates</h2>
              ${status.certificates.length === 0
                ? html`<p>TLS is off (Portier serves plain HTTP behind another proxy).</p>`
                : html`<table class="responsive">
                    <thead><tr><th scope="col">Names</th><th scope="col">Expires</th><th scope="col">Left</th></tr></thead>
                    <tbody>
                      ${status.certificates.map((certificate) => {
                        const days = Math.floor((new Date(certificate.notAfter).getTime() - now) / DAY_MS)
                        return html`<tr>
                          <th scope="row">${certificate.names.join(', ')}${certificate.selfSigned ? html` <span class="badge">self-signed</span>` : nothing}</th>
                          <td data-label="Expires">${formatDate(certificate.notAfter)}</td>
                          <td data-label="Left"><span class=${days < EXPIRY_WARNING_DAYS ? 'state down' : 'state up'}>${days < 0 ? 'expired' : `${days} days`}</span></td>
                        </tr>`
                      })}
                    </tbody>
                  </table>`}
            </section>
            <section aria-labelledby="pushes-title">
              <h2 id="pushes-title">Recent pushes</h2>
              ${status.recentPushes.length === 0
                ? html`<p>No pushes since Portier started.</p>`
                : html`<table class="responsive">
                    <thead><tr><th scope="col">When</th><th scope="col">Image</th><th scope="col">By</th></tr></thead>
                    <tbody>
                      ${status.recentPushes.map(
                        (push) => html`<tr>
                          <td>${formatDate(push.at)}</td>
                          <td data-label="Image"><a href=${push.reference ? href({ view: 'manifest', repository: push.repository, reference: push.reference }) : href({ view: 'tags', repository: push.repository, last: '' })}>${push.repository}${push.reference ? (push.reference.includes(':') ? '@' : ':') + push.reference : ''}</a></td>
                          <td data-label="By">${push.user ?? '—'}</td>
                        </tr>`,
                      )}
                    </tbody>
                  </table>`}
            </section>
          `
        : nothing}
    `
  }
}

customElements.define('status-view', StatusView)
