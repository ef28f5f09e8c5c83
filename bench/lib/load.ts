// Small-request load: wrk for GET (it cannot measure HEAD, it waits for a body) and ApacheBench (ab -k -i) for HEAD.
import { run } from '../../test/helpers/exec.js'

export interface LoadResult {
  requestsPerSecond: number
  p50ms: number
  p99ms: number
  /** Requests that failed or did not answer 2xx. */
  errors: number
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

function duration(text: string | undefined): number {
  const match = text ? /^([\d.]+)(us|ms|s|m)$/.exec(text) : null
  return match ? Number(match[1]) * (UNIT_MS[match[2] as string] as number) : Number.NaN
}

export function parseWrk(output: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output)
  if (!rps) throw new Error(`wrk printed no Requests/sec:\n${output}`)
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output)
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const socketErrors = socket ? socket.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0
  // No request completed (all timed out): wrk prints zero latencies, which are no latencies.
  const answered = Number(rps[1]) > 0
  return {
    requestsPerSecond: Number(rps[1]),
    p50ms: answered ? duration(/^\s+50%\s+(\S+)/m.exec(output)?.[1]) : Number.NaN,
    p99ms: answered ? duration(/^\s+99%\s+(\S+)/m.exec(output)?.[1]) : Number.NaN,
    errors: Number(non2xx?.[1] ?? 0) + socketErrors,
  }
}

export function parseAb(output: string): LoadResult {
  const rps = /Requests per second:\s+([\d.]+)/.exec(output)
  if (!rps) throw new Error(`ab printed no Requests per second:\n${output}`)
  return {
    requestsPerSecond: Number(rps[1]),
    p50ms: Number(/^\s+50%\s+(\d+)/m.exec(output)?.[1] ?? Number.NaN),
    p99ms: Number(/^\s+99%\s+(\d+)/m.exec(output)?.[1] ?? Number.NaN),
    errors: Number(/Failed requests:\s+(\d+)/.exec(output)?.[1] ?? 0) + Number(/Non-2xx responses:\s+(\d+)/.exec(output)?.[1] ?? 0),
  }
}

export interface LoadSpec {
  url: string
  seconds: number
  connections: number
  headers: string[]
}

export async function wrk(spec: LoadSpec): Promise<LoadResult> {
  const threads = Math.min(2, spec.connections)
  const args = [`-t${threads}`, `-c${spec.connections}`, `-d${spec.seconds}s`, '--latency', '--timeout', '10s']
  for (const header of spec.headers) args.push('-H', header)
  const result = await run('wrk', [...args, spec.url], { timeoutMs: (spec.seconds + 30) * 1000 })
  if (result.code !== 0) throw new Error(`wrk failed (${result.code}): ${result.stderr}`)
  return parseWrk(result.stdout)
}

/** ab -k -i: keep-alive HEAD requests for `seconds`, `connections` at a time. */
export async function abHead(spec: LoadSpec): Promise<LoadResult> {
  const args = ['-k', '-i', '-q', '-t', String(spec.seconds), '-n', '10000000', '-c', String(spec.connections)]
  for (const header of spec.headers) args.push('-H', header)
  const result = await run('ab', [...args, spec.url], { timeoutMs: (spec.seconds + 30) * 1000 })
  if (result.code !== 0) throw new Error(`ab failed (${result.code}): ${result.stderr}`)
  return parseAb(result.stdout)
}
