// Every configuration key Portier knows: its type, default and meaning. Loading and env overrides read this.

export type Field =
  | { kind: 'string'; default?: string; oneOf?: readonly string[]; pattern?: RegExp; expect?: string; optional?: boolean }
  | { kind: 'bool'; default?: boolean; optional?: boolean }
  | { kind: 'int'; default?: number; min?: number; max?: number; optional?: boolean }
  | { kind: 'size'; default?: number; optional?: boolean }
  | { kind: 'duration'; default?: number; optional?: boolean; /** Longer than a timer can wait: the user clamps its timers. */ max?: number }
  | { kind: 'strings'; default?: string[]; optional?: boolean }
  | { kind: 'list'; of: Section; optional?: boolean }
  | Section

export interface Section {
  kind: 'section'
  fields: Record<string, Field>
  optional?: boolean
}

const hostPort = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]*):\d{1,5}$/
const hostPortExpect = 'an address like "0.0.0.0:5443", "127.0.0.1:80" or "[::1]:5443"'

export const schema: Section = {
  kind: 'section',
  fields: {
    server: {
      kind: 'section',
      fields: {
        listen: { kind: 'string', default: '0.0.0.0:5443', pattern: hostPort, expect: hostPortExpect },
        public_url: { kind: 'string', default: '', pattern: /^(?:https?:\/\/[^/?#\s]+\/?)?$/, expect: 'an origin like "https://registry.example.com" (no path), or empty to use the Host header' },
        http_redirect_listen: { kind: 'string', default: '', pattern: new RegExp(`^(?:${hostPort.source.slice(1, -1)})?$`), expect: `empty, or ${hostPortExpect}` },
        trusted_proxies: { kind: 'strings', default: [] },
        drain_timeout: { kind: 'duration', default: 30_000 },
        max_connections: { kind: 'int', default: 1024, min: 0 },
        hosts: { kind: 'strings', default: [] },
        hsts: {
          kind: 'section',
          fields: {
            send: { kind: 'string', default: 'auto', oneOf: ['auto', 'always', 'never'] },
            // Sent as seconds, never used as a timer: longer than a timer's 24 days is fine.
            max_age: { kind: 'duration', default: 365 * 86_400_000, max: 2 * 365 * 86_400_000 },
            include_subdomains: { kind: 'bool', default: false },
          },
        },
      },
    },
    tls: {
      kind: 'section',
      fields: {
        enabled: { kind: 'bool', default: true },
        certificates: {
          kind: 'list',
          of: { kind: 'section', fields: { cert: { kind: 'string' }, key: { kind: 'string' } } },
        },
        self_signed: {
          kind: 'section',
          fields: {
            dir: { kind: 'string', default: 'certs/self-signed' },
            hosts: { kind: 'strings', default: [] },
          },
        },
        min_version: { kind: 'string', default: 'TLSv1.2', oneOf: ['TLSv1.2', 'TLSv1.3'] },
        acme: {
          kind: 'section',
          fields: {
            enabled: { kind: 'bool', default: false },
            directory_url: {
              kind: 'string',
              default: 'https://acme-v02.api.letsencrypt.org/directory',
              pattern: /^(?:letsencrypt|letsencrypt-staging|https:\/\/\S+)$/,
              expect: 'an https:// ACME directory URL, or "letsencrypt" / "letsencrypt-staging"',
            },
            email: { kind: 'string', default: '', pattern: /^(?:[^@\s:,]+@[^@\s:,]+\.[^@\s:,]+)?$/, expect: 'an email address like "ops@example.com", or empty' },
            domains: { kind: 'strings', default: [] },
            challenge: { kind: 'string', default: 'http-01', oneOf: ['http-01', 'tls-alpn-01'] },
            storage: { kind: 'string', default: 'certs/acme' },
            // Let's Encrypt certificates live 90 days (45 from 2026 on): longer than a timer can wait.
            renew_before: { kind: 'duration', default: 30 * 86_400_000, max: 365 * 86_400_000 },
            ca_bundle: { kind: 'string', default: '' },
            eab: { kind: 'section', fields: { kid: { kind: 'string', default: '' }, hmac_key: { kind: 'string', default: '' } } },
            self_check: { kind: 'bool', default: true },
            retry_min: { kind: 'duration', default: 60_000 },
            retry_max: { kind: 'duration', default: 6 * 3_600_000 },
          },
        },
      },
    },
    upstreams: {
      kind: 'list',
      of: {
        kind: 'section',
        fields: {
          url: { kind: 'string', pattern: /^https?:\/\/[^/?#\s]+\/?$/, expect: 'a registry origin like "http://registry:5000"' },
          name: { kind: 'string', default: '' },
          username: { kind: 'string', default: '' },
          password: { kind: 'string', default: '' },
          forward_authorization: { kind: 'bool', default: false },
          // Absent unless set, so a plain upstream entry stays as short as before.
          weight: { kind: 'int', min: 1, max: 1000, optional: true },
          ca_bundle: { kind: 'string', optional: true },
          client_cert: { kind: 'string', optional: true },
          client_key: { kind: 'string', optional: true },
        },
      },
    },
    routing: {
      kind: 'section',
      fields: {
        strategy: {
          kind: 'string',
          default: '',
          oneOf: ['', 'shared', 'by-repository', 'mirror'],
        },
        balance: { kind: 'string', default: 'least-in-flight', oneOf: ['least-in-flight', 'round-robin'] },
        secret: { kind: 'string', default: '', pattern: /^(?:.{32,})?$/, expect: 'empty (use secret_file), or a random string of at least 32 characters' },
        secret_file: { kind: 'string', default: 'data/routing/secret' },
        mirror: {
          kind: 'section',
          fields: {
            require: { kind: 'string', default: 'all', oneOf: ['all', 'quorum'] },
          },
        },
      },
    },
    embedded_registry: {
      kind: 'section',
      fields: {
        binary: { kind: 'string', default: '' },
        data_dir: { kind: 'string', default: 'data/registry' },
        restart_max_backoff: { kind: 'duration', default: 30_000 },
      },
    },
    timeouts: {
      kind: 'section',
      fields: {
        upstream_connect: { kind: 'duration', default: 10_000 },
        upstream_headers: { kind: 'duration', default: 60_000 },
        body_idle: { kind: 'duration', default: 300_000 },
        min_rate: { kind: 'size', default: 4096 },
        min_rate_grace: { kind: 'duration', default: 30_000 },
        min_rate_window: { kind: 'duration', default: 20_000 },
      },
    },
    limits: {
      kind: 'section',
      fields: {
        blob_max_bytes: { kind: 'size', default: 0 },
        manifest_max_bytes: { kind: 'size', default: 4 * 1024 * 1024 },
        repositories: {
          kind: 'list',
          of: {
            kind: 'section',
            fields: {
              match: { kind: 'string' },
              blob_max_bytes: { kind: 'size', optional: true },
              manifest_max_bytes: { kind: 'size', optional: true },
            },
          },
        },
        per_client: {
          kind: 'section',
          fields: {
            max_exchanges_per_user: { kind: 'int', default: 32, min: 0 },
            max_exchanges_per_address: { kind: 'int', default: 64, min: 0 },
          },
        },
      },
    },
    auth: {
      kind: 'section',
      fields: {
        mode: { kind: 'string', default: 'htpasswd', oneOf: ['none', 'htpasswd', 'token'] },
        htpasswd: {
          kind: 'section',
          fields: {
            path: { kind: 'string', default: 'auth/htpasswd' },
            realm: { kind: 'string', default: 'Portier registry' },
            generate_admin: { kind: 'bool', default: true },
          },
        },
        cache_ttl: { kind: 'duration', default: 300_000 },
        password_checks: {
          kind: 'section',
          fields: {
            workers: { kind: 'int', default: 0, min: 0 },
            queue: { kind: 'int', default: 32, min: 0 },
          },
        },
        token: {
          kind: 'section',
          fields: {
            service: { kind: 'string', default: 'portier-registry' },
            issuer: { kind: 'string', default: 'portier' },
            realm: { kind: 'string', default: '', pattern: /^(?:https?:\/\/\S+)?$/, expect: 'empty (the built-in token server) or a URL like "https://auth.example.com/token"' },
            key: { kind: 'string', default: 'certs/token/token.key' },
            cert: { kind: 'string', default: 'certs/token/token.crt' },
            ttl: { kind: 'duration', default: 300_000 },
            include_x5c: { kind: 'bool', default: true },
            key_id: { kind: 'string', default: 'libtrust', oneOf: ['libtrust', 'thumbprint'] },
            anonymous: { kind: 'bool', default: false },
            external: {
              kind: 'section',
              fields: {
                enabled: { kind: 'bool', default: false },
                issuer: { kind: 'string', default: '' },
                rootcertbundle: { kind: 'string', default: '' },
                jwks: { kind: 'string', default: '' },
                clock_skew: { kind: 'duration', default: 30_000 },
                max_ttl: { kind: 'duration', default: 3_600_000 },
              },
            },
          },
        },
        acl: {
          kind: 'list',
          of: {
            kind: 'section',
            fields: {
              match: {
                kind: 'section',
                fields: {
                  account: { kind: 'string', optional: true },
                  group: { kind: 'string', optional: true },
                  name: { kind: 'string', optional: true },
                  type: { kind: 'string', optional: true, oneOf: ['repository', 'registry'] },
                  ip: { kind: 'string', optional: true },
                },
              },
              actions: { kind: 'strings' },
              comment: { kind: 'string', optional: true },
            },
          },
        },
        groups: {
          kind: 'list',
          of: { kind: 'section', fields: { name: { kind: 'string' }, members: { kind: 'strings' } } },
        },
        throttle: {
          kind: 'section',
          fields: {
            max_failures: { kind: 'int', default: 10, min: 0 },
            ip_max_failures: { kind: 'int', default: 50, min: 0 },
            window: { kind: 'duration', default: 300_000 },
            lockout: { kind: 'duration', default: 300_000 },
          },
        },
      },
    },
    ui: {
      kind: 'section',
      fields: {
        enabled: { kind: 'bool', default: true },
        session_ttl: { kind: 'duration', default: 12 * 3_600_000 },
        session_secret: { kind: 'string', default: '', pattern: /^(?:.{32,})?$/, expect: 'empty (use session_secret_file), or a random string of at least 32 characters' },
        session_secret_file: { kind: 'string', default: 'data/ui/session-secret' },
        admin_users: { kind: 'strings', default: [] },
      },
    },
    log: {
      kind: 'section',
      fields: {
        level: { kind: 'string', default: 'info', oneOf: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
        format: { kind: 'string', default: 'json', oneOf: ['json', 'pretty'] },
      },
    },
    admin: {
      kind: 'section',
      fields: {
        listen: { kind: 'string', default: '127.0.0.1:9113', pattern: new RegExp(`^(?:${hostPort.source.slice(1, -1)})?$`), expect: `empty (no admin listener), or ${hostPortExpect}` },
        on_main_listener: { kind: 'bool', default: false },
        allow: { kind: 'strings', default: [] },
        htpasswd: { kind: 'string', default: '' },
      },
    },
    metrics: {
      kind: 'section',
      fields: {
        enabled: { kind: 'bool', default: true },
        per_repository: { kind: 'bool', default: false },
        max_repositories: { kind: 'int', default: 100, min: 1 },
      },
    },
    health: {
      kind: 'section',
      fields: {
        interval: { kind: 'duration', default: 10_000 },
        timeout: { kind: 'duration', default: 5_000 },
        failure_threshold: { kind: 'int', default: 3, min: 1 },
        success_threshold: { kind: 'int', default: 1, min: 1 },
      },
    },
  },
}

export interface CertificateFiles { cert: string; key: string }
export interface AcmeConfig {
  enabled: boolean
  /** An https URL, or the alias "letsencrypt" / "letsencrypt-staging". */
  directory_url: string
  email: string
  domains: string[]
  challenge: 'http-01' | 'tls-alpn-01'
  storage: string
  renew_before: number
  ca_bundle: string
  eab: { kid: string; hmac_key: string }
  self_check: boolean
  retry_min: number
  retry_max: number
}
export interface UpstreamConfig {
  url: string
  name: string
  /** Basic credentials Portier itself presents to this upstream (empty: none). */
  username: string
  password: string
  /** Pass the client's own Authorization header through (e.g. the upstream verifies Portier's tokens). */
  forward_authorization: boolean
  /** Share of repositories (by-repository) or of requests (shared) relative to the others; 1 when absent. */
  weight?: number
  /** PEM file of CA certificates trusted for this upstream's HTTPS (in addition to the system roots). */
  ca_bundle?: string
  /** PEM client certificate and key Portier presents to this upstream (mutual TLS). */
  client_cert?: string
  client_key?: string
}
export type RoutingStrategy = 'shared' | 'by-repository' | 'mirror'
export interface RoutingConfig {
  /** Empty only with a single upstream (load.ts insists on a choice when there are several). */
  strategy: '' | RoutingStrategy
  balance: 'least-in-flight' | 'round-robin'
  secret: string
  secret_file: string
  mirror: { require: 'all' | 'quorum' }
}
export interface RepositoryLimitRule { match: string; blob_max_bytes?: number; manifest_max_bytes?: number }
export type AclAction = 'pull' | 'push' | 'delete' | '*'
/** Every key present must fit the caller and the scope; see auth.acl in config/portier.yaml. */
export interface AclMatch { account?: string; group?: string; name?: string; type?: 'repository' | 'registry'; ip?: string }
export interface AclRule { match: AclMatch; actions: AclAction[]; comment?: string }
export interface AclGroup { name: string; members: string[] }
export interface ThrottleConfig { max_failures: number; ip_max_failures: number; window: number; lockout: number }

/** The validated configuration; durations are milliseconds and sizes bytes. */
export interface Config {
  server: {
    listen: string
    public_url: string
    http_redirect_listen: string
    trusted_proxies: string[]
    drain_timeout: number
    /** Client connections on the main listener before new ones get 503 and are closed (0 = no cap). */
    max_connections: number
    /** Host names (or "*.example.com") accepted in the Host header besides the certificates' names. */
    hosts: string[]
    /** Strict-Transport-Security: auto sends it when TLS is on with a certificate clients can verify. */
    hsts: { send: 'auto' | 'always' | 'never'; max_age: number; include_subdomains: boolean }
  }
  tls: {
    enabled: boolean
    certificates: CertificateFiles[]
    self_signed: { dir: string; hosts: string[] }
    min_version: 'TLSv1.2' | 'TLSv1.3'
    acme: AcmeConfig
  }
  upstreams: UpstreamConfig[]
  routing: RoutingConfig
  embedded_registry: { binary: string; data_dir: string; restart_max_backoff: number }
  timeouts: {
    upstream_connect: number
    upstream_headers: number
    body_idle: number
    /** Bytes per second a request or response body must move while the gateway waits on the client (0 = off). */
    min_rate: number
    min_rate_grace: number
    min_rate_window: number
  }
  limits: {
    blob_max_bytes: number
    manifest_max_bytes: number
    repositories: RepositoryLimitRule[]
    /** Upstream exchanges one authenticated user, and one client address, may have open at once (0 = no limit). */
    per_client: { max_exchanges_per_user: number; max_exchanges_per_address: number }
  }
  auth: {
    mode: 'none' | 'htpasswd' | 'token'
    htpasswd: { path: string; realm: string; generate_admin: boolean }
    cache_ttl: number
    password_checks: { workers: number; queue: number }
    token: {
      service: string
      issuer: string
      realm: string
      key: string
      cert: string
      ttl: number
      include_x5c: boolean
      key_id: 'libtrust' | 'thumbprint'
      anonymous: boolean
      external: { enabled: boolean; issuer: string; rootcertbundle: string; jwks: string; clock_skew: number; max_ttl: number }
    }
    acl: AclRule[]
    groups: AclGroup[]
    throttle: ThrottleConfig
  }
  ui: { enabled: boolean; session_ttl: number; session_secret: string; session_secret_file: string; admin_users: string[] }
  log: { level: string; format: 'json' | 'pretty' }
  admin: { listen: string; on_main_listener: boolean; allow: string[]; htpasswd: string }
  metrics: { enabled: boolean; per_repository: boolean; max_repositories: number }
  health: { interval: number; timeout: number; failure_threshold: number; success_threshold: number }
}
