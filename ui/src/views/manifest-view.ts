// <manifest-view>: one tag or digest: media type, layers with sizes, the image config (env, entrypoint, labels, history), platforms.
import { LitElement, html, nothing } from 'lit'
import type { DeleteResult, ImageConfigSummary, ManifestDetail, SessionInfo } from '../../../src/ui/types.js'
import { ApiError, call, query } from '../api.js'
import { exactBytes, formatBytes, formatDate, pullLine, shortDigest } from '../format.js'
import { href } from '../router.js'
import type { DeleteDialog } from './delete-dialog.js'
import type { NavigateDetail } from '../app.js'
import './delete-dialog.js'
import './copy-line.js'

export class ManifestView extends LitElement {
  static override properties = {
    repository: { attribute: false },
    reference: { attribute: false },
    session: { attribute: false },
    detail: { state: true },
    error: { state: true },
  }

  declare repository: string
  declare reference: string
  declare session: SessionInfo
  declare detail: ManifestDetail | undefined
  declare error: string
  private loadCount = 0

  constructor() {
    super()
    this.repository = ''
    this.reference = ''
    this.detail = undefined
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('repository') || changed.has('reference')) void this.load()
  }

  private async load(): Promise<void> {
    const ticket = ++this.loadCount
    this.detail = undefined
    this.error = ''
    try {
      const detail = await call<ManifestDetail>('GET', `manifest${query({ repository: this.repository, reference: this.reference })}`)
      if (ticket === this.loadCount) this.detail = detail
    } catch (error) {
      if (ticket !== this.loadCount) return
      this.error =
        error instanceof ApiError
          ? error.status === 404
            ? `${this.repository}:${this.reference} does not exist (any more).`
            : error.status === 403
              ? 'You may not pull from this repository.'
              : error.explanation
          : String(error)
    }
  }

  private deleted(result: DeleteResult): void {
    this.dispatchEvent(new CustomEvent<NavigateDetail>('navigate', { detail: { href: href({ view: 'tags', repository: result.repository, last: '' }) }, bubbles: true }))
  }

  private config(config: ImageConfigSummary): unknown {
    const labels = Object.entries(config.labels)
    return html`
      <section aria-labelledby="config-title">
        <h2 id="config-title">Configuration</h2>
        <dl class="facts">
          <dt>Entrypoint</dt><dd>${config.entrypoint.length ? html`<code>${JSON.stringify(config.entrypoint)}</code>` : '—'}</dd>
          <dt>Command</dt><dd>${config.cmd.length ? html`<code>${JSON.stringify(config.cmd)}</code>` : '—'}</dd>
          <dt>Working directory</dt><dd>${config.workingDir ? html`<code>${config.workingDir}</code>` : '—'}</dd>
          <dt>User</dt><dd>${config.user ? html`<code>${config.user}</code>` : '—'}</dd>
          <dt>Exposed ports</dt><dd>${config.exposedPorts.length ? config.exposedPorts.join(', ') : '—'}</dd>
        </dl>
        <h3>Environment</h3>
        ${config.env.length
          ? html`<ul class="plain env" aria-label="Environment variables">${config.env.map((entry) => html`<li><code>${entry}</code></li>`)}</ul>`
          : html`<p>None.</p>`}
        <h3>Labels</h3>
        ${labels.length
          ? html`<table class="labels">
              <caption class="visually-hidden">Labels</caption>
              <thead><tr><th scope="col">Label</th><th scope="col">Value</th></tr></thead>
              <tbody>${labels.map(([name, value]) => html`<tr><th scope="row"><code>${name}</code></th><td><code>${value}</code></td></tr>`)}</tbody>
            </table>`
          : html`<p>None.</p>`}
        <h3>History</h3>
        ${config.history.length
          ? html`<ol class="history" aria-label="Build history">
              ${config.history.map(
                (step) => html`<li>
                  <code>${step.createdBy ?? step.comment ?? '(no command recorded)'}</code>
                  <span class="muted">${formatDate(step.created)}${step.emptyLayer ? ' · no layer' : ''}</span>
                </li>`,
              )}
            </ol>`
          : html`<p>None recorded.</p>`}
      </section>
    `
  }

  private body(detail: ManifestDetail): unknown {
    const config = detail.config
    return html`
      <copy-line .text=${pullLine(this.session.registryHost, this.repository, this.reference)} .label=${'Copy pull command'}></copy-line>
      <dl class="facts">
        <dt>Digest</dt><dd><code class="digest" data-digest=${detail.digest}>${detail.digest}</code></dd>
        <dt>Media type</dt><dd><code class="media-type">${detail.mediaType}</code></dd>
        <dt>Manifest size</dt><dd>${exactBytes(detail.manifestSize)}</dd>
        ${detail.size !== undefined ? html`<dt>Compressed size</dt><dd data-bytes=${detail.size}>${formatBytes(detail.size)} (${exactBytes(detail.size)})</dd>` : nothing}
        ${config?.created ? html`<dt>Created</dt><dd>${formatDate(config.created)}</dd>` : nothing}
        ${config?.platform ? html`<dt>Platform</dt><dd>${config.platform}</dd>` : nothing}
      </dl>
      ${detail.canDelete
        ? html`<p><button type="button" class="danger" @click=${() => void this.querySelector<DeleteDialog>('delete-dialog')?.open(this.repository, detail.digest)}>Delete…</button></p>`
        : nothing}
      ${detail.kind === 'index'
        ? html`<section aria-labelledby="platforms-title">
            <h2 id="platforms-title">Platforms</h2>
            <table class="platforms-table responsive">
              <caption class="visually-hidden">Platform images</caption>
              <thead><tr><th scope="col">Platform</th><th scope="col">Digest</th><th scope="col" class="number">Manifest size</th></tr></thead>
              <tbody>
                ${detail.manifests.map(
                  (entry) => html`<tr>
                    <th scope="row"><a href=${href({ view: 'manifest', repository: this.repository, reference: entry.digest })}>${entry.platform ?? 'unknown'}</a></th>
                    <td data-label="Digest"><code title=${entry.digest}>${shortDigest(entry.digest)}</code></td>
                    <td data-label="Size" class="number">${exactBytes(entry.size)}</td>
                  </tr>`,
                )}
              </tbody>
            </table>
          </section>`
        : nothing}
      ${detail.kind === 'image'
        ? html`<section aria-labelledby="layers-title">
            <h2 id="layers-title">Layers <span class="muted">(${detail.layers.length})</span></h2>
            <table class="layers responsive">
              <caption class="visually-hidden">Layers, base first</caption>
              <thead><tr><th scope="col">#</th><th scope="col">Digest</th><th scope="col">Media type</th><th scope="col" class="number">Size</th></tr></thead>
              <tbody>
                ${detail.layers.map(
                  (layer, index) => html`<tr class="layer">
                    <th scope="row">${index + 1}</th>
                    <td data-label="Digest"><code title=${layer.digest}>${shortDigest(layer.digest)}</code></td>
                    <td data-label="Type"><code>${layer.mediaType}</code></td>
                    <td data-label="Size" class="number" data-bytes=${layer.size} title=${exactBytes(layer.size)}>${formatBytes(layer.size)}</td>
                  </tr>`,
                )}
              </tbody>
            </table>
          </section>`
        : nothing}
      ${config ? this.config(config) : nothing}
      <delete-dialog @deleted=${(event: CustomEvent<DeleteResult>) => this.deleted(event.detail)}></delete-dialog>
    `
  }

  protected override render(): unknown {
    const title = this.reference.includes(':') ? `${this.repository}@${shortDigest(this.reference)}` : `${this.repository}:${this.reference}`
    return html`
      <nav aria-label="Breadcrumb" class="crumbs">
        <a href="#/">Repositories</a> <span aria-hidden="true">/</span>
        <a href=${href({ view: 'tags', repository: this.repository, last: '' })}>${this.repository}</a> <span aria-hidden="true">/</span>
        <span aria-current="page">${this.reference.includes(':') ? shortDigest(this.reference) : this.reference}</span>
      </nav>
      <h1 tabindex="-1">${title}</h1>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${this.detail === undefined && !this.error ? html`<p role="status">Loading…</p>` : nothing}
      ${this.detail ? this.body(this.detail) : nothing}
    `
  }
}

customElements.define('manifest-view', ManifestView)
