// <status-view>: what an operator glances at: upstream health, certificate expiry, webhook health, garbage collection history, recent pushes.
import { LitElement, html, nothing } from 'lit'
import type { StatusGc, StatusSnapshot, StatusWebhook, StorageOverTime } from '../../../src/ui/types.js'
import { ApiError, call } from '../api.js'
import { exactBytes, formatBytes, formatDate } from '../format.js'
import { lineChart } from './charts.js'
import { href } from '../router.js'
import './maintenance-panel.js'
import './retention-panel.js'

const DAY_MS = 86_400_000
const EXPIRY_WARNING_DAYS = 14
const USAGE_DAYS = 30
const REPOSITORIES_SHOWN = 20

export class StatusView extends LitElement {
  static override properties = {
    status: { state: true },
    usage: { state: true },
    error: { state: true },
  }

  declare status: StatusSnapshot | undefined
  declare usage: StorageOverTime | undefined
  declare error: string

  constructor() {
    super()
    this.status = undefined
    this.usage = undefined
    this.error = ''
  }

  protected override createRenderRoot(): HTMLElement {
    return this
  }

  override connectedCallback(): void {
    super.connectedCallback()
    void this.load()
  }

  private async load(): Promise<void> {
    // The chart's series comes on its own: the panel does not wait for it, and a gateway without a store still shows the rest.
    void call<StorageOverTime>('GET', `usage?days=${USAGE_DAYS}`).then(
      (usage) => {
        this.usage = usage
      },
      () => {
        this.usage = undefined
      },
    )
    try {
      this.status = await call<StatusSnapshot>('GET', 'status')
      this.error = ''
    } catch (error) {
      this.error = error instanceof ApiError ? error.explanation : String(error)
    }
  }

  protected override render(): unknown {
    const status = this.status
    const now = Date.now()
    return html`
      <h1 tabindex="-1">Status</h1>
      <p><button type="button" class="quiet" @click=${() => void this.load()}>Refresh</button></p>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      <maintenance-panel></maintenance-panel>
      <retention-panel></retention-panel>
      ${status === undefined && !this.error ? html`<p role="status">Loading…</p>` : nothing}
      ${status
        ? html`
            <section aria-labelledby="upstreams-title">
              <h2 id="upstreams-title">Upstream registries</h2>
              <table class="responsive">
                <thead><tr><th scope="col">Name</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Detail</th></tr></thead>
                <tbody>
                  ${status.upstreams.map(
                    (upstream) => html`<tr>
                      <th scope="row">${upstream.name}</th>
                      <td data-label="URL"><code>${upstream.url}</code></td>
                      <td data-label="State">${upstream.healthy === undefined
                        ? html`<span class="state unknown">unknown</span>`
                        : upstream.healthy
                          ? html`<span class="state up">up</span>`
                          : html`<span class="state down">down</span>`}${upstream.since ? html` <span class="muted">since ${formatDate(upstream.since)}</span>` : nothing}</td>
                      <td data-label="Detail">${upstream.detail ?? ''}</td>
                    </tr>`,
                  )}
                </tbody>
              </table>
            </section>
            <section aria-labelledby="certificates-title">
              <h2 id="certificates-title">Certificates</h2>
              ${status.certificates.length === 0
                ? html`<p>TLS is off (Portier serves plain HTTP behind another proxy).</p>`
                : html`<table class="responsive">
                    <thead><tr><th scope="col">Names</th><th scope="col">Expires</th><th scope="col">Left</th></tr></thead>
                    <tbody>
                      ${status.certificates.map((certificate) => {
                        const days = Math.floor((new Date(certificate.notAfter).getTime() - now) / DAY_MS)
                        return html`<tr>
                          <th scope="row">${certificate.names.join(', ')}${certificate.selfSigned ? html` <span class="badge">self-signed</span>` : nothing}</th>
                          <td data-label="Expires">${formatDate(certificate.notAfter)}</td>
                          <td data-label="Left"><span class=${days < EXPIRY_WARNING_DAYS ? 'state down' : 'state up'}>${days < 0 ? 'expired' : `${days} days`}</span></td>
                        </tr>`
                      })}
                    </tbody>
                  </table>`}
            </section>
            ${status.webhooks ? renderWebhooks(status.webhooks) : nothing}
            ${this.usage ? renderStorage(this.usage) : nothing}
            ${status.gc ? renderGc(status.gc) : nothing}
            <section aria-labelledby="pushes-title">
              <h2 id="pushes-title">Recent pushes</h2>
              ${status.recentPushes.length === 0
                ? html`<p>No pushes since Portier started.</p>`
                : html`<table class="responsive">
                    <thead><tr><th scope="col">When</th><th scope="col">Image</th><th scope="col">By</th></tr></thead>
                    <tbody>
                      ${status.recentPushes.map(
                        (push) => html`<tr>
                          <td>${formatDate(push.at)}</td>
                          <td data-label="Image"><a href=${push.reference ? href({ view: 'manifest', repository: push.repository, reference: push.reference }) : href({ view: 'tags', repository: push.repository, last: '' })}>${push.repository}${push.reference ? (push.reference.includes(':') ? '@' : ':') + push.reference : ''}</a></td>
                          <td data-label="By">${push.user ?? '—'}</td>
                        </tr>`,
                      )}
                    </tbody>
                  </table>`}
            </section>
          `
        : nothing}
    `
  }
}

