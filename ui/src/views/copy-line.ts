// <copy-line>: a command shown as code with a button that copies it.
import { LitElement, html } from 'lit'

export class CopyLine extends LitElement {
  static override properties = {
    text: { attribute: false },
    label: { attribute: false },
    copied: { state: true },
  }

  declare text: string
  declare label: string
  declare copied: boolean

  constructor() {
    super()
    this.text = ''
    this.label = 'Copy'
    this.copied = false
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private async copy(): Promise<void> {
    try {
      await navigator.clipboard.writeText(this.text)
      this.copied = true
      window.setTimeout(() => (this.copied = false), 2000)
    } catch {
      // No clipboard permission: select the text so the user can copy it by hand.
      const code = this.querySelector('code')
      if (code) window.getSelection()?.selectAllChildren(code)
    }
  }

  protected override render(): unknown {
    return html`<div class="copy-line">
      <code>${this.text}</code>
      <button type="button" class="quiet" aria-label=${`${this.label}: ${this.text}`} @click=${() => void this.copy()}>${this.copied ? 'Copied' : 'Copy'}</button>
    </div>`
  }
}

customElements.define('copy-line', CopyLine)
