// <audit-view>: the audit trail for administrators: filters in the hash route, newest first, and the shown entries exported as JSON lines.
import { LitElement, html, nothing } from 'lit'
import type { AuditEntryView, AuditPage } from '../../../src/ui/types.js'
import { ApiError, get, query } from '../api.js'
import { formatBytes, formatDate, shortDigest } from '../format.js'
import { href, type AuditFilter } from '../router.js'
import type { NavigateDetail } from '../app.js'

const LIMIT = 500
const ACTIONS = ['blob.push', 'blob.mount', 'blob.delete', 'upload.cancel', 'manifest.push', 'manifest.delete', 'repository.delete', 'login', 'login.token', 'login.ui', 'token.create', 'token.revoke', 'token.refused', 'user.create', 'user.password', 'user.delete', 'group.create', 'group.update', 'group.delete', 'grant.create', 'grant.delete']

function what(entry: AuditEntryView): string {
  if (!entry.repository) return entry.subject ?? ''
  return `${entry.repository}${entry.tag ? `:${entry.tag}` : ''}${entry.digest ? ` @${shortDigest(entry.digest)}` : ''}${entry.sourceRepository ? ` (from ${entry.sourceRepository})` : ''}`
}

export class AuditView extends LitElement {
  static override properties = {
    filter: { attribute: false },
    entries: { state: true },
    error: { state: true },
  }

  declare filter: AuditFilter
  declare entries: AuditEntryView[] | undefined
  declare error: string
  private loadCount = 0

  constructor() {
    super()
    this.filter = { repo: '', user: '', since: '', action: '' }
    this.entries = undefined
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('filter')) void this.load()
  }

  private async load(): Promise<void> {
    const ticket = ++this.loadCount
    try {
      const page = await get<AuditPage>(`audit${query({ ...this.filter, limit: LIMIT })}`)
      if (ticket !== this.loadCount) return
      this.entries = page.entries
      this.error = ''
    } catch (error) {
      if (ticket !== this.loadCount) return
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  private apply(event: SubmitEvent): void {
    event.preventDefault()
    const form = new FormData(event.target as HTMLFormElement)
    const field = (name: string): string => String(form.get(name) ?? '').trim()
    const filter: AuditFilter = { repo: field('repo'), user: field('user'), since: field('since'), action: field('action') }
    this.dispatchEvent(new CustomEvent<NavigateDetail>('navigate', { detail: { href: href({ view: 'audit', ...filter }) }, bubbles: true }))
  }

  /** The entries on screen as JSON lines, downloaded as a file. */
  private exportLines(): void {
    const lines = (this.entries ?? []).map((entry) => JSON.stringify(entry)).join('\n')
    const url = URL.createObjectURL(new Blob([lines ? `${lines}\n` : ''], { type: 'application/x-ndjson' }))
    const link = document.createElement('a')
    link.href = url
    link.download = `portier-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.jsonl`
    link.click()
    setTimeout(() => URL.revokeObjectURL(url), 10_000)
  }

  protected override render(): unknown {
    const { filter, entries } = this
    return html`
      <h1 tabindex="-1">Audit trail</h1>
      <form class="filters" @submit=${(event: SubmitEvent) => this.apply(event)}>
        <label>Repository <input name="repo" .value=${filter.repo} placeholder="team/*" autocomplete="off" /></label>
        <label>User <input name="user" .value=${filter.user} autocomplete="off" /></label>
        <label>Since <input name="since" .value=${filter.since} placeholder="24h, 7d or 2026-01-31" autocomplete="off" /></label>
        <label>Action
          <select name="action">
            <option value="" ?selected=${filter.action === ''}>any</option>
            ${ACTIONS.map((action) => html`<option value=${action} ?selected=${filter.action === action}>${action}</option>`)}
          </select>
        </label>
        <button type="submit">Show</button>
        <button type="button" class="quiet" ?disabled=${!entries || entries.length === 0} @click=${() => this.exportLines()}>Export JSON lines</button>
      </form>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${entries === undefined && !this.error ? html`<p role="status">Loading…</p>` : nothing}
      ${entries && entries.length === 0 ? html`<p>No entries.</p>` : nothing}
      ${entries && entries.length > 0
        ? html`
            <p class="muted">${entries.length === LIMIT ? `The newest ${LIMIT} entries.` : `${entries.length} entries.`}</p>
            <table class="responsive audit">
              <thead><tr><th scope="col">Time</th><th scope="col">Action</th><th scope="col">Outcome</th><th scope="col">User</th><th scope="col">Client</th><th scope="col">What</th><th scope="col">Size</th></tr></thead>
              <tbody>
                ${entries.map(
                  (entry) => html`<tr>
                    <td data-label="Time">${formatDate(entry.at)}</td>
                    <td data-label="Action">${entry.action}</td>
                    <td data-label="Outcome"><span class="state ${entry.outcome === 'success' ? 'up' : 'down'}">${entry.outcome}</span></td>
                    <td data-label="User">${entry.user ?? '—'}</td>
                    <td data-label="Client" title=${entry.userAgent ?? ''}>${entry.client}</td>
                    <td data-label="What"><code>${what(entry)}</code></td>
                    <td data-label="Size">${entry.size === undefined ? '' : formatBytes(entry.size)}</td>
                  </tr>`,
                )}
              </tbody>
            </table>
          `
        : nothing}
    `
  }
}

customElements.define('audit-view', AuditView)
