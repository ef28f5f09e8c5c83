// Checks the files the events section names (secret_file, tls.ca_file) the way delivery loads them, for serve and check-config.
import { certificateFileProblem, secretFileProblem } from '../config/files.js'
import type { KeyProblem } from '../config/fields.js'
import type { EventsConfig } from './section.js'

/** Every problem with the files `events` names, keyed like events.endpoints[0].secret_file. */
export function eventFileProblems(events: EventsConfig): KeyProblem[] {
  const problems: KeyProblem[] = []
  if (events.endpoints.length === 0) return problems
  events.endpoints.forEach((endpoint, index) => {
    const at = `events.endpoints[${index}]`
    if (endpoint.secret_file) {
      const found = secretFileProblem(endpoint.secret_file)
      if (found) problems.push({ key: `${at}.secret_file`, expected: 'a readable file holding the HMAC key', found })
    }
    if (endpoint.tls.ca_file) {
      const found = certificateFileProblem(endpoint.tls.ca_file)
      if (found) problems.push({ key: `${at}.tls.ca_file`, expected: 'a readable PEM file of CA certificates', found })
    }
  })
  return problems
}
