// What several upstreams need beyond each key's own type: a stated routing strategy, TLS files that exist and pair up.
import { readFileSync } from 'node:fs'
import { isRecord } from '../lib/is-record.js'

export interface RoutingConfigProblem {
  key: string
  expected: string
  found: string
}

const strategyChoice =
  'a routing strategy for several upstreams: "shared" (they share storage and http.secret), ' +
  '"by-repository" (each has its own storage; repositories are spread over them) or "mirror" (every push goes to all)'

/** A PEM file's problem, or undefined when it can be read and holds PEM blocks. */
function pemProblem(path: string): string | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    return `an unreadable file (${(error as NodeJS.ErrnoException).code ?? String(error)})`
  }
  return text.includes('-----BEGIN ') ? undefined : 'a file without PEM blocks'
}

/** Cross-key rules for upstreams and routing; runs on a partly invalid tree too, so it checks shapes first. */
export function routingProblems(upstreams: unknown, routing: unknown): RoutingConfigProblem[] {
  const problems: RoutingConfigProblem[] = []
  const list = Array.isArray(upstreams) ? upstreams.filter(isRecord) : []
  const strategy = isRecord(routing) ? routing.strategy : undefined
  if (list.length > 1 && strategy === '') {
    problems.push({ key: 'routing.strategy', expected: strategyChoice, found: 'nothing' })
  }
  // Under shared, a session's next chunk may reach any upstream: each must know the sessions Portier holds in the storage they share.
  const uploadsInStorage = list.map((upstream) => upstream.storage_uploads === true)
  if (strategy === 'shared' && uploadsInStorage.some(Boolean) && !uploadsInStorage.every(Boolean)) {
    const index = uploadsInStorage.indexOf(false)
    problems.push({ key: `upstreams[${index}].storage_uploads`, expected: 'true on every upstream under routing.strategy shared, or on none', found: 'false' })
  }
  list.forEach((upstream, index) => {
    const at = (name: string): string => `upstreams[${index}].${name}`
    const url = typeof upstream.url === 'string' ? upstream.url : ''
    for (const name of ['ca_bundle', 'client_cert', 'client_key'] as const) {
      const path = upstream[name]
      if (typeof path !== 'string' || path === '') continue
      if (url.startsWith('http://')) {
        problems.push({ key: at(name), expected: `an https:// url to use TLS options (upstreams[${index}].url is plain HTTP)`, found: JSON.stringify(path) })
        continue
      }
      const found = pemProblem(path)
      if (found) problems.push({ key: at(name), expected: `a readable PEM file`, found: `${JSON.stringify(path)}: ${found}` })
    }
    const cert = typeof upstream.client_cert === 'string' && upstream.client_cert !== ''
    const key = typeof upstream.client_key === 'string' && upstream.client_key !== ''
    if (cert !== key) {
      problems.push({
        key: at(cert ? 'client_key' : 'client_cert'),
        expected: cert ? 'the private key of client_cert (PEM)' : 'the certificate that goes with client_key (PEM)',
        found: 'nothing',
      })
    }
  })
  return problems
}
