// <retention-panel>: the status panel's "what retention would delete" for administrators: the last dry run's manifests, their tags and why, and a button for a new dry run.
import { LitElement, html, nothing } from 'lit'
import type { RetentionPreview } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'
import { formatDate, shortDigest } from '../format.js'

export class RetentionPanel extends LitElement {
  static override properties = {
    state: { state: true },
    error: { state: true },
    busy: { state: true },
  }

  declare state: RetentionPreview | undefined
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
    void this.load(false)
  }

  private async load(refresh: boolean): Promise<void> {
    this.busy = true
    try {
      this.state = await call<RetentionPreview>('GET', refresh ? 'retention?refresh=1' : 'retention')
      this.error = ''
    } catch (error) {
      // Not configured on this gateway (404): the panel stays away.
      if (error instanceof ApiError && error.status === 404) this.state = undefined
      else this.error = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.busy = false
    }
  }

  protected override render(): unknown {
    const state = this.state
    if (state === undefined && !this.error) return nothing
    return html`
      <section aria-labelledby="retention-title">
        <h2 id="retention-title">Retention</h2>
        ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
        ${state && !state.configured ? html`<p class="muted">No retention rules are configured (retention.rules): nothing is ever deleted.</p>` : nothing}
        ${state?.configured
          ? html`
              ${state.error ? html`<p class="error" role="alert">${state.error}</p>` : nothing}
              <p>
                ${state.ranAt
                  ? html`Dry run of ${formatDate(state.ranAt)}: ${state.deletions.length === 0
                      ? 'retention would delete nothing now.'
                      : html`retention would delete <strong>${state.deletions.length}</strong> manifest${state.deletions.length === 1 ? '' : 's'} (${state.totals?.tagsDeleted ?? 0} tags) and keep ${state.totals?.tagsKept ?? 0} tags.`}`
                  : 'No dry run yet.'}
                <button type="button" class="quiet" ?disabled=${this.busy} @click=${() => void this.load(true)}>Dry run now</button>
              </p>
              ${state.deletions.length > 0
                ? html`<table class="responsive">
                    <thead><tr><th scope="col">Repository</th><th scope="col">Tags</th><th scope="col">Digest</th><th scope="col">Why</th></tr></thead>
                    <tbody>
                      ${state.deletions.map((entry) => html`<tr>
                        <td data-label="Repository">${entry.repository}</td>
                        <td data-label="Tags">${entry.tags.length > 0 ? entry.tags.join(', ') : '(untagged)'}</td>
                        <td data-label="Digest"><code title=${entry.digest}>${shortDigest(entry.digest)}</code></td>
                        <td data-label="Why">${entry.reason.replace(/^deleted: /, '')}</td>
                      </tr>`)}
                    </tbody>
                  </table>`
                : nothing}
            `
          : nothing}
      </section>
    `
  }
}

customElements.define('retention-panel', RetentionPanel)
