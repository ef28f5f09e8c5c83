// A real docker-registry with auth.token trusts Portier's tokens: kid-only and x5c headers, RS256 and ES256, scopes enforced, forgeries refused; the token endpoint feeds it.
import t from 'tap'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { run } from '../helpers/exec.js'
import { freePort } from '../helpers/ports.js'
import { makeOciLayout } from '../helpers/oci.js'
import { REGISTRY_BIN } from '../helpers/registry.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import {
  createIssuer,
  createTokenEndpoint,
  generateTokenKey,
  intersectScopes,
  loadTokenKey,
  parseScopes,
  type Scope,
} from '../../src/auth/token/index.js'

const service = 'registry.test'
const issuerName = 'portier-e2e'
const repository = 'e2e/token'

const work = mkdtempSync(join(tmpdir(), 'portier-token-e2e-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// Signing keys: an RSA key made by Portier, an ES256 key made by openssl, and a key the registry does not trust.
const rsaFiles = generateTokenKey(join(work, 'rsa'), { bits: 2048, commonName: 'portier e2e' })
const rsa = loadTokenKey(rsaFiles.keyPath, rsaFiles.certPath)
const esDir = join(work, 'es')
const stranger = (() => {
  const files = generateTokenKey(join(work, 'stranger'), { bits: 2048 })
  return loadTokenKey(files.keyPath, files.certPath)
})()

const repo = (name: string, ...actions: Scope['actions']): Scope => ({ type: 'repository', name, actions })

/** Parses `Bearer k="v",…` into its parameters. */
function challengeParams(header: string | null): Record<string, string> {
  const params: Record<string, string> = {}
  if (header === null || !header.startsWith('Bearer ')) return params
  for (const match of header.slice(7).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) params[match[1] as string] = (match[2] as string).replace(/\\(.)/g, '$1')
  return params
}

async function startTokenRegistry(realm: string): Promise<{ url: string; log: () => string }> {
  mkdirSync(esDir)
  const openssl = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '30', '-subj', '/CN=es e2e', '-keyout', join(esDir, 'token.key'), '-out', join(esDir, 'token.crt')])
  if (openssl.code !== 0) throw new Error(`openssl failed: ${openssl.stderr}`)
  // The bundle holds both signers' certificates: registry:2 trusts each by libtrust kid and as an x5c root.
  const bundle = join(work, 'rootcertbundle.pem')
  writeFileSync(bundle, readFileSync(rsaFiles.certPath, 'utf8') + readFileSync(join(esDir, 'token.crt'), 'utf8'))
  const port = await freePort()
  const config = join(work, 'registry.yml')
  const logFile = join(work, 'registry.log')
  writeFileSync(config, [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: text',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(work, 'storage'))}`,
    'http:',
    `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
    `  secret: ${JSON.stringify(randomBytes(16).toString('hex'))}`,
    'auth:',
    '  token:',
    `    realm: ${JSON.stringify(realm)}`,
    `    service: ${JSON.stringify(service)}`,
    `    issuer: ${JSON.stringify(issuerName)}`,
    `    rootcertbundle: ${JSON.stringify(bundle)}`,
    '',
  ].join('\n'))
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('REGISTRY_')) env[key] = value
  const logFd = openSync(logFile, 'a')
  const child = spawn(REGISTRY_BIN, ['serve', config], { env, stdio: ['ignore', logFd, logFd] })
  closeSync(logFd)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  })
  const url = `http://127.0.0.1:${port}`
  const log = (): string => readFileSync(logFile, 'utf8')
  const deadline = Date.now() + 10_000
  for (;;) {
    // With token auth on, a running registry answers /v2/ with 401.
    const status = await fetch(`${url}/v2/`).then((r) => r.status, () => 0)
    if (status === 401) return { url, log }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`docker-registry did not start (last status ${status})\n${log()}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

t.test('registry:2 with auth.token accepts Portier tokens and enforces their scopes', async (t) => {
  const users = new Map([['ann', 'pw-ann']])
  const issuer = createIssuer({ key: rsa, issuer: issuerName, service, ttlSeconds: 300 })
  const endpoint = createTokenEndpoint({
    issuer,
    allowAnonymous: true,
    authenticate: async (user, password) => users.get(user) === password,
    // ann may do anything in e2e/*; anonymous callers may pull.
    grant: (who, scopes) => intersectScopes(scopes, scopes.map((scope) => repo(scope.name, ...(who.anonymous ? ['pull' as const] : ['*' as const])))),
  })
  const tokenServer = createServer((req, res) => void endpoint(req, res, req.socket.remoteAddress ?? ''))
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve))
  t.teardown(() => tokenServer.close())
  const address = tokenServer.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  const realm = `http://127.0.0.1:${address.port}/auth/token`

  const started = Date.now()
  const registry = await startTokenRegistry(realm)
  t.comment(`docker-registry with auth.token ready in ${Date.now() - started} ms`)
  t.teardown(() => {
    if (!t.passing()) console.error(`--- docker-registry log ---\n${registry.log().split('\n').slice(-40).join('\n')}`)
  })
  const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

  const bare = await fetch(`${registry.url}/v2/`)
  t.equal(bare.status, 401, 'GET /v2/ without a token')
  t.same(challengeParams(bare.headers.get('www-authenticate')), { realm, service }, 'a Bearer challenge naming our realm and service')

  const kidOnly = await issuer.issue({ subject: 'ann', access: [] })
  t.notOk((JSON.parse(Buffer.from(kidOnly.token.split('.')[0] as string, 'base64url').toString()) as { x5c?: unknown }).x5c, 'this token has no x5c')
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(kidOnly.token) })).status, 200, 'kid only (libtrust key ID) → 200')

  const withX5c = await createIssuer({ key: rsa, issuer: issuerName, service, includeX5c: true }).issue({ subject: 'ann', access: [] })
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(withX5c.token) })).status, 200, 'kid + x5c → 200')
  // registry:2 looks at x5c before kid: with a kid it does not know, only the certificate chain can have been used.
  const x5cOnly = await createIssuer({ key: { ...rsa, kid: 'AAAA:BBBB:CCCC' }, issuer: issuerName, service, includeX5c: true }).issue({ subject: 'ann', access: [] })
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(x5cOnly.token) })).status, 200, 'x5c with an unknown kid → 200 (chain verified)')
  const unknownKid = await createIssuer({ key: { ...rsa, kid: 'AAAA:BBBB:CCCC' }, issuer: issuerName, service }).issue({ subject: 'ann', access: [] })
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(unknownKid.token) })).status, 401, 'a kid registry:2 does not know, no x5c → 401')

  const es = loadTokenKey(join(esDir, 'token.key'), join(esDir, 'token.crt'))
  for (const includeX5c of [false, true]) {
    const esToken = await createIssuer({ key: es, issuer: issuerName, service, includeX5c }).issue({ subject: 'ann', access: [] })
    t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(esToken.token) })).status, 200, `ES256 key from openssl, ${includeX5c ? 'x5c' : 'kid only'} → 200`)
  }

  // A blob upload: POST starts the session (202 + Location), PUT ?digest= with the body finishes it (201).
  // registry 2.8.2 answers a POST ?digest= with 202 too, so the PUT is always needed.
  const blob = randomBytes(4096)
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`
  const start = (token: string): Promise<Response> =>
    fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers: { ...bearer(token), 'content-length': '0' } })
  const upload = async (token: string): Promise<Response> => {
    const started = await start(token)
    await started.arrayBuffer()
    if (started.status !== 202) return started
    const location = new URL(started.headers.get('location') ?? '', registry.url)
    location.searchParams.set('digest', digest)
    return fetch(location, {
      method: 'PUT',
      headers: { ...bearer(token), 'content-type': 'application/octet-stream', 'content-length': String(blob.length) },
      body: blob,
    })
  }

  const pullOnly = await issuer.issue({ subject: 'ann', access: [repo(repository, 'pull')] })
  const denied = await start(pullOnly.token)
  t.equal(denied.status, 401, 'a pull-only token on POST → 401')
  const deniedChallenge = challengeParams(denied.headers.get('www-authenticate'))
  t.equal(deniedChallenge.error, 'insufficient_scope')
  // registry:2 lists the actions in Go map order (either way round from run to run).
  const askedScopes = parseScopes(deniedChallenge.scope ?? '').map((scope) => ({ ...scope, actions: [...scope.actions].sort() }))
  t.same(askedScopes, [repo(repository, 'pull', 'push')], 'the challenge asks for pull and push, which parseScopes reads back')

  const otherRepo = await issuer.issue({ subject: 'ann', access: [repo('e2e/other', 'pull', 'push')] })
  t.equal((await upload(otherRepo.token)).status, 401, 'a token for another repository → 401')
  const forged = await createIssuer({ key: stranger, issuer: issuerName, service }).issue({ subject: 'ann', access: [repo(repository, 'pull', 'push')] })
  t.equal((await upload(forged.token)).status, 401, 'signed by a key the registry does not trust → 401')
  const forgedX5c = await createIssuer({ key: { ...stranger, kid: rsa.kid }, issuer: issuerName, service, includeX5c: true }).issue({ subject: 'ann', access: [repo(repository, 'pull', 'push')] })
  t.equal((await upload(forgedX5c.token)).status, 401, 'another key claiming our kid, with its own certificate → 401')
  const wrongAudience = await createIssuer({ key: rsa, issuer: issuerName, service: 'elsewhere' }).issue({ subject: 'ann', access: [repo(repository, 'pull', 'push')] })
  t.equal((await upload(wrongAudience.token)).status, 401, 'a token for another service → 401')
  const refresh = await issuer.issueRefresh('ann')
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(refresh) })).status, 401, 'a refresh token is no access token for registry:2')

  const pushPull = await issuer.issue({ subject: 'ann', access: [repo(repository, 'pull', 'push')] })
  const pushed = await upload(pushPull.token)
  t.equal(pushed.status, 201, 'a push,pull token uploads the blob (POST, then PUT with the digest)')
  t.equal(pushed.headers.get('docker-content-digest'), digest)

  // As a client does it: challenge → token endpoint (Basic, GET) → retry.
  const head = await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD' })
  const asked = challengeParams(head.headers.get('www-authenticate'))
  t.same(parseScopes(asked.scope ?? ''), [repo(repository, 'pull')])
  const viaGet = await fetch(`${asked.realm}?service=${encodeURIComponent(asked.service ?? '')}&scope=${encodeURIComponent(asked.scope ?? '')}&account=ann&client_id=docker`, {
    headers: { authorization: `Basic ${Buffer.from('ann:pw-ann').toString('base64')}` },
  })
  t.equal(viaGet.status, 200)
  const getToken = ((await viaGet.json()) as { token: string }).token
  t.equal((await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD', headers: bearer(getToken) })).status, 200, 'GET token pulls')

  const anonymous = await fetch(`${realm}?service=${service}&scope=repository:${repository}:pull,push`)
  const anonymousToken = ((await anonymous.json()) as { token: string }).token
  t.equal((await fetch(`${registry.url}/v2/${repository}/blobs/${digest}`, { method: 'HEAD', headers: bearer(anonymousToken) })).status, 200, 'anonymous token pulls')
  t.equal((await upload(anonymousToken)).status, 401, 'anonymous token cannot push: it asked for push and got pull only')

  const form = (fields: Record<string, string>): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ service, client_id: 'docker', ...fields }).toString(),
  })
  const login = await fetch(realm, form({ grant_type: 'password', username: 'ann', password: 'pw-ann', access_type: 'offline' }))
  t.equal(login.status, 200, 'POST grant_type=password (docker login)')
  const loginBody = (await login.json()) as { access_token: string; refresh_token: string }
  t.equal((await fetch(`${registry.url}/v2/`, { headers: bearer(loginBody.access_token) })).status, 200)
  const refreshed = await fetch(realm, form({ grant_type: 'refresh_token', refresh_token: loginBody.refresh_token, scope: `repository:${repository}:pull,push` }))
  t.equal(refreshed.status, 200, 'POST grant_type=refresh_token')
  const refreshedToken = ((await refreshed.json()) as { access_token: string }).access_token
  t.equal((await upload(refreshedToken)).status, 201, 'the refreshed token pushes')

  // A real client: skopeo follows the registry's challenge to the token endpoint with Basic credentials.
  const image = await makeOciLayout(join(work, 'image'), { layers: [256 * 1024] })
  const ref = `docker://127.0.0.1:${new URL(registry.url).port}/e2e/skopeo:v1`
  const push = await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCreds: 'ann:pw-ann', destTlsVerify: false })
  t.comment(`skopeo push through token auth: ${push.ms} ms`)
  const pull = await skopeoCopy(ref, `oci:${join(work, 'pulled')}:latest`, { srcTlsVerify: false, allowFailure: true })
  t.equal(pull.code, 0, 'skopeo pulls anonymously with an anonymous token')
  const anonymousPush = await skopeoCopy(`oci:${image.dir}:latest`, `docker://127.0.0.1:${new URL(registry.url).port}/e2e/skopeo:anon`, { destTlsVerify: false, allowFailure: true })
  t.not(anonymousPush.code, 0, 'skopeo cannot push anonymously')
  const wrongPassword = await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCreds: 'ann:wrong', destTlsVerify: false, allowFailure: true })
  t.not(wrongPassword.code, 0, 'nor with a wrong password')
  t.match(wrongPassword.stderr, /unauthorized|401/i)
})
