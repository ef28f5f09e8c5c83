// <access-view>: "Users & access" for administrators: htpasswd users, groups and grants (kept in the store), the configuration's rules read-only, and why a user may do what on a repository.
import { LitElement, html, nothing } from 'lit'
import type { AccessExplanation, AccessPage } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'
import { formatDate } from '../format.js'

const ACTIONS = ['pull', 'push', 'delete'] as const

export class AccessView extends LitElement {
  static override properties = {
    page: { state: true },
    error: { state: true },
    notice: { state: true },
    busy: { state: true },
    explanation: { state: true },
    confirming: { state: true },
  }

  declare page: AccessPage | undefined
  declare error: string
  declare notice: string
  declare busy: boolean
  declare explanation: AccessExplanation | undefined
  /** What a Remove/Delete button waits to be confirmed for ("user:bob", "group:ci", "grant:3"). */
  declare confirming: string

  constructor() {
    super()
    this.page = undefined
    this.error = ''
    this.notice = ''
    this.busy = false
    this.explanation = undefined
    this.confirming = ''
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
      this.page = await call<AccessPage>('GET', 'access')
      this.error = ''
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  /** Runs a change, then shows `done` and reloads; a refusal is shown instead. */
  private async change(work: () => Promise<unknown>, done: string, form?: HTMLFormElement): Promise<void> {
    this.busy = true
    try {
      await work()
      this.error = ''
      this.notice = done
      this.confirming = ''
      form?.reset()
      await this.load()
    } catch (error) {
      this.notice = ''
      this.error = error instanceof ApiError ? error.explanation : String(error)
    } finally {
      this.busy = false
    }
  }

  private fields(event: SubmitEvent): { form: HTMLFormElement; field: (name: string) => string; data: FormData } {
    event.preventDefault()
    const form = event.target as HTMLFormElement
    const data = new FormData(form)
    return { form, data, field: (name) => String(data.get(name) ?? '').trim() }
  }

  private confirmed(key: string): boolean {
    if (this.confirming === key) return true
    this.confirming = key
    return false
  }

  private addUser(event: SubmitEvent): void {
    const { form, field } = this.fields(event)
    const user = field('user')
    void this.change(() => call('POST', 'users', { user, password: String(new FormData(form).get('password') ?? '') }), `User ${user} added.`, form)
  }

  private setPassword(event: SubmitEvent): void {
    const { form, field, data } = this.fields(event)
    const user = field('user')
    void this.change(() => call('PUT', 'users', { user, password: String(data.get('password') ?? '') }), `New password set for ${user}.`, form)
  }

  private removeUser(user: string): void {
    if (!this.confirmed(`user:${user}`)) return
    void this.change(() => call('DELETE', `users${query({ user })}`), `User ${user} removed (with their grants and group memberships).`)
  }

  private members(text: string): string[] {
    return text.split(/[\s,]+/).filter((member) => member !== '')
  }

  private addGroup(event: SubmitEvent): void {
    const { form, field } = this.fields(event)
    const name = field('name')
    void this.change(() => call('POST', 'groups', { name, members: this.members(field('members')) }), `Group ${name} created.`, form)
  }

  private saveGroup(event: SubmitEvent, name: string): void {
    const { field } = this.fields(event)
    void this.change(() => call('PUT', 'groups', { name, members: this.members(field('members')) }), `Members of ${name} saved.`)
  }

  private deleteGroup(name: string): void {
    if (!this.confirmed(`group:${name}`)) return
    void this.change(() => call('DELETE', `groups${query({ name })}`), `Group ${name} deleted (with its grants).`)
  }

  private addGrant(event: SubmitEvent): void {
    const { form, field, data } = this.fields(event)
    const actions = ACTIONS.filter((action) => data.get(action) === 'on')
    const body = { kind: field('kind'), subject: field('subject'), repository: field('repository'), actions }
    void this.change(() => call('POST', 'grants', body), `Granted ${actions.join(', ')} on ${body.repository} to ${body.kind} ${body.subject}.`, form)
  }

  private removeGrant(id: number): void {
    if (!this.confirmed(`grant:${id}`)) return
    void this.change(() => call('DELETE', `grants${query({ id })}`), `Grant ${id} removed.`)
  }

  private async explain(event: SubmitEvent): Promise<void> {
    const { field } = this.fields(event)
    try {
      this.explanation = await call<AccessExplanation>('GET', `explain${query({ user: field('user'), repository: field('repository') })}`)
      this.error = ''
    } catch (error) {
      this.explanation = undefined
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  private confirmLabel(key: string, verb: string, what: string): string {
    return this.confirming === key ? `Confirm ${verb.toLowerCase()} ${what}` : `${verb} ${what}`
  }

  private renderUsers(page: AccessPage): unknown {
    const { users } = page
    return html`
      <section aria-labelledby="users-title">
        <h2 id="users-title">Users</h2>
        <p class="hint">${users.file ? html`Kept in the htpasswd file <code>${users.file}</code> (what Basic logins check; <code>portier passwd</code> edits the same file).` : nothing}</p>
        ${users.writable ? nothing : html`<p class="error" role="note">${users.reason}</p>`}
        ${users.names.length === 0 ? html`<p class="muted">No users.</p>` : html`
          <table class="access-users">
            <thead><tr><th>User</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
            <tbody>
              ${users.names.map((user) => html`
                <tr data-user=${user}>
                  <td>${user}</td>
                  <td class="actions">${users.writable ? html`<button type="button" class="danger quiet" ?disabled=${this.busy}
                    aria-label=${this.confirmLabel(`user:${user}`, 'Remove', `user ${user}`)} @click=${() => this.removeUser(user)}>${this.confirming === `user:${user}` ? 'Confirm remove' : 'Remove'}</button>` : nothing}</td>
                </tr>`)}
            </tbody>
          </table>`}
        ${users.writable ? html`
          <form class="token-form" aria-label="Add a user" @submit=${(event: SubmitEvent) => this.addUser(event)}>
            <label>New user name <input name="user" required maxlength="255" autocomplete="off"></label>
            <label>Initial password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
            <button type="submit" class="primary" ?disabled=${this.busy}>Add user</button>
          </form>
          <form class="token-form" aria-label="Set a new password" @submit=${(event: SubmitEvent) => this.setPassword(event)}>
            <label>User to reset <select name="user" required aria-label="User to reset">${users.names.map((user) => html`<option value=${user}>${user}</option>`)}</select></label>
            <label>New password <input name="password" type="password" required minlength="8" autocomplete="new-password"></label>
            <button type="submit" ?disabled=${this.busy || users.names.length === 0}>Set password</button>
          </form>` : nothing}
      </section>
    `
  }

  private renderGroups(page: AccessPage): unknown {
    return html`
      <section aria-labelledby="groups-title">
        <h2 id="groups-title">Groups</h2>
        <table class="access-groups">
          <thead><tr><th>Group</th><th>Members</th><th>Source</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            ${page.configGroups.map((group) => html`
              <tr data-config-group=${group.name}>
                <td>${group.name}</td>
                <td>${group.members.join(', ') || html`<span class="muted">filled by the directory or sign-in provider</span>`}</td>
                <td><span class="badge">auth.groups (configuration, read-only)</span></td>
                <td></td>
              </tr>`)}
            ${page.groups.map((group) => html`
              <tr data-group=${group.name}>
                <td>${group.name}</td>
                <td>
                  <form class="inline-form" @submit=${(event: SubmitEvent) => this.saveGroup(event, group.name)}>
                    <input name="members" aria-label=${`Members of ${group.name}`} .value=${group.members.join(', ')} size="30">
                    <button type="submit" ?disabled=${this.busy} aria-label=${`Save members of ${group.name}`}>Save</button>
                  </form>
                </td>
                <td><span class="badge">UI</span> <span class="muted">${group.updatedBy}, ${formatDate(group.updatedAt)}</span></td>
                <td class="actions"><button type="button" class="danger quiet" ?disabled=${this.busy}
                  aria-label=${this.confirmLabel(`group:${group.name}`, 'Delete', `group ${group.name}`)} @click=${() => this.deleteGroup(group.name)}>${this.confirming === `group:${group.name}` ? 'Confirm delete' : 'Delete'}</button></td>
              </tr>`)}
          </tbody>
        </table>
        <form class="token-form" aria-label="Create a group" @submit=${(event: SubmitEvent) => this.addGroup(event)}>
          <label>Group name <input name="name" required maxlength="64" placeholder="e.g. ci"></label>
          <label>Group members <input name="members" size="30" placeholder="alice, bob"></label>
          <button type="submit" class="primary" ?disabled=${this.busy}>Create group</button>
        </form>
      </section>
    `
  }

  private renderGrants(page: AccessPage): unknown {
    return html`
      <section aria-labelledby="grants-title">
        <h2 id="grants-title">Grants</h2>
        <p class="hint">A grant adds to what the configuration's rules give (it never takes away). Changes apply here at once and ${page.propagation}.
          ${page.defaultRule ? html`<strong>auth.acl is empty: every signed-in user may already do everything, so grants add nothing until rules are configured.</strong>` : nothing}</p>
        ${page.grants.length === 0 ? html`<p class="muted">No grants yet.</p>` : html`
          <table class="access-grants">
            <thead><tr><th>#</th><th>To</th><th>Repositories</th><th>Actions</th><th>Made by</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
            <tbody>
              ${page.grants.map((grant) => html`
                <tr data-grant=${grant.id}>
                  <td>${grant.id}</td>
                  <td>${grant.kind} <strong>${grant.subject}</strong></td>
                  <td><code>${grant.repository}</code></td>
                  <td>${grant.actions.join(', ')}</td>
                  <td><span class="muted">${grant.createdBy}, ${formatDate(grant.createdAt)}</span></td>
                  <td class="actions"><button type="button" class="danger quiet" ?disabled=${this.busy}
                    aria-label=${this.confirmLabel(`grant:${grant.id}`, 'Remove', `grant ${grant.id}`)} @click=${() => this.removeGrant(grant.id)}>${this.confirming === `grant:${grant.id}` ? 'Confirm remove' : 'Remove'}</button></td>
                </tr>`)}
            </tbody>
          </table>`}
        <form class="token-form" aria-label="Add a grant" @submit=${(event: SubmitEvent) => this.addGrant(event)}>
          <label>Grant to <select name="kind" aria-label="Grant to"><option value="group">group</option><option value="user">user</option></select></label>
          <label>User or group name <input name="subject" required maxlength="255"></label>
          <label>Repositories <input name="repository" required placeholder="team/*"></label>
          <fieldset class="actions-choice"><legend>Actions</legend>
            ${ACTIONS.map((action) => html`<label class="check"><input type="checkbox" name=${action} ?checked=${action === 'pull'}> ${action}</label>`)}
          </fieldset>
          <button type="submit" class="primary" ?disabled=${this.busy}>Add grant</button>
        </form>
        <p class="hint">Repositories: a name or a glob (<code>team/*</code> within one level, <code>team/**</code> at any depth, <code>\${account}</code> for the user's own name).</p>
      </section>
    `
  }

  private renderRules(page: AccessPage): unknown {
    return html`
      <section aria-labelledby="rules-title">
        <h2 id="rules-title">Rules from the configuration</h2>
        <p class="hint">auth.acl, read-only here: the first rule that matches a caller and repository decides what the rules give; grants add to it.</p>
        ${page.defaultRule ? html`<p class="muted">auth.acl is empty: the default rule lets every signed-in user do everything.</p>` : html`
          <table class="access-rules">
            <thead><tr><th>Rule</th><th>Matches</th><th>Actions</th><th>Source</th></tr></thead>
            <tbody>
              ${page.rules.map((rule) => html`
                <tr data-rule=${rule.number}>
                  <td>${rule.number}</td>
                  <td>${rule.match}${rule.comment ? html` <span class="muted">(${rule.comment})</span>` : nothing}</td>
                  <td>${rule.actions.join(', ')}</td>
                  <td><code>${rule.key}</code> <span class="badge">configuration</span></td>
                </tr>`)}
            </tbody>
          </table>`}
      </section>
    `
  }

  private renderExplain(): unknown {
    const result = this.explanation
    return html`
      <section aria-labelledby="explain-title">
        <h2 id="explain-title">Explain</h2>
        <form class="token-form" aria-label="Explain access" @submit=${(event: SubmitEvent) => void this.explain(event)}>
          <label>Explain for user <input name="user" required maxlength="255"></label>
          <label>On repository <input name="repository" required placeholder="team/app"></label>
          <button type="submit">Explain</button>
        </form>
        ${result ? html`
          <ul class="explanation" aria-live="polite">
            ${result.actions.map((entry) => html`
              <li data-action=${entry.action}>
                <span class="state ${entry.granted ? 'up' : 'down'}">${entry.action}: ${entry.granted ? 'yes' : 'no'}</span>
                ${entry.granted ? html`via ${entry.via.join('; ')}` : html`<span class="muted">${entry.reason}</span>`}
              </li>`)}
          </ul>
          <p class="hint">${result.user} on ${result.repository}, checked from ${result.clientIp} (rules with match.ip use this address).</p>` : nothing}
      </section>
    `
  }

  protected override render(): unknown {
    const page = this.page
    return html`
      <h1 tabindex="-1">Users &amp; access</h1>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${this.notice ? html`<p class="notice" role="status">${this.notice}</p>` : nothing}
      ${page === undefined
        ? (this.error ? nothing : html`<p role="status">Loading…</p>`)
        : html`${this.renderUsers(page)}${this.renderGroups(page)}${this.renderGrants(page)}${this.renderRules(page)}${this.renderExplain()}`}
    `
  }
}

customElements.define('access-view', AccessView)