/** "12s ago", "5m ago", "3h ago"; "never" before the first. */
function ago(seconds: number | undefined): string {
  if (seconds === undefined) return 'never'
  if (seconds < 120) return `${Math.round(seconds)}s ago`
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`
  return `${Math.round(seconds / 3600)}h ago`
}

/** Webhook endpoints (events.endpoints): failing ones and dead letters stand out. */
function renderWebhooks(webhooks: StatusWebhook[]): unknown {
  return html`<section aria-labelledby="webhooks-title">
    <h2 id="webhooks-title">Webhooks</h2>
    <table class="responsive">
      <thead><tr><th scope="col">Endpoint</th><th scope="col">URL</th><th scope="col">State</th><th scope="col">Pending</th><th scope="col">Dead letters</th><th scope="col">Delivered</th><th scope="col">Last success</th></tr></thead>
      <tbody>
        ${webhooks.map(
          (endpoint) => html`<tr>
            <th scope="row">${endpoint.name}</th>
            <td data-label="URL"><code>${endpoint.url}</code></td>
            <td data-label="State">${endpoint.disabled
              ? html`<span class="state unknown">disabled</span>`
              : endpoint.failingForSeconds !== undefined
                ? html`<span class="state down">failing</span> <span class="muted">for ${Math.round(endpoint.failingForSeconds)}s</span>`
                : html`<span class="state up">ok</span>`}</td>
            <td data-label="Pending">${endpoint.pending}</td>
            <td data-label="Dead letters">${endpoint.dead > 0 ? html`<span class="state down">${endpoint.dead}</span> <span class="muted">(portier events retry)</span>` : '0'}</td>
            <td data-label="Delivered">${endpoint.delivered}${endpoint.failed > 0 ? html` <span class="muted">(${endpoint.failed} failed attempts)</span>` : nothing}</td>
            <td data-label="Last success">${ago(endpoint.lastSuccessAgeSeconds)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
  </section>`
}

/** Storage over time (a line of the bytes on disk) and the newest repository sizes. */
function renderStorage(usage: StorageOverTime): unknown {
  const latest = usage.samples[usage.samples.length - 1]
  return html`<section aria-labelledby="storage-title" class="storage">
    <h2 id="storage-title">Storage</h2>
    ${!usage.available
      ? html`<p class="muted">Portier cannot read the registry's storage (set gc.registry_config to measure it).</p>`
      : html`
          ${latest
            ? html`<p><strong data-bytes=${latest.diskBytes} title=${exactBytes(latest.diskBytes)}>${formatBytes(latest.diskBytes)}</strong> on disk; images take
                <span data-bytes=${latest.blobBytes} title=${exactBytes(latest.blobBytes)}>${formatBytes(latest.blobBytes)}</span> in ${latest.repositories}
                ${latest.repositories === 1 ? 'repository' : 'repositories'} (a layer shared between repositories counted once).</p>`
            : nothing}
          ${lineChart({ id: 'storage-chart', title: `Bytes on disk, last ${USAGE_DAYS} days`, points: usage.samples.map((sample) => ({ at: sample.at, value: sample.diskBytes })) })}
          ${usage.repositories.length > 0
            ? html`<table class="responsive repository-sizes">
                <caption>Largest repositories${usage.sizesAt ? ` (${formatDate(usage.sizesAt)})` : ''}; a layer shared by images of one repository counted once</caption>
                <thead><tr><th scope="col">Repository</th><th scope="col" class="number">Size</th><th scope="col" class="number">Blobs</th></tr></thead>
                <tbody>
                  ${usage.repositories.slice(0, REPOSITORIES_SHOWN).map(
                    (entry) => html`<tr data-repository=${entry.repository}>
                      <th scope="row"><a href=${href({ view: 'tags', repository: entry.repository, last: '' })}>${entry.repository}</a></th>
                      <td data-label="Size" class="number" data-bytes=${entry.bytes} title=${exactBytes(entry.bytes)}>${formatBytes(entry.bytes)}</td>
                      <td data-label="Blobs" class="number">${entry.blobs}</td>
                    </tr>`,
                  )}
                </tbody>
              </table>`
            : nothing}
        `}
  </section>`
}

/** Garbage collection: the run in progress and the last runs with the bytes they freed. */
function renderGc(gc: StatusGc): unknown {
  return html`<section aria-labelledby="gc-title">
    <h2 id="gc-title">Garbage collection</h2>
    ${gc.running ? html`<p role="status"><span class="state unknown">running</span> ${gc.running.phase}: ${gc.running.message}</p>` : nothing}
    <p class="muted">${gc.schedule ? `Scheduled: ${gc.schedule}.` : 'Not scheduled (gc.schedule).'} Run one with <code>portier gc</code>.</p>
    ${gc.history.length === 0
      ? html`<p>No garbage collection has run yet.</p>`
      : html`<table class="responsive gc-history">
          <thead><tr><th scope="col">Finished</th><th scope="col">Result</th><th scope="col" class="number">Freed</th><th scope="col">Deleted</th><th scope="col" class="number">Storage after</th><th scope="col">Took</th><th scope="col">By</th></tr></thead>
          <tbody>
            ${gc.history.map(
              (run) => html`<tr>
                <td>${formatDate(run.finishedAt)}</td>
                <td data-label="Result">${run.result === 'success'
                  ? html`<span class="state up">${run.dryRun ? 'dry run' : 'ok'}</span>`
                  : html`<span class="state down" title=${run.error ?? ''}>failed</span>`}</td>
                <td data-label="Freed" class="number" data-bytes=${run.bytesFreed}>${run.dryRun ? '—' : formatBytes(run.bytesFreed)}</td>
                <td data-label="Deleted">${run.dryRun ? `${run.blobsEligible} blobs would go` : `${run.blobsDeleted} blobs${run.manifestsDeleted ? `, ${run.manifestsDeleted} manifests` : ''}`}</td>
                <td data-label="Storage after" class="number">${formatBytes(run.bytesAfter)}</td>
                <td data-label="Took">${run.durationSeconds.toFixed(1)} s</td>
                <td data-label="By">${run.by ?? run.trigger}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
  </section>`
}

customElements.define('status-view', StatusView)
