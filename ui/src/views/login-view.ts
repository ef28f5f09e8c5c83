// <login-view>: user name and password, posted as JSON (never in a URL); errors shown in the page.
import { LitElement, html, nothing } from 'lit'
import type { SessionInfo, SignedOut } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'

export class LoginView extends LitElement {
  static override properties = {
    signedOut: { attribute: false },
    notice: { attribute: false },
    error: { state: true },
    busy: { state: true },
  }

  declare signedOut: SignedOut
  declare notice: string
  declare error: string
  declare busy: boolean

  constructor() {
    super()
    this.signedOut = { loginAvailable: true }
    this.notice = ''
    this.error = ''
    this.busy = false
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  private async submit(event: SubmitEvent): Promise<void> {
    event.preventDefault()
    const form = event.target as HTMLFormElement
    const data = new FormData(form)
    this.busy = true
    this.error = ''
    try {
      const session = await call<SessionInfo>('POST', 'login', { username: String(data.get('username') ?? ''), password: String(data.get('password') ?? '') })
      this.dispatchEvent(new CustomEvent<SessionInfo>('signed-in', { detail: session, bubbles: true }))
    } catch (error) {
      this.error =
        error instanceof ApiError
          ? error.status === 401
            ? 'Wrong user name or password.'
            : error.status === 429
              ? 'Too many failed sign-ins. Wait a few minutes, then try again.'
              : error.explanation
          : String(error)
      const password = form.querySelector<HTMLInputElement>('#password')
      if (password) {
        password.value = ''
        password.focus()
      }
    } finally {
      this.busy = false
    }
  }

  protected override render(): unknown {
    return html`
      <section class="card login" aria-labelledby="login-title">
        <h1 id="login-title" tabindex="-1">Sign in to Portier</h1>
        ${this.notice ? html`<p class="notice" role="status">${this.notice}</p>` : nothing}
        ${this.signedOut.loginAvailable
          ? html`
              <form method="post" action="#" @submit=${(event: SubmitEvent) => void this.submit(event)} novalidate>
                <label for="username">User name</label>
                <input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus />
                <label for="password">Password</label>
                <input id="password" name="password" type="password" autocomplete="current-password" required />
                ${this.error ? html`<p class="error" role="alert" id="login-error">${this.error}</p>` : nothing}
                <button type="submit" class="primary" ?disabled=${this.busy}>${this.busy ? 'Signing in…' : 'Sign in'}</button>
              </form>
              <p class="hint">Use the same user name and password as for <code>docker login</code>.</p>
            `
          : html`<p class="error" role="alert">${this.signedOut.reason ?? 'Signing in is not available.'}</p>`}
      </section>
    `
  }
}

customElements.define('login-view', LoginView)
