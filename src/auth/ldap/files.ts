// check-config's look at the files auth.ldap names: the service account's password file and the CA bundle.
import { certificateFileProblem, secretFileProblem } from '../../config/files.js'
import type { LdapConfig } from './section.js'

export interface LdapFileProblem {
  key: string
  expected: string
  found: string
}

/** Every problem with the files of an enabled auth.ldap, as `serve` would meet them. */
export function ldapFileProblems(config: LdapConfig): LdapFileProblem[] {
  const problems: LdapFileProblem[] = []
  if (!config.enabled) return problems
  if (config.bind_password_file !== '') {
    const found = secretFileProblem(config.bind_password_file, `chmod 0640 ${config.bind_password_file}`)
    if (found) problems.push({ key: 'auth.ldap.bind_password_file', expected: "a readable file holding auth.ldap.bind_dn's password", found })
  }
  if (config.ca_file !== '') {
    const expected = "a readable PEM file of the CA certificates that sign the directory's certificate"
    const found = certificateFileProblem(config.ca_file)
    if (found) problems.push({ key: 'auth.ldap.ca_file', expected: expected, found })
  }
  return problems
}
