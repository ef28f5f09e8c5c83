// ldapts, loaded the first time a configuration with auth.ldap enabled needs it (its filter check, the directory):
// a static import made every start load it (~1.5 MiB RSS) whether LDAP was configured or not. Synchronous, because
// the filter check runs inside config validation; require() gives the package's own CommonJS build.
import { createRequire } from 'node:module'

export type Ldapts = typeof import('ldapts')

let loaded: Ldapts | undefined

export function ldapts(): Ldapts {
  loaded ??= createRequire(import.meta.url)('ldapts') as Ldapts
  return loaded
}
