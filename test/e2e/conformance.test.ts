// The OCI distribution spec at the edge: what registry 2.8.2 gets wrong answered right through Portier, in every auth mode, with nothing it gets right broken.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'
import { sha256 } from '../helpers/gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const MT_CONFIG = 'application/vnd.oci.image.config.v1+json'
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  json(): unknown
  errorCode(): string | undefined
}

interface SendOptions {
  headers?: Record<string, string>
  body?: Buffer | string
}

/** The bare registry or Portier in one auth mode, spoken to the same way. */
interface Target {
  name: string
  /** Base URL, e.g. https://127.0.0.1:PORT */
  url: string
  /** Sends a request with credentials good for `scope` (e.g. repository:a/b:pull,push); `anonymous` sends none it need not. */
  send(method: string, path: string, options?: SendOptions & { scope?: string; anonymous?: boolean }): Promise<Reply>
}

async function exchange(dispatcher: Agent, url: string, method: string, options: SendOptions): Promise<Reply> {
  const body = options.body === undefined ? undefined : Buffer.from(options.body)
  const response = await request(url, {
    dispatcher,
    method: method as 'GET',
    headers: { ...(body ? { 'content-length': String(body.length) } : {}), ...(options.headers ?? {}) },
    ...(body ? { body } : {}),
  })
  const data = Buffer.from(await response.body.arrayBuffer())
  return {
    status: response.statusCode,
    headers: response.headers,
    body: data,
    json: () => JSON.parse(data.toString('utf8')) as unknown,
    errorCode: () => {
      try {
        return (JSON.parse(data.toString('utf8')) as { errors?: Array<{ code?: string }> }).errors?.[0]?.code
      } catch {
        return undefined
      }
    },
  }
}

