// The `auth` config section: how callers prove who they are (htpasswd, LDAP, tokens), what they may do (ACL) and throttling.
import { z } from 'zod'
import { duration, flag, list, oneOf, section, strings, text, whole } from '../config/fields.js'
import { ldapSection } from './ldap/section.js'

const aclMatch = section({
  account: text().optional(),
  group: text().optional(),
  name: text().optional(),
  type: oneOf(['repository', 'registry']).optional(),
  ip: text().optional(),
})

const aclRule = section({
  /** Every key present must fit the caller and the scope; see auth.acl in config/portier.yaml. */
  match: aclMatch.prefault({}),
  actions: list(oneOf(['pull', 'push', 'delete', '*'])),
  comment: text().optional(),
})

const aclGroup = section({ name: text(), members: strings() })

const throttle = section({
  max_failures: whole({ min: 0 }).default(10),
  ip_max_failures: whole({ min: 0 }).default(50),
  window: duration().default(300_000),
  lockout: duration().default(300_000),
})

const token = section({
  service: text().default('portier-registry'),
  issuer: text().default('portier'),
  realm: text({ pattern: /^(?:https?:\/\/\S+)?$/, expect: 'empty (the built-in token server) or a URL like "https://auth.example.com/token"' }).default(''),
  key: text().default('certs/token/token.key'),
  cert: text().default('certs/token/token.crt'),
  ttl: duration().default(300_000),
  include_x5c: flag().default(true),
  key_id: oneOf(['libtrust', 'thumbprint']).default('libtrust'),
  anonymous: flag().default(false),
  external: section({
    enabled: flag().default(false),
    issuer: text().default(''),
    rootcertbundle: text().default(''),
    jwks: text().default(''),
    clock_skew: duration().default(30_000),
    max_ttl: duration().default(3_600_000),
  }).prefault({}),
})

export const authSection = section({
  mode: oneOf(['none', 'htpasswd', 'token']).default('htpasswd'),
  htpasswd: section({
    path: text().default('auth/htpasswd'),
    realm: text().default('Portier registry'),
    generate_admin: flag().default(true),
  }).prefault({}),
  cache_ttl: duration().default(300_000),
  password_checks: section({
    workers: whole({ min: 0 }).default(0),
    queue: whole({ min: 0 }).default(32),
  }).prefault({}),
  token: token.prefault({}),
  acl: list(aclRule).default(() => []),
  groups: list(aclGroup).default(() => []),
  /** How often groups and grants made in the web UI are read again from the store, without shared.redis to announce changes. */
  grants_refresh: duration().default(10_000),
  throttle: throttle.prefault({}),
  ldap: ldapSection,
}).superRefine((auth, context) => {
  const missing = (path: string[], expected: string): void => {
    context.addIssue({ code: 'custom', path, input: undefined, message: expected })
  }
  const external = auth.token.external
  if (auth.mode === 'token' && external.enabled) {
    if (!external.issuer) missing(['token', 'external', 'issuer'], "the external token server's issuer (iss) name")
    if (!auth.token.realm) missing(['token', 'realm'], 'the external token server URL clients are sent to')
    if (!external.rootcertbundle && !external.jwks) {
      missing(['token', 'external', 'rootcertbundle'], 'a PEM bundle of its certificates or public keys (or auth.token.external.jwks)')
    }
  }
  if (auth.ldap.enabled && (auth.mode === 'none' || (auth.mode === 'token' && external.enabled))) {
    context.addIssue({ code: 'custom', path: ['ldap', 'enabled'], input: true, message: 'false unless auth.mode is htpasswd or token with the built-in token server (directory users sign in there)' })
  }
  if (auth.grants_refresh < 1000) {
    context.addIssue({ code: 'custom', path: ['grants_refresh'], input: auth.grants_refresh, message: 'a duration of at least 1s (how often other instances read the web UI\'s grants again)' })
  }
    if (auth.throttle.max_failures > 0) {
    for (const name of ['window', 'lockout'] as const) {
      if (auth.throttle[name] === 0) {
        context.addIssue({ code: 'custom', path: ['throttle', name], input: 0, message: 'a duration above 0 (set auth.throttle.max_failures: 0 to turn throttling off)' })
      }
    }
  }
}).prefault({})

export type AuthConfig = z.output<typeof authSection>
export type AclAction = AclRule['actions'][number]
export type AclRule = z.output<typeof aclRule>
export type AclMatch = z.output<typeof aclMatch>
export type AclGroup = z.output<typeof aclGroup>
export type ThrottleConfig = z.output<typeof throttle>
