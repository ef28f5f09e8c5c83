// The housekeeping jobs' own registry calls (immutable-tag checks, retention): routed and forwarded as a client's, like the web UI's.
import type { AuthSetup } from '../auth/index.js'
import { createRegistryClient, type RegistryClient, type RoutedAnswer } from '../ui/registry-client.js'

/** A RegistryClient over the router; upstreams that verify Portier's tokens get one naming `subject`. */
export function housekeepingRegistry(answer: RoutedAnswer, auth: Pick<AuthSetup, 'issueServiceToken'>, subject: string): RegistryClient {
  const issue = auth.issueServiceToken
  return createRegistryClient(answer, issue ? { serviceTokens: (access) => issue(subject, access) } : {})
}
