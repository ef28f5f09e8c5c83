// `portier token-key`: makes (or keeps) the token signing key, its certificate and token.jwks, and prints how registries use them.
import { configOption, configPath, helpOption, parseCommand } from './args.js'
import { load } from './load.js'

export const usage = `Usage: portier token-key [--out DIR] [--config FILE]

Makes the key Portier signs registry tokens with (auth.mode: token): token.key (mode 0600), its
certificate token.crt (the rootcertbundle a registry verifies Portier's tokens with) and token.jwks
(registry 3.x). An existing key is kept (registries already trust it); only its token.jwks is written.
Prints the key ids and the configuration for Portier, registry 2.8 and registry 3.x.

Options:
  -o, --out DIR       where token.key, token.crt and token.jwks go (default: certs/token)
  -c, --config FILE   YAML configuration whose auth.token.issuer names the certificate (default:
                      $PORTIER_CONFIG, else "portier")
  -h, --help          this text
`

const outOption = { type: 'string', short: 'o' } as const

export async function tokenKey(args: string[]): Promise<number> {
  const { values } = parseCommand('token-key', args, { out: outOption, config: configOption, help: helpOption }, 0)
  if (values.help) {
    process.stdout.write(usage)
    return 0
  }
  const { generateTokenKey, TokenKeyError } = await import('../auth/token/index.js')
  const file = configPath(values.config)
  const issuer = file ? load(file).config.auth.token.issuer : 'portier'
  try {
    // An existing key is kept (registries already trust it); only its token.jwks is (re)written.
    const key = generateTokenKey(values.out || 'certs/token', { commonName: issuer, keepExisting: true })
    const realm = `realm: https://<portier>/auth/token, service: portier-registry, issuer: ${issuer}`
    process.stdout.write(
      (key.kept ? `kept the existing ${key.keyPath} (${key.alg}); wrote ${key.jwksPath}\n` : `wrote ${key.keyPath} (${key.alg}, mode 0600), ${key.certPath} and ${key.jwksPath}\n`) +
        `key id (kid): ${key.kid} (libtrust, registry 2.x); RFC 7638 thumbprint: ${key.thumbprint} (registry 3.x)\n` +
        (key.expires ? `certificate valid until ${key.expires.toISOString()}\n\n` : `no certificate (${key.certPath}): registries can only use ${key.jwksPath}\n\n`) +
        `Portier:       auth: { mode: token, token: { key: ${key.keyPath}, cert: ${key.certPath} } }\n` +
        `registry 2.8:  auth: { token: { ${realm}, rootcertbundle: ${key.certPath} } }\n` +
        `registry 3.x:  the same (Portier's tokens carry x5c), or jwks: ${key.jwksPath} with Portier's auth.token.include_x5c: false and key_id: thumbprint\n`,
    )
  } catch (error) {
    if (!(error instanceof TokenKeyError)) throw error
    process.stderr.write(`portier: ${error.message}\n`)
    return 1
  }
  return 0
}
