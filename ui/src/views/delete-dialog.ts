// <delete-dialog>: names the manifest digest and every tag that goes with it, then deletes on confirmation.
import { LitElement, html, nothing } from 'lit'
import type { DeletePlan, DeleteResult } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'

type Phase = 'closed' | 'loading' | 'confirm' | 'deleting' | 'refused'

export class DeleteDialog extends LitElement {
  static override properties = {
    phase: { state: true },
    plan: { state: true },
    error: { state: true },
  }

  declare phase: Phase
  declare plan: DeletePlan | undefined
  declare error: string
  private repository = ''
  private digest = ''

  constructor() {
    super()
    this.phase = 'closed'
    this.plan = undefined
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private get dialog(): HTMLDialogElement | null {
    return this.querySelector('dialog')
  }

  /** Opens the dialog for `digest` in `repository` and asks the server which tags point at it. */
  async open(repository: string, digest: string): Promise<void> {
    this.repository = repository
    this.digest = digest
    this.plan = undefined
    this.error = ''
    this.phase = 'loading'
    await this.updateComplete
    this.dialog?.showModal()
    try {
      this.plan = await call<DeletePlan>('GET', `delete-plan${query({ repository, digest })}`)
      this.phase = 'confirm'
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
      this.phase = 'confirm'
    }
  }

  private close(): void {
    this.dialog?.close()
    this.phase = 'closed'
  }

  private async confirm(): Promise<void> {
    this.phase = 'deleting'
    this.error = ''
    try {
      const result = await call<DeleteResult>('DELETE', `manifest${query({ repository: this.repository, digest: this.digest })}`)
      this.close()
      this.dispatchEvent(new CustomEvent<DeleteResult>('deleted', { detail: result, bubbles: true }))
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
      // Deletes turned off in the registry stay off: trying again cannot help.
      this.phase = error instanceof ApiError && error.code === 'UNSUPPORTED' ? 'refused' : 'confirm'
    }
  }

  protected override render(): unknown {
    const tags = this.plan?.tags ?? []
    return html`
      <dialog aria-labelledby="delete-title" aria-describedby="delete-what" @close=${() => (this.phase = 'closed')}>
        <h2 id="delete-title">Delete this manifest?</h2>
        <p id="delete-what">
          From <strong>${this.repository}</strong>, manifest <code class="digest" data-digest=${this.digest}>${this.digest}</code>.
        </p>
        ${this.phase === 'loading' ? html`<p role="status">Finding the tags that point at it…</p>` : nothing}
        ${this.plan
          ? tags.length > 0
            ? html`<p>The registry deletes by digest, so ${tags.length === 1 ? 'this tag goes' : `all ${tags.length} tags go`} with it:</p>
                <ul class="doomed" aria-label="Tags that will be deleted">
                  ${tags.map((tag) => html`<li><code>${tag}</code></li>`)}
                </ul>`
            : html`<p>No tag points at it.</p>`
          : nothing}
        <p class="hint">This cannot be undone. The layers stay on disk until the registry's garbage collection runs.</p>
        ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
        <div class="buttons">
          <button type="button" autofocus @click=${() => this.close()}>Cancel</button>
          <button type="button" class="danger" ?disabled=${this.phase !== 'confirm' || this.plan === undefined} @click=${() => void this.confirm()}>
            ${this.phase === 'deleting' ? 'Deleting…' : tags.length > 0 ? `Delete manifest and ${tags.length === 1 ? '1 tag' : `${tags.length} tags`}` : 'Delete manifest'}
          </button>
        </div>
      </dialog>
    `
  }
}

customElements.define('delete-dialog', DeleteDialog)
