// The `auth.ldap` config section: a directory (OpenLDAP, Active Directory) whose users sign in with their own password.
import { z } from 'zod'
import { duration, flag, oneOf, section, text, whole } from '../../config/fields.js'
import { filterProblem } from './filter.js'

export const ldapSection = section({
  enabled: flag().default(false),
  /** ldap://host:389 or ldaps://host:636. */
  url: text({ pattern: /^(?:ldaps?:\/\/[^\s/]+\/?)?$/, expect: 'an LDAP URL like "ldap://ldap.example.com:389" or "ldaps://ldap.example.com:636"' }).default(''),
  /** Upgrade an ldap:// connection with StartTLS before anything is sent. */
  start_tls: flag().default(false),
  /** PEM file of the CA certificates that sign the directory's certificate; empty: the system's. */
  ca_file: text().default(''),
  /** The account that searches for users and their groups; empty: anonymous searches. */
  bind_dn: text().default(''),
  /** A file holding bind_dn's password (kept out of the config file). */
  bind_password_file: text().default(''),
  user_base: text().default(''),
  /** Finds the user's entry; {user} is the name the client sent, escaped. */
  user_filter: text().default('(uid={user})'),
  /** Where groups are searched; empty: users get no groups from the directory. */
  group_base: text().default(''),
  /** Finds the user's groups; {dn} is the user's entry, {user} the name, both escaped. */
  group_filter: text().default('(member={dn})'),
  /** The attribute of a group entry that names it (what auth.groups and match.group use). */
  group_attribute: text({ pattern: /^[A-Za-z][\w-]*$/, expect: 'an attribute name like cn' }).default('cn'),
  /** An entry carrying this attribute is refused (OpenLDAP ppolicy's lock); empty: none is. */
  locked_attribute: text({ pattern: /^(?:[A-Za-z][\w-]*)?$/, expect: 'an attribute name like pwdAccountLockedTime, or empty' }).default('pwdAccountLockedTime'),
  connect_timeout: duration().default(5_000),
  search_timeout: duration().default(5_000),
  /** How long a verified user name and password (and the groups found) are trusted without asking again. */
  cache_ttl: duration().default(60_000),
  /** Which source decides for a name both know: htpasswd_first (the file's users are local accounts) or ldap_first. */
  order: oneOf(['htpasswd_first', 'ldap_first']).default('htpasswd_first'),
  /** Directory checks at once; more are answered 503 with Retry-After. */
  max_checks: whole({ min: 1 }).default(16),
  /** How often the directory is probed while nobody signs in (for /readyz); 0: only sign-ins tell. */
  health_interval: duration().default(30_000),
  /** Whether /readyz answers 503 while the directory is unreachable (false: it only reports it). */
  readiness: flag().default(true),
}).superRefine((ldap, context) => {
  if (!ldap.enabled) return
  const problem = (key: string, message: string): void => {
    context.addIssue({ code: 'custom', path: [key], input: (ldap as Record<string, unknown>)[key], message })
  }
  if (ldap.url === '') problem('url', 'the directory URL, like "ldaps://ldap.example.com:636" (auth.ldap.enabled is true)')
  if (ldap.start_tls && ldap.url.startsWith('ldaps://')) problem('start_tls', 'false with an ldaps:// URL (it is TLS already); StartTLS upgrades an ldap:// connection')
  if (ldap.ca_file !== '' && ldap.url.startsWith('ldap://') && !ldap.start_tls) {
    problem('ca_file', 'a CA only with an ldaps:// URL or start_tls: true (this ldap:// connection is not TLS, so no CA is used)')
  }
  if (ldap.user_base === '') problem('user_base', 'the DN under which users are searched, like "ou=people,dc=example,dc=org"')
  if (!ldap.user_filter.includes('{user}')) problem('user_filter', 'a filter with {user}, like "(uid={user})" or "(sAMAccountName={user})"')
  else {
    const reason = filterProblem(ldap.user_filter)
    if (reason) problem('user_filter', `an LDAP filter (RFC 4515) like "(uid={user})": ${reason}`)
  }
  if (ldap.group_base !== '') {
    if (!/\{(?:dn|user)\}/.test(ldap.group_filter)) problem('group_filter', 'a filter with {dn} or {user}, like "(member={dn})" or "(memberUid={user})"')
    else {
      const reason = filterProblem(ldap.group_filter)
      if (reason) problem('group_filter', `an LDAP filter (RFC 4515) like "(member={dn})": ${reason}`)
    }
  }
  if ((ldap.bind_dn === '') !== (ldap.bind_password_file === '')) {
    problem(ldap.bind_dn === '' ? 'bind_dn' : 'bind_password_file', 'bind_dn and bind_password_file together (or neither, for anonymous searches)')
  }
  if (ldap.connect_timeout === 0) problem('connect_timeout', 'a duration above 0')
  if (ldap.search_timeout === 0) problem('search_timeout', 'a duration above 0')
}).prefault({})

export type LdapConfig = z.output<typeof ldapSection>
