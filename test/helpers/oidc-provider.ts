// A real OpenID provider for tests: oidc-provider in the test process on https://127.0.0.1:<free port> (its own
// self-signed certificate), one confidential client, accounts with groups, and its devInteractions login form driven by playwright.
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { BrowserContext, Page } from 'playwright-core'
import Provider, { type Adapter, type AdapterPayload, type Configuration } from 'oidc-provider'
import { selfSignedCertificate } from '../../src/tls/x509.js'

export interface OidcAccount {
  groups: string[]
  email?: string
}

export interface OidcProviderOptions {
  /** Where the certificate and the client secret file are written. */
  dir: string
  accounts: Record<string, OidcAccount>
  clientId?: string
}

export interface OidcProviderHandle {
  /** https://127.0.0.1:PORT */
  issuer: string
  /** The provider's certificate (self-signed, CA:true): ui.oidc.ca_file. */
  caFile: string
  clientId: string
  clientSecret: string
  /** A file holding clientSecret: ui.oidc.client_secret_file. */
  clientSecretFile: string
  /** Registers Portier's callback and post-logout URLs (known once the gateway listens). */
  registerClient(redirectUris: string[], postLogoutRedirectUris: string[]): Promise<void>
  /** Closes the server (and every connection): the provider is down. Idempotent. */
  stop(): Promise<void>
}

/** oidc-provider's storage for one model, in memory; clients are stored here too, so they can be (re)registered after start. */
function memoryAdapter(store: Map<string, AdapterPayload>): new (name: string) => Adapter {
  return class MemoryStore implements Adapter {
    constructor(private readonly model: string) {}
    private key(id: string): string {
      return `${this.model}:${id}`
    }
    async upsert(id: string, payload: AdapterPayload): Promise<void> {
      store.set(this.key(id), payload)
      if (this.model === 'Session' && typeof payload.uid === 'string') store.set(`SessionUid:${payload.uid}`, { jti: id })
    }
    async find(id: string): Promise<AdapterPayload | undefined> {
      return store.get(this.key(id))
    }
    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const id = store.get(`SessionUid:${uid}`)?.jti
      return typeof id === 'string' ? this.find(id) : undefined
    }
    async findByUserCode(): Promise<AdapterPayload | undefined> {
      return undefined
    }
    async consume(id: string): Promise<void> {
      const payload = store.get(this.key(id))
      if (payload) payload.consumed = Math.floor(Date.now() / 1000)
    }
    async destroy(id: string): Promise<void> {
      store.delete(this.key(id))
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const [key, payload] of store) if (payload.grantId === grantId) store.delete(key)
    }
  }
}

/** A page with no resources from elsewhere: the tests reach nothing but loopback. */
const plainPage = (title: string, body: string): string =>
  `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`

export async function startOidcProvider(options: OidcProviderOptions): Promise<OidcProviderHandle> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const now = Date.now()
  const certPem = selfSignedCertificate({
    privateKey,
    commonName: '127.0.0.1',
    organization: 'Portier test OpenID provider',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
  })
  const caFile = join(options.dir, 'oidc-provider-ca.pem')
  writeFileSync(caFile, certPem)
  const clientId = options.clientId ?? 'portier'
  const clientSecret = randomBytes(24).toString('base64url')
  const clientSecretFile = join(options.dir, 'oidc-client-secret')
  writeFileSync(clientSecretFile, `${clientSecret}\n`, { mode: 0o600 })

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(503).end()
  const server: Server = createServer({ key: privateKey.export({ type: 'pkcs8', format: 'pem' }), cert: certPem }, (req, res) => handler(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, resolve)
  })
  const issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' })
  const store = new Map<string, AdapterPayload>()
  const configuration: Configuration = {
    adapter: memoryAdapter(store),
    jwks: { keys: [{ ...signing, kid: 'test-signing-key', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email', 'email_verified'], groups: ['groups'] },
    scopes: ['openid', 'profile', 'email', 'groups', 'offline_access'],
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: (ctx, form) => {
          ctx.body = plainPage('Sign out', `<h1>Sign out of the test provider?</h1>${form}<button type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>`)
        },
        postLogoutSuccessSource: (ctx) => {
          ctx.body = plainPage('Signed out', '<h1>Signed out</h1>')
        },
      },
    },
    renderError: (ctx, out) => {
      ctx.type = 'html'
      ctx.body = plainPage('Error', `<h1>Error</h1><pre>${JSON.stringify(out).replace(/[<>&]/g, '')}</pre>`)
    },
    pkce: { required: () => true },
    findAccount: (_ctx, id) => {
      const account = options.accounts[id]
      if (!account) return undefined
      return {
        accountId: id,
        claims: () => ({ sub: id, preferred_username: id, name: id, email: account.email ?? `${id}@example.test`, email_verified: true, groups: account.groups }),
      }
    },
  }
  const provider = new Provider(issuer, configuration)
  const serve = provider.callback()
  handler = (req, res) => {
    serve(req, res).catch(() => res.destroy())
  }

  const sockets = new Set<Socket>()
  server.on('secureConnection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  let stopped: Promise<void> | undefined
  return {
    issuer,
    caFile,
    clientId,
    clientSecret,
    clientSecretFile,
    async registerClient(redirectUris, postLogoutRedirectUris) {
      const metadata: AdapterPayload = {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        post_logout_redirect_uris: postLogoutRedirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      }
      store.set(`Client:${clientId}`, metadata)
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      })
      return stopped
    },
  }
}

export async function oidcProviderFixture(t: Test, options: OidcProviderOptions): Promise<OidcProviderHandle> {
  const handle = await startOidcProvider(options)
  t.teardown(() => handle.stop())
  return handle
}

/** Chromium must never leave loopback: the provider's default pages name a web font, refused here. */
export async function keepOnLoopback(context: BrowserContext): Promise<void> {
  await context.route(/^https?:\/\/(?!127\.0\.0\.1[:/]|localhost[:/])/, (route) => route.abort())
}

/**
 * On the provider's devInteractions pages: the login form (any password), then the consent page when it asks;
 * returns once the browser has left the provider (back at Portier's callback and wherever it sends it).
 */
export async function signInAtProvider(page: Page, login: string, issuer: string): Promise<void> {
  await page.locator('input[name="login"]').fill(login)
  await page.locator('input[name="password"]').fill('any-password')
  await page.locator('button[type="submit"]').click()
  const away = (url: URL): boolean => url.origin !== issuer
  const consent = page.getByRole('button', { name: 'Continue' })
  // The loser of the race is left to time out quietly.
  const shown = consent.waitFor().then(() => 'consent')
  const left = page.waitForURL(away).then(() => 'left')
  shown.catch(() => undefined)
  left.catch(() => undefined)
  await Promise.race([shown, left])
  if (!away(new URL(page.url()))) {
    await consent.click()
    await page.waitForURL(away)
  }
  await page.waitForLoadState('load')
}
