// <tags-view>: one repository's tags with digest, compressed size, created date and platforms; delete per tag.
import { LitElement, html, nothing } from 'lit'
import type { DeleteResult, PullsPerDay, RepositoryDeleteResult, SessionInfo, TagPage, TagSummary } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'
import { exactBytes, formatBytes, formatDate, pullLine, shortDigest } from '../format.js'
import { href } from '../router.js'
import type { DeleteDialog } from './delete-dialog.js'
import './delete-dialog.js'
import type { RepositoryDeleteDialog } from './repository-delete-dialog.js'
import './repository-delete-dialog.js'
import './copy-line.js'
import { barChart } from './charts.js'

const PAGE_SIZE = 50
const PULL_DAYS = 30

export class TagsView extends LitElement {
  static override properties = {
    repository: { attribute: false },
    last: { attribute: false },
    session: { attribute: false },
    page: { state: true },
    error: { state: true },
    notice: { state: true },
    pulls: { state: true },
  }

  declare repository: string
  declare last: string
  declare session: SessionInfo
  declare page: TagPage | undefined
  declare error: string
  declare notice: string
  declare pulls: PullsPerDay | undefined
  private loadCount = 0

  constructor() {
    super()
    this.repository = ''
    this.last = ''
    this.page = undefined
    this.error = ''
    this.notice = ''
    this.pulls = undefined
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('repository') || changed.has('last')) {
      if (changed.has('repository')) this.notice = ''
      void this.load()
    }
  }

  private async load(): Promise<void> {
    const ticket = ++this.loadCount
    this.page = undefined
    this.pulls = undefined
    // Pulls per day from the store, beside the tags (a gateway without it just shows no chart).
    call<PullsPerDay>('GET', `pulls${query({ repository: this.repository, days: PULL_DAYS })}`).then(
      (pulls) => {
        if (ticket === this.loadCount) this.pulls = pulls
      },
      () => undefined,
    )
    try {
      const page = await call<TagPage>('GET', `tags${query({ repository: this.repository, last: this.last, n: PAGE_SIZE })}`)
      if (ticket !== this.loadCount) return
      this.page = page
      this.error = ''
    } catch (error) {
      if (ticket !== this.loadCount) return
      this.error = error instanceof ApiError ? (error.status === 403 ? 'You may not pull from this repository.' : error.explanation) : String(error)
    }
  }

  private askDelete(tag: TagSummary): void {
    void this.querySelector<DeleteDialog>('delete-dialog')?.open(this.repository, tag.digest)
  }

  private deleted(result: DeleteResult): void {
    this.notice = `Deleted ${shortDigest(result.digest)}${result.tags.length ? ` and ${result.tags.length === 1 ? 'tag' : 'tags'} ${result.tags.join(', ')}` : ''}.`
    void this.load()
  }

  private repositoryDeleted(result: RepositoryDeleteResult): void {
    this.notice = `Deleted ${result.repository}: ${result.manifests.length} ${result.manifests.length === 1 ? 'manifest' : 'manifests'}${result.tags.length ? ` and ${result.tags.length === 1 ? 'tag' : 'tags'} ${result.tags.join(', ')}` : ''}.${result.gcRun ? ' A garbage collection is freeing the disk space (see Status).' : ' The layers stay on disk until the next garbage collection.'}`
    void this.load()
  }

  private row(tag: TagSummary, canDelete: boolean): unknown {
    const link = href({ view: 'manifest', repository: this.repository, reference: tag.tag })
    if (tag.error) {
      return html`<tr data-tag=${tag.tag}>
        <th scope="row"><a href=${link}>${tag.tag}</a></th>
        <td colspan="5" class="error">Could not read this tag: ${tag.error}</td>
      </tr>`
    }
    return html`<tr data-tag=${tag.tag}>
      <th scope="row"><a href=${link}>${tag.tag}</a>${tag.kind === 'index' ? html` <span class="badge">multi-arch</span>` : nothing}</th>
      <td data-label="Digest"><code title=${tag.digest}>${shortDigest(tag.digest)}</code></td>
      <td data-label="Size" class="number" data-bytes=${tag.size ?? ''} title=${tag.size !== undefined ? exactBytes(tag.size) : ''}>${formatBytes(tag.size)}</td>
      <td data-label="Created">${formatDate(tag.created)}</td>
      <td data-label="Platforms" class="platforms">${tag.platforms.length ? tag.platforms.join(', ') : '—'}</td>
      <td class="actions">
        ${canDelete
          ? html`<button type="button" class="danger quiet" aria-label=${`Delete tag ${tag.tag}`} @click=${() => this.askDelete(tag)}>Delete</button>`
          : nothing}
      </td>
    </tr>`
  }

  protected override render(): unknown {
    const page = this.page
    // The pull line names "latest" when there is one, else the newest tag on this page.
    const newest = [...(page?.tags ?? [])].sort((a, b) => (b.created ?? '').localeCompare(a.created ?? ''))[0]?.tag
    const pullTag = page?.tags.some((tag) => tag.tag === 'latest') ? 'latest' : newest ?? 'latest'
    return html`
      <nav aria-label="Breadcrumb" class="crumbs"><a href="#/">Repositories</a> <span aria-hidden="true">/</span> <span aria-current="page">${this.repository}</span></nav>
      <h1 tabindex="-1">${this.repository}</h1>
      <copy-line .text=${pullLine(this.session.registryHost, this.repository, pullTag)} .label=${'Copy pull command'}></copy-line>
      ${this.notice ? html`<p class="notice" role="status">${this.notice}</p>` : nothing}
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${page === undefined && !this.error ? html`<p role="status">Loading tags…</p>` : nothing}
      ${page
        ? page.tags.length === 0
          ? html`<p role="status">This repository has no tags.</p>`
          : html`
              <p class="count">${page.total} ${page.total === 1 ? 'tag' : 'tags'}${page.canDelete ? '' : ' · you may not delete here'}</p>
              <table class="tags responsive">
                <caption class="visually-hidden">Tags of ${this.repository}</caption>
                <thead>
                  <tr>
                    <th scope="col">Tag</th>
                    <th scope="col">Digest</th>
                    <th scope="col" class="number">Size</th>
                    <th scope="col">Created</th>
                    <th scope="col">Platforms</th>
                    <th scope="col"><span class="visually-hidden">Actions</span></th>
                  </tr>
                </thead>
                <tbody>
                  ${page.tags.map((tag) => this.row(tag, page.canDelete))}
                </tbody>
              </table>
              <nav class="pager" aria-label="Pages">
                ${this.last ? html`<a href=${href({ view: 'tags', repository: this.repository, last: '' })}>First page</a>` : nothing}
                ${page.next ? html`<a href=${href({ view: 'tags', repository: this.repository, last: page.next })} rel="next">Next page</a>` : nothing}
              </nav>
            `
        : nothing}
      ${this.pulls && page
        ? html`<section aria-labelledby="pulls-title" class="pulls">
            <h2 id="pulls-title">Pulls per day</h2>
            ${barChart({ id: 'pulls-chart', title: `Pulls of ${this.repository} per day, last ${PULL_DAYS} days (UTC)`, bars: this.pulls.days.map((entry) => ({ day: entry.day, value: entry.pulls })), unit: ['pull', 'pulls'] })}
          </section>`
        : nothing}
      ${this.session.admin && page?.canDelete && page.tags.length > 0
        ? html`<p class="repository-actions"><button type="button" class="danger quiet" @click=${() => void this.querySelector<RepositoryDeleteDialog>('repository-delete-dialog')?.open(this.repository, page.total)}>Delete repository…</button></p>`
        : nothing}
      <delete-dialog @deleted=${(event: CustomEvent<DeleteResult>) => this.deleted(event.detail)}></delete-dialog>
      <repository-delete-dialog @repository-deleted=${(event: CustomEvent<RepositoryDeleteResult>) => this.repositoryDeleted(event.detail)}></repository-delete-dialog>
    `
  }
}

customElements.define('tags-view', TagsView)
