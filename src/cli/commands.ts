// The commands of the portier binary, loaded only when run, and the global help that lists them.

export interface CommandModule {
  /** The command's own --help text. */
  usage: string
  run(args: string[]): Promise<number>
}

/** Each command lives in its own file; only the one asked for is loaded. */
export const commands: Readonly<Record<string, () => Promise<CommandModule>>> = {
  serve: async () => {
    const { usage, serve } = await import('./serve.js')
    return { usage, run: serve }
  },
  'check-config': async () => {
    const { usage, checkConfig } = await import('./check-config.js')
    return { usage, run: checkConfig }
  },
  passwd: async () => {
    const { usage, passwd } = await import('./passwd.js')
    return { usage, run: passwd }
  },
  healthcheck: async () => {
    const { usage, healthcheck } = await import('./healthcheck.js')
    return { usage, run: healthcheck }
  },
  audit: async () => {
    const { usage, audit } = await import('./audit.js')
    return { usage, run: audit }
  },
  times: async () => {
    const { usage, times } = await import('./times.js')
    return { usage, run: times }
  },
  'token-key': async () => {
    const { usage, tokenKey } = await import('./token-key.js')
    return { usage, run: tokenKey }
  },
  token: async () => {
    const { usage, token } = await import('./token.js')
    return { usage, run: token }
  },
  access: async () => {
    const { usage, access } = await import('./access.js')
    return { usage, run: access }
  },
  maintenance: async () => {
    const { usage, maintenance } = await import('./maintenance.js')
    return { usage, run: maintenance }
  },
  events: async () => {
    const { usage, events } = await import('./events.js')
    return { usage, run: events }
  },
  retention: async () => {
    const { usage, retention } = await import('./retention.js')
    return { usage, run: retention }
  },
  gc: async () => {
    const { usage, gc } = await import('./gc.js')
    return { usage, run: gc }
  },
  repo: async () => {
    const { usage, repo } = await import('./repo.js')
    return { usage, run: repo }
  },
}

export const help = `portier — an HTTPS gateway for Docker/OCI registries

Usage:
  portier serve [--config FILE]          run the gateway
  portier check-config [--config FILE]   validate the configuration and the files it names, exit
                                         (0 = valid, 2 = problems)
  portier passwd add|remove|list [--file FILE] [--mode MODE] [USER]
                                         manage an htpasswd file (bcrypt, cost 10); the password
                                         is read from the terminal, or the first line of stdin
  portier healthcheck [--config FILE]    exit 0 when the running gateway answers (the admin
                                         listener's /healthz; else /healthz on server.listen with
                                         admin.on_main_listener; else /v2/ there)
  portier token-key [--out DIR]          make the token signing key, its certificate (the
                                         rootcertbundle a registry verifies Portier's tokens with)
                                         and token.jwks (registry 3.x); keeps an existing key
  portier token create|list|revoke [--name NAME] [--scope SCOPE…] [--expires 90d] [--robot]
                 [--owner USER] [--json] [ID]
                                         access tokens and robot accounts: passwords for docker
                                         login held to their own scopes, shown once, revocable
                                         at once (admin API)
  portier access groups|group-create|group-members|group-delete NAME [--member USER…]
  portier access grants|grant-create|grant-delete [--for-user U|--for-group G] [--repository GLOB]
                 [--actions pull,push] [ID]
  portier access explain --for USER --repository NAME
                                         the ACL's groups and grants kept in the store (as the web
                                         UI's "Users & access"), and why a user may do what (admin API)
  portier maintenance on|off|status [--message TEXT] [--retry-after 10m] [--admin-url URL] [--user USER]
                                         read-only mode at the gateway, no restart: pulls go on,
                                         pushes and deletes are refused (through the admin API)
  portier audit [--repo R] [--user U] [--since 24h|ISO] [--action A] [--limit N] [--json]
                                         the audit trail (pushes, deletes, logins) from the store
  portier times [--repo R] [--json]      push/pull times per tag from the store
  portier events list|retry [--endpoint NAME] [--dead]
                                         webhook endpoints' health, queued events and dead
                                         letters; retry sends dead letters again (admin API)
  portier retention [--dry-run] [--all] [--json]
                                         apply retention.rules now (admin API); --dry-run lists
                                         exactly what would be deleted and why
  portier gc [--dry-run] [--delete-untagged] [--yes]
                                         garbage collection without downtime: maintenance on,
                                         wait for uploads, the registry's collector, maintenance
                                         off; shows progress and the bytes freed (admin API)
  portier repo delete NAME [--gc] [--yes]
                                         delete every image of a repository (admin API)
  portier COMMAND --help                 that command's own usage (also: portier help COMMAND)
  portier --help | --version

Options:
  -c, --config FILE   YAML configuration (default: $PORTIER_CONFIG, else built-in defaults)
  -f, --file FILE     for passwd: the htpasswd file (default: auth.htpasswd.path of the config)
  -m, --mode MODE     for passwd: the file's permissions, e.g. 0644 when the gateway runs as
                      another user (a container); default: an existing file keeps its mode, a
                      new one is 0600
  -o, --out DIR       for token-key: where token.key, token.crt and token.jwks go (default: certs/token)

Configuration:
  Every key has a default; see config/portier.yaml for all of them. Any key can be set from the
  environment as PORTIER_ + its path upper-cased and joined by "_", for example
  PORTIER_SERVER_LISTEN=0.0.0.0:443 or PORTIER_LIMITS_BLOB_MAX_BYTES=10GiB. Lists take YAML/JSON:
  PORTIER_UPSTREAMS='[{url: "http://registry:5000"}]'.

With no upstreams configured, portier starts a local registry (docker-registry) itself, storing
data in data/registry, and with no certificates configured it generates a self-signed one in
certs/self-signed (its SHA-256 fingerprint is logged). With auth.mode htpasswd (the default) and
no htpasswd file yet, it creates auth/htpasswd with user "admin" and prints the password once.
`
