// <repository-delete-dialog>: administrators delete a whole repository (every manifest) after typing its name, optionally collecting garbage right after.
import { LitElement, html, nothing } from 'lit'
import type { RepositoryDeleteResult } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'

type Phase = 'closed' | 'confirm' | 'deleting'

export class RepositoryDeleteDialog extends LitElement {
  static override properties = {
    phase: { state: true },
    typed: { state: true },
    collect: { state: true },
    error: { state: true },
  }

  declare phase: Phase
  declare typed: string
  declare collect: boolean
  declare error: string
  private repository = ''
  private tagCount = 0

  constructor() {
    super()
    this.phase = 'closed'
    this.typed = ''
    this.collect = true
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private get dialog(): HTMLDialogElement | null {
    return this.querySelector('dialog')
  }

  async open(repository: string, tagCount: number): Promise<void> {
    this.repository = repository
    this.tagCount = tagCount
    this.typed = ''
    this.error = ''
    this.phase = 'confirm'
    await this.updateComplete
    this.dialog?.showModal()
  }

  private close(): void {
    this.dialog?.close()
    this.phase = 'closed'
  }

  private async confirm(): Promise<void> {
    this.phase = 'deleting'
    this.error = ''
    try {
      const result = await call<RepositoryDeleteResult>('DELETE', `repository${query({ repository: this.repository, gc: this.collect ? '1' : undefined })}`)
      this.close()
      this.dispatchEvent(new CustomEvent<RepositoryDeleteResult>('repository-deleted', { detail: result, bubbles: true }))
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
      this.phase = 'confirm'
    }
  }

  protected override render(): unknown {
    const matches = this.typed.trim() === this.repository
    return html`
      <dialog aria-labelledby="repository-delete-title" aria-describedby="repository-delete-what" @close=${() => (this.phase = 'closed')}>
        <h2 id="repository-delete-title">Delete the whole repository?</h2>
        <p id="repository-delete-what">
          Every image of <strong>${this.repository}</strong> is deleted${this.tagCount > 0 ? html`, with its ${this.tagCount === 1 ? 'tag' : `${this.tagCount} tags`}` : nothing}. This cannot be undone.
        </p>
        <label for="repository-delete-name">Type <code>${this.repository}</code> to confirm</label>
        <input id="repository-delete-name" type="text" autocomplete="off" spellcheck="false" .value=${this.typed} @input=${(event: InputEvent) => (this.typed = (event.target as HTMLInputElement).value)} />
        <label class="check">
          <input type="checkbox" .checked=${this.collect} @change=${(event: Event) => (this.collect = (event.target as HTMLInputElement).checked)} />
          Free the disk space now (garbage collection: pushes pause while it runs, pulls go on)
        </label>
        ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
        <div class="buttons">
          <button type="button" autofocus @click=${() => this.close()}>Cancel</button>
          <button type="button" class="danger" ?disabled=${this.phase !== 'confirm' || !matches} @click=${() => void this.confirm()}>
            ${this.phase === 'deleting' ? 'Deleting…' : 'Delete repository'}
          </button>
        </div>
      </dialog>
    `
  }
}

customElements.define('repository-delete-dialog', RepositoryDeleteDialog)
