// What the status panel shows, behind one interface the server wires to health checks, certificates and recent pushes.
import type { StatusGc, StatusSnapshot, StatusWebhook } from './types.js'

export interface StatusSource {
  snapshot(): StatusSnapshot
}

/** The parts of the gateway the status panel reads; each is optional so the panel shows what exists. */
export interface StatusInputs {
  /** Every upstream, for when there are no health checks. */
  upstreams: ReadonlyArray<{ name: string; origin: string }>
  /** Active health checks, e.g. the HealthMonitor's snapshot(). */
  health?: () => ReadonlyArray<{ name: string; url: string; state: 'unknown' | 'up' | 'down'; since?: string; lastCheck?: { error?: string; status?: number; ms?: number } }>
  /** The served certificates, e.g. CertificateStore.certificates. */
  certificates?: () => ReadonlyArray<{ names: string[]; notAfter: Date }>
  /** Whether the served certificate is the generated self-signed one. */
  selfSigned?: () => boolean
  /** Newest first, e.g. RecentPushes.list(). */
  recentPushes?: (limit: number) => ReadonlyArray<{ at: string; user?: string | undefined; repository: string; reference?: string | undefined }>
  /** Webhook endpoints' health, e.g. Events.status(). */
  /** Garbage collection's progress and history. */
  gc?: () => StatusGc
  webhooks?: () => ReadonlyArray<Omit<StatusWebhook, 'lastSuccessAgeSeconds' | 'failingForSeconds'> & { lastSuccessAgeSeconds: number | undefined; failingForSeconds: number | undefined }>
}

const PUSHES_SHOWN = 20

export function createStatusSource(inputs: StatusInputs): StatusSource {
  return {
    snapshot() {
      const upstreams = inputs.health
        ? inputs.health().map((entry) => {
            const check = entry.lastCheck
            const detail = check?.error ?? (check?.status !== undefined ? `GET /v2/ answered ${check.status}${check.ms !== undefined ? ` in ${check.ms} ms` : ''}` : 'not checked yet')
            return {
              name: entry.name,
              url: entry.url,
              ...(entry.state === 'unknown' ? {} : { healthy: entry.state === 'up' }),
              detail,
              ...(entry.since ? { since: entry.since } : {}),
            }
          })
        : inputs.upstreams.map((upstream) => ({ name: upstream.name, url: upstream.origin, detail: 'no health checks' }))
      return {
        upstreams,
        certificates: (inputs.certificates?.() ?? []).map((certificate) => ({
          names: certificate.names,
          notAfter: certificate.notAfter.toISOString(),
          ...(inputs.selfSigned?.() ? { selfSigned: true } : {}),
        })),
        recentPushes: (inputs.recentPushes?.(PUSHES_SHOWN) ?? []).map((push) => ({
          at: push.at,
          repository: push.repository,
          ...(push.user ? { user: push.user } : {}),
          ...(push.reference ? { reference: push.reference } : {}),
        })),
        ...(inputs.webhooks
          ? {
              webhooks: inputs.webhooks().map(({ lastSuccessAgeSeconds, failingForSeconds, ...endpoint }) => ({
                ...endpoint,
                ...(lastSuccessAgeSeconds === undefined ? {} : { lastSuccessAgeSeconds }),
                ...(failingForSeconds === undefined ? {} : { failingForSeconds }),
              })),
            }
          : {}),
        ...(inputs.gc ? { gc: inputs.gc() } : {}),
      }
    },
  }
}
