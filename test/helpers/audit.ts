// The audit trail as `portier audit --json` prints it, read the way the e2e tests need it: the rows are written in batches, so wait until the expected ones are in.
import { join } from 'node:path'
import { CLI, withoutPortierVariables, type GatewayHandle } from './gateway.js'
import { run } from './exec.js'

export type AuditEntry = Record<string, unknown>

/**
 * Audit entries of one action (`portier audit --json --action`), read again every 200 ms (at most
 * 50 times) until `complete` says the rows expected are there; the last read when they never are.
 */
export async function auditOf(gateway: GatewayHandle, action: string, complete: (entries: AuditEntry[]) => boolean = (entries) => entries.length > 0): Promise<AuditEntry[]> {
  const env = withoutPortierVariables(process.env)
  let entries: AuditEntry[] = []
  for (let i = 0; i < 50; i++) {
    const result = await run(process.execPath, [CLI, 'audit', '--json', '--action', action, '--config', join(gateway.cwd, 'portier.yaml')], { cwd: gateway.cwd, env, timeoutMs: 30_000 })
    if (result.code !== 0) throw new Error(`portier audit failed: ${result.stderr}`)
    entries = result.stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as AuditEntry)
    if (complete(entries)) return entries
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return entries
}
