// check-config for ui.oidc: the client secret and CA files readable, as serve reads them.
import { certificateFileProblem, secretFileProblem } from '../../config/files.js'
import type { KeyProblem } from '../../config/fields.js'
import type { OidcConfig } from './section.js'

export function oidcFileProblems(oidc: OidcConfig): KeyProblem[] {
  if (!oidc.enabled) return []
  const problems: KeyProblem[] = []
  if (oidc.client_secret_file) {
    const found = secretFileProblem(oidc.client_secret_file, `chmod 0640 ${oidc.client_secret_file}`)
    if (found) problems.push({ key: 'ui.oidc.client_secret_file', expected: 'a readable file holding the client secret', found })
  }
  if (oidc.ca_file) {
    const expected = 'a readable PEM file of the CA certificates that sign the provider\'s certificate'
    const found = certificateFileProblem(oidc.ca_file)
    if (found) problems.push({ key: 'ui.oidc.ca_file', expected: expected, found })
  }
  return problems
}
