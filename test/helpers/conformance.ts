// Shared by the conformance tests: the bare registry and Portier in each auth mode as one kind of target, and images pushed by hand.
import type { Test } from 'tap'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from './registry.js'
import { gatewayFixture, type GatewayHandle } from './gateway.js'
import { sha256 } from './gwclient.js'
import { hashPassword } from '../../src/auth/hashes.js'

export const MT_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const MT_CONFIG = 'application/vnd.oci.image.config.v1+json'
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  json(): unknown
  errorCode(): string | undefined
}

export interface SendOptions {
  headers?: Record<string, string>
  body?: Buffer | string
}

/** The bare registry or Portier in one auth mode, spoken to the same way. */
export interface Target {
  name: string
  /** Base URL, e.g. https://127.0.0.1:PORT */
  url: string
  /** Sends a request with credentials good for `scope` (e.g. repository:a/b:pull,push); `anonymous` sends none it need not. */
  send(method: string, path: string, options?: SendOptions & { scope?: string; anonymous?: boolean }): Promise<Reply>
}

export async function exchange(dispatcher: Agent, url: string, method: string, options: SendOptions): Promise<Reply> {
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

export type AuthMode = 'none' | 'htpasswd' | 'token'
export const modes: readonly AuthMode[] = ['none', 'htpasswd', 'token']

export interface Conformance {
  registry: RegistryHandle
  /** The registry alone, over plain HTTP. */
  bare: Target
  bareAgent: Agent
  /** Portier in front of `registry` in one auth mode; started once per file and reused. */
  gatewayTarget: (mode: AuthMode) => Promise<{ target: Target; gateway: GatewayHandle }>
}

/** A registry 2.8.2, an htpasswd file (alice) and, on demand, one gateway per auth mode; all stopped in `t`'s teardown. */
export async function conformanceSetup(t: Test): Promise<Conformance> {
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
  const started = new Map<AuthMode, Promise<{ target: Target; gateway: GatewayHandle }>>()
  const gatewayTarget = (mode: AuthMode): Promise<{ target: Target; gateway: GatewayHandle }> => {
    let gateway = started.get(mode)
    if (!gateway) {
      gateway = startTarget(t, registry, work, htpasswd, mode)
      started.set(mode, gateway)
    }
    return gateway
  }
  return { registry, bare, bareAgent, gatewayTarget }
}

async function startTarget(t: Test, registry: RegistryHandle, work: string, htpasswd: string, mode: AuthMode): Promise<{ target: Target; gateway: GatewayHandle }> {
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
export async function pushImage(target: Target, repository: string, tags: string[], extra: Record<string, unknown> = {}): Promise<{ digest: string; body: Buffer }> {
  const scope = `repository:${repository}:pull,push`
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }))
  const layer = randomBytes(1024)
  for (const blob of [config, layer]) {
    // POST, then PUT ?digest= with the bytes: registry 2.8 ignores the body of a monolithic POST.
    const started = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope })
    if (started.status !== 202) throw new Error(`upload start on ${target.name}: ${started.status} ${started.body.toString()}`)
    const location = new URL(started.headers.location as string, target.url)
    location.searchParams.set('digest', sha256(blob))
    const reply = await target.send('PUT', `${location.pathname}${location.search}`, {
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


/** The path and query of an absolute or relative Location. */
export function relative(target: Target, location: string | string[] | undefined): string {
  if (typeof location !== 'string') throw new Error(`no Location from ${target.name}`)
  const url = new URL(location, target.url)
  return `${url.pathname}${url.search}`
}

/** A random secret for routing configs in tests. */
export function routingSecret(): string {
  return randomBytes(16).toString('hex')
}

/** Portier over several registries (routing), with open access. */
export async function routedTarget(t: Test, name: string, config: Record<string, unknown>): Promise<{ target: Target; gateway: GatewayHandle }> {
  const gateway = await gatewayFixture(t, { config })
  const agent = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => agent.close())
  const target: Target = { name, url: gateway.url, send: (method, path, options = {}) => exchange(agent, `${gateway.url}${path}`, method, options) }
  return { target, gateway }
}
