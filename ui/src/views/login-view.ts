// <login-view>: user name and password, posted as JSON (never in a URL), and the single sign-on button; errors shown in the page.
import { LitElement, html, nothing } from 'lit'
import type { SessionInfo, SignedOut, SsoOffer } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'

/** Why a single sign-on came back to this page (`?sso_error=`, set by Portier's callback); the details are in Portier's log. */
const SSO_ERRORS: Record<string, string> = {
  unavailable: 'Single sign-on could not reach the identity provider. Try again later, or ask your administrator.',
  expired: 'The single sign-on took too long, or was started in another browser. Try again.',
  state: 'Single sign-on refused: the answer did not belong to the sign-in this browser started. Try again.',
  denied: 'The identity provider did not sign you in.',
  refused: 'Single sign-on refused: the identity provider\'s answer failed Portier\'s checks. Ask your administrator (Portier\'s log says why).',
  claims: 'Single sign-on refused: the identity provider did not say who you are. Ask your administrator (Portier\'s log says why).',
}

/** The message for `?sso_error=` in the page's address, once: the address is cleaned so a reload does not show it again. */
function takeSsoError(): string {
  const params = new URLSearchParams(location.search)
  const code = params.get('sso_error')
  if (code === null) return ''
  history.replaceState(null, '', `${location.pathname}${location.hash}`)
  return SSO_ERRORS[code] ?? 'Single sign-on failed.'
}

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
    this.ssoError = takeSsoError()
  }

  private readonly ssoError: string

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

  private sso(offer: SsoOffer): unknown {
    // A full-page navigation: the browser goes to the provider and comes back to Portier's callback.
    return html`
      <div class="sso">
        ${this.ssoError && offer.available ? html`<p class="error" role="alert" id="sso-error">${this.ssoError}</p>` : nothing}
        ${offer.available
          ? html`<a class="button primary" href=${offer.loginUrl}>Sign in with ${offer.label}</a>`
          : html`<p class="error" role="alert" id="sso-error">Single sign-on unavailable: ${offer.reason ?? 'the identity provider cannot be reached'}</p>`}
      </div>
      ${this.signedOut.loginAvailable ? html`<p class="or" aria-hidden="true"><span>or with a password</span></p>` : nothing}
    `
  }

  protected override render(): unknown {
    const offer = this.signedOut.sso
    return html`
      <section class="card login" aria-labelledby="login-title">
        <h1 id="login-title" tabindex="-1">Sign in to Portier</h1>
        ${this.notice ? html`<p class="notice" role="status">${this.notice}</p>` : nothing}
        ${offer ? this.sso(offer) : nothing}
        ${offer && !this.signedOut.loginAvailable
          ? nothing
          : this.signedOut.loginAvailable
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
