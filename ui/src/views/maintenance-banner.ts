// <maintenance-banner>: tells every visitor, signed in or not, that the registry is read-only for maintenance (checked every 30 s and after a switch).
import { LitElement, html, nothing } from 'lit'
import type { MaintenanceInfo } from '../../../src/ui/types.js'
import { call } from '../api.js'
import { formatDate } from '../format.js'

const POLL_MS = 30_000
/** Sent on window by the status panel's switch, with the new state. */
export const MAINTENANCE_CHANGED = 'portier-maintenance-changed'

export class MaintenanceBanner extends LitElement {
  static override properties = { state: { state: true } }

  declare state: MaintenanceInfo | undefined
  private timer: ReturnType<typeof setInterval> | undefined

  constructor() {
    super()
    this.state = undefined
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private readonly onChanged = (event: Event): void => {
    this.state = (event as CustomEvent<MaintenanceInfo>).detail
  }

  override connectedCallback(): void {
    super.connectedCallback()
    window.addEventListener(MAINTENANCE_CHANGED, this.onChanged)
    void this.load()
    this.timer = setInterval(() => void this.load(), POLL_MS)
  }

  override disconnectedCallback(): void {
    window.removeEventListener(MAINTENANCE_CHANGED, this.onChanged)
    clearInterval(this.timer)
    super.disconnectedCallback()
  }

  private async load(): Promise<void> {
    try {
      this.state = await call<MaintenanceInfo>('GET', 'maintenance')
    } catch {
      // No banner is better than a wrong one; the next poll tries again.
    }
  }

  protected override render(): unknown {
    const state = this.state
    if (!state?.on) return nothing
    return html`<div class="maintenance-banner" role="status">
      <strong>Maintenance:</strong> the registry is read-only (pulls work; pushes and deletes are refused) — ${state.message}${state.until ? html` <span>(expected until ${formatDate(state.until)})</span>` : nothing}
    </div>`
  }
}

customElements.define('maintenance-banner', MaintenanceBanner)
