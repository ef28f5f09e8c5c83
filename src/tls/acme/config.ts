// What tls.acme needs beyond each key's own type: names a CA can validate, a listener for the challenge, EAB pairs.
import { isIP } from 'node:net'
import { isRecord } from '../../lib/is-record.js'

export interface AcmeConfigProblem {
  key: string
  expected: string
  found: string
}

const aliases: Record<string, string> = {
  letsencrypt: 'https://acme-v02.api.letsencrypt.org/directory',
  'letsencrypt-staging': 'https://acme-staging-v02.api.letsencrypt.org/directory',
}

/** The directory URL for a configured value: an alias or the URL itself. */
export function directoryUrl(configured: string): string {
  return aliases[configured] ?? configured
}

const label = '[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?'
const dnsName = new RegExp(`^(?=.{1,253}$)${label}(?:\\.${label})+$`)

/** A DNS name a CA can validate by HTTP-01 or TLS-ALPN-01, or the reason it cannot. */
function domainProblem(name: string): string | undefined {
  if (isIP(name)) return 'a DNS name (ACME certificates here are for names, not IP addresses)'
  if (name.startsWith('*.')) return 'a name without a wildcard (wildcards need the DNS-01 challenge, which Portier does not do)'
  if (!dnsName.test(name.toLowerCase())) return 'a fully qualified DNS name like "registry.example.com"'
  return undefined
}

/** Cross-key rules for tls.acme; runs on a partly invalid tree too, so it checks shapes first. */
export function acmeProblems(tls: unknown, server: unknown): AcmeConfigProblem[] {
  const problems: AcmeConfigProblem[] = []
  if (!isRecord(tls) || !isRecord(tls.acme) || tls.acme.enabled !== true) return problems
  const acme = tls.acme
  if (tls.enabled === false) {
    problems.push({ key: 'tls.acme.enabled', expected: 'tls.enabled: true (ACME certificates are for Portier\'s own HTTPS listener)', found: 'true with tls.enabled: false' })
  }
  const domains = Array.isArray(acme.domains) ? acme.domains : undefined
  if (domains !== undefined && domains.length === 0) {
    problems.push({ key: 'tls.acme.domains', expected: 'at least one DNS name the certificate is for, e.g. [registry.example.com]', found: '[]' })
  }
  const seen = new Set<string>()
  for (const [index, name] of (domains ?? []).entries()) {
    if (typeof name !== 'string') continue
    const key = `tls.acme.domains[${index}]`
    const why = domainProblem(name)
    if (why) problems.push({ key, expected: why, found: JSON.stringify(name) })
    else if (seen.has(name.toLowerCase())) problems.push({ key, expected: 'a name listed only once', found: JSON.stringify(name) })
    seen.add(name.toLowerCase())
  }
  if (acme.challenge === 'http-01' && isRecord(server) && server.http_redirect_listen === '') {
    problems.push({
      key: 'server.http_redirect_listen',
      expected: 'a plain-HTTP listener reachable on port 80, e.g. "0.0.0.0:80" (tls.acme.challenge http-01 is answered there), or tls.acme.challenge: tls-alpn-01',
      found: '""',
    })
  }
  if (isRecord(acme.eab) && (acme.eab.kid === '') !== (acme.eab.hmac_key === '')) {
    const missing = acme.eab.kid === '' ? 'kid' : 'hmac_key'
    problems.push({ key: `tls.acme.eab.${missing}`, expected: 'both tls.acme.eab.kid and tls.acme.eab.hmac_key (from your CA\'s account page), or neither', found: 'nothing' })
  }
  if (typeof acme.retry_min === 'number' && typeof acme.retry_max === 'number') {
    if (acme.retry_min <= 0) problems.push({ key: 'tls.acme.retry_min', expected: 'a duration above 0', found: '0' })
    else if (acme.retry_max < acme.retry_min) {
      problems.push({ key: 'tls.acme.retry_max', expected: `a duration of at least tls.acme.retry_min (${acme.retry_min}ms)`, found: `${acme.retry_max}ms` })
    }
  }
  return problems
}