const registry = await registryFixture(t)
const work = await mkdtemp(join(tmpdir(), 'portier-conformance-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
const htpasswd = join(work, 'htpasswd')
await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 5)}\n`)

const bareAgent = new Agent()
t.teardown(() => bareAgent.close())
const bare: Target = {
  name: 'registry 2.8.2 alone',
  url: registry.url,
  send: (method, path, options = {}) => exchange(bareAgent, `${registry.url}${path}`, method, options),
}

async function gatewayTarget(t: Test, mode: 'none' | 'htpasswd' | 'token'): Promise<{ target: Target; gateway: GatewayHandle }> {
  const auth: Record<string, unknown> =
    mode === 'none'
      ? { mode: 'none' }
      : mode === 'htpasswd'
        ? { mode: 'htpasswd', htpasswd: { path: htpasswd } }
        : {
            mode: 'token',
            htpasswd: { path: htpasswd },
            token: { key: join(work, `keys-${mode}`, 'token.key'), cert: join(work, `keys-${mode}`, 'token.crt'), anonymous: true },
            acl: [
              { match: { account: 'alice' }, actions: ['*'] },
              { match: { account: '' }, actions: ['pull'] },
            ],
          }
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], auth } })
  const agent = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => agent.close())
  const tokens = new Map<string, string>()
  const credentials = async (scope: string | undefined, anonymous: boolean): Promise<Record<string, string>> => {
    if (mode === 'none') return {}
    if (mode === 'htpasswd') return { authorization: basic('alice', 'alice-password') }
    const key = `${anonymous ? 'anonymous' : 'alice'} ${scope ?? ''}`
    let token = tokens.get(key)
    if (token === undefined) {
      const query = new URLSearchParams({ service: 'portier-registry', ...(scope ? { scope } : {}) })
      const reply = await exchange(agent, `${gateway.url}/auth/token?${query}`, 'GET', anonymous ? {} : { headers: { authorization: basic('alice', 'alice-password') } })
      if (reply.status !== 200) throw new Error(`no token for ${key}: ${reply.status} ${reply.body.toString()}`)
      token = (reply.json() as { token: string }).token
      tokens.set(key, token)
    }
    return { authorization: `Bearer ${token}` }
  }
  const target: Target = {
    name: `Portier, auth ${mode}${mode === 'token' ? ' (anonymous pull)' : ''}`,
    url: gateway.url,
    send: async (method, path, options = {}) => {
      const headers = { ...(await credentials(options.scope, options.anonymous === true)), ...(options.headers ?? {}) }
      return await exchange(agent, `${gateway.url}${path}`, method, { ...options, headers })
    },
  }
  return { target, gateway }
}

/** Pushes one small OCI image (config + one layer) by hand and tags it; returns the manifest digest. */
async function pushImage(target: Target, repository: string, tags: string[], extra: Record<string, unknown> = {}): Promise<{ digest: string; body: Buffer }> {
  const scope = `repository:${repository}:pull,push`
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const layer = randomBytes(1024)
  for (const blob of [config, layer]) {
    const reply = await target.send('POST', `/v2/${repository}/blobs/uploads/?digest=${sha256(blob)}`, {
      scope, body: blob, headers: { 'content-type': 'application/octet-stream' },
    })
    if (reply.status !== 201) throw new Error(`blob push to ${target.name}: ${reply.status} ${reply.body.toString()}`)
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: MT_MANIFEST,
    config: { mediaType: MT_CONFIG, digest: sha256(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    ...extra,
  }))
  for (const tag of tags.length > 0 ? tags : [sha256(manifest)]) {
    const reply = await target.send('PUT', `/v2/${repository}/manifests/${tag}`, { scope, body: manifest, headers: { 'content-type': MT_MANIFEST } })
    if (reply.status !== 201) throw new Error(`manifest push to ${target.name}: ${reply.status} ${reply.body.toString()}`)
  }
  return { digest: sha256(manifest), body: manifest }
}

const modes = ['none', 'htpasswd', 'token'] as const

t.test('a manifest reference that is neither tag nor digest: 404 MANIFEST_UNKNOWN for reads, 400 for PUT', async (t) => {
  const bareGet = await bare.send('GET', '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME')
  t.equal(bareGet.status, 404, 'the bare registry answers 404 (its router matches no route)')
  for (const mode of modes) {
    const { target } = await gatewayTarget(t, mode)
    await pushImage(target, 'conf/ref', ['v1'])
    for (const method of ['GET', 'HEAD']) {
      const reply = await target.send(method, '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME', { scope: 'repository:conf/ref:pull', anonymous: true })
      t.equal(reply.status, 404, `${target.name}: ${method} of an invalid reference is 404`)
      t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0', `${target.name}: ${method} carries the API version header`)
      if (method === 'GET') {
        t.equal(reply.errorCode(), 'MANIFEST_UNKNOWN', `${target.name}: the JSON error says MANIFEST_UNKNOWN`)
        t.match(reply.headers['content-type'], /^application\/json/, `${target.name}: the error is JSON`)
      }
    }
    const put = await target.send('PUT', '/v2/conf/ref/manifests/.INVALID_MANIFEST_NAME', {
      scope: 'repository:conf/ref:pull,push', body: '{}', headers: { 'content-type': MT_MANIFEST },
    })
    t.equal(put.status, 400, `${target.name}: PUT under an invalid tag is 400`)
    t.equal(put.errorCode(), 'TAG_INVALID', `${target.name}: TAG_INVALID`)
    const good = await target.send('GET', '/v2/conf/ref/manifests/v1', { scope: 'repository:conf/ref:pull', anonymous: true, headers: { accept: MT_MANIFEST } })
    t.equal(good.status, 200, `${target.name}: a valid tag still reads`)
  }
})

t.test('digest length is capped by algorithm before anything is forwarded', async (t) => {
  const { target } = await gatewayTarget(t, 'none')
  const long = `sha512:${'a'.repeat(5000)}`
  const cases: Array<[string, string]> = [
    ['GET', `/v2/conf/digest/blobs/${long}`],
    ['HEAD', `/v2/conf/digest/blobs/${long}`],
    ['POST', `/v2/conf/digest/blobs/uploads/?digest=${long}`],
    ['POST', `/v2/conf/digest/blobs/uploads/?mount=${long}&from=conf/other`],
    ['GET', `/v2/conf/digest/referrers/${long}`],
    ['GET', `/v2/conf/digest/blobs/sha256:${'a'.repeat(65)}`],
  ]
  for (const [method, path] of cases) {
    const reply = await target.send(method, path)
    t.equal(reply.status, 400, `${method} ${path.slice(0, 50)}…: 400`)
    if (method !== 'HEAD') t.equal(reply.errorCode(), 'DIGEST_INVALID', `${method} ${path.slice(0, 50)}…: DIGEST_INVALID`)
  }
  const manifestRead = await target.send('GET', `/v2/conf/digest/manifests/${long}`)
  t.equal(manifestRead.status, 404, 'a manifest read by an over-long digest: 404 (no such manifest can exist)')
  const ok = await target.send('GET', `/v2/conf/digest/blobs/sha512:${'a'.repeat(128)}`)
  t.equal(ok.status, 404, 'a well-formed sha512 digest is forwarded (the registry does not have it)')
  t.notOk((await readFile(registry.logFile, 'utf8')).includes('a'.repeat(200)), 'no over-long digest reached the registry')
})
