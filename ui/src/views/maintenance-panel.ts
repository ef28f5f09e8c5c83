// <maintenance-panel>: the status panel's maintenance switch for administrators: the state, the writes in flight, on/off with a message and an expected length.
import { LitElement, html, nothing } from 'lit'
import type { MaintenanceInfo } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'
import { formatDate } from '../format.js'
import { MAINTENANCE_CHANGED } from './maintenance-banner.js'

export class MaintenancePanel extends LitElement {
  static override properties = {
    state: { state: true },
    error: { state: true },
    busy: { state: true },
  }

  declare state: MaintenanceInfo | undefined
  declare error: string
  declare busy: boolean

  constructor() {
    super()
    this.state = undefined
    this.error = ''
    this.busy = false
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
      this.state = await call<MaintenanceInfo>('GET', 'maintenance')
      this.error = ''
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  private async switchTo(on: boolean, form?: HTMLFormElement): Promise<void> {
    const body: Record<string, unknown> = { on }
    if (form) {
      const data = new FormData(form)
      const message = String(data.get('message') ?? '').trim()
      const retryAfter = String(data.get('retry_after') ?? '').trim()
      if (message) body.message = message
      if (retryAfter) body.retry_after = retryAfter
    }
    this.busy = true
    try {
      this.state = await call<MaintenanceInfo>('PUT', 'maintenance', body)
      this.error = ''
      window.dispatchEvent(new CustomEvent(MAINTENANCE_CHANGED, { detail: this.state }))
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.busy = false
    }
  }

  protected override render(): unknown {
    const state = this.state
    return html`
      <section aria-labelledby="maintenance-title">
        <h2 id="maintenance-title">Maintenance</h2>
        ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
        ${state === undefined ? (this.error ? nothing : html`<p role="status">Loading…</p>`) : html`
          <p>
            ${state.on
              ? html`<span class="state down">on</span> since ${state.since ? formatDate(state.since) : '—'}${state.by ? html` by <strong>${state.by}</strong>` : nothing}: pushes and deletes are refused. ${state.message}`
              : html`<span class="state up">off</span>: pushes and deletes are accepted.`}
          </p>
          ${state.inFlight
            ? html`<p class="muted">Writes in flight: ${state.inFlight.uploads} upload${state.inFlight.uploads === 1 ? '' : 's'}, ${state.inFlight.writes} other${state.on && state.drainUntil && state.inFlight.uploads > 0 ? html`; uploads begun before may finish until ${formatDate(state.drainUntil)}` : nothing}.</p>`
            : nothing}
          ${state.canSwitch
            ? state.on
              ? html`<p><button type="button" ?disabled=${this.busy} @click=${() => void this.switchTo(false)}>Switch maintenance off</button></p>`
              : html`<form class="maintenance-form" @submit=${(event: SubmitEvent) => {
                  event.preventDefault()
                  void this.switchTo(true, event.target as HTMLFormElement)
                }}>
                  <label>Message for clients <input name="message" maxlength="500" placeholder=${state.message}></label>
                  <label>Expected length <input name="retry_after" placeholder="e.g. 10m (optional)" size="12"></label>
                  <button type="submit" ?disabled=${this.busy}>Switch maintenance on</button>
                </form>`
            : nothing}
        `}
      </section>
    `
  }
}

customElements.define('maintenance-panel', MaintenancePanel)
