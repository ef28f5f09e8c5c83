// Whether a cache's remote answers at all: asked before a tag is revalidated, so a remote that is down is noticed (and said) instead of waited on.
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'
import { Agent, request } from 'undici'

export type RemoteState = 'up' | 'down'

export class RemoteProbe {
  private readonly agent: Agent
  private inFlight: Promise<RemoteState> | undefined

  constructor(
    private readonly origin: string,
    caFile: string,
    private readonly timeoutMs: number,
  ) {
    const ca = caFile ? [...rootCertificates, readFileSync(caFile, 'utf8')] : undefined
    this.agent = new Agent({ connect: { timeout: timeoutMs, ...(ca ? { ca } : {}) }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
  }

  /** Any HTTP answer on /v2/ (401 included) means up; concurrent callers share one probe. */
  state(): Promise<RemoteState> {
    this.inFlight ??= this.ask().finally(() => {
      this.inFlight = undefined
    })
    return this.inFlight
  }

  private async ask(): Promise<RemoteState> {
    try {
      const response = await request(`${this.origin}/v2/`, { dispatcher: this.agent, signal: AbortSignal.timeout(this.timeoutMs) })
      await response.body.dump()
      return 'up'
    } catch {
      return 'down'
    }
  }

  close(): Promise<void> {
    return this.agent.close()
  }
}
