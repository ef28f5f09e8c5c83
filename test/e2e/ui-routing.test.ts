// The web UI deletes through the gateway's routing: a mirrored delete follows routing.mirror.require, as a registry client's does.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'undici'
import { registryFixture, type RegistryHandle } from '../helpers/registry.js'
import { gatewayFixture, type GatewayHandle } from '../helpers/gateway.js'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const SECRET = 'ui routing test secret, at least 32 characters long'

function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** Pushes a small image (a config blob and a manifest) straight to a registry; the same bytes give the same digest everywhere. */
async function pushDirect(registry: RegistryHandle, repository: string): Promise<string> {
  const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
  const configDigest = digestOf(config)
  const started = await fetch(`${registry.url}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
  if (started.status !== 202) throw new Error(`upload start answered ${started.status}`)
  const location = new URL(started.headers.get('location') ?? '', registry.url)
  location.searchParams.set('digest', configDigest)
  const stored = await fetch(location, { method: 'PUT', body: config, headers: { 'content-type': 'application/octet-stream' } })
  if (stored.status !== 201) throw new Error(`blob upload answered ${stored.status}`)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length }, layers: [] }))
  const put = await fetch(`${registry.url}/v2/${repository}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST } })
  if (put.status !== 201) throw new Error(`manifest push answered ${put.status}`)
  return digestOf(manifest)
}

async function uiApi(gateway: GatewayHandle, method: 'GET' | 'DELETE', path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  try {
    const session = await request(`${gateway.url}/ui/api/session`, { dispatcher })
    const cookie = String(session.headers['set-cookie']).split(';')[0] ?? ''
    const { csrfToken } = (await session.body.json()) as { csrfToken: string }
    const answer = await request(`${gateway.url}/ui/api/${path}`, { dispatcher, method, headers: { cookie, origin: gateway.url, 'x-csrf-token': csrfToken } })
    return { status: answer.statusCode, body: (await answer.body.json()) as Record<string, unknown> }
  } finally {
    await dispatcher.close()
  }
}

async function manifestStatus(registry: RegistryHandle, repository: string, digest: string): Promise<number> {
  return (await fetch(`${registry.url}/v2/${repository}/manifests/${digest}`, { method: 'HEAD', headers: { accept: OCI_MANIFEST } })).status
}

t.test('mirror: a UI delete follows routing.mirror.require (quorum: two of three is enough when one mirror is down)', async (t) => {
  const [c, d, e] = [await registryFixture(t), await registryFixture(t), await registryFixture(t)] as [RegistryHandle, RegistryHandle, RegistryHandle]
  const gateway = await gatewayFixture(t, {
    config: { upstreams: [{ url: c.url, name: 'c' }, { url: d.url, name: 'd' }, { url: e.url, name: 'e' }], routing: { strategy: 'mirror', secret: SECRET, mirror: { require: 'quorum' } } },
  })
  const digests = new Set([await pushDirect(c, 'mirrored/app'), await pushDirect(d, 'mirrored/app'), await pushDirect(e, 'mirrored/app')])
  t.equal(digests.size, 1, 'the same manifest on every mirror')
  const digest = [...digests][0] as string
  await e.stop()

  const deleted = await uiApi(gateway, 'DELETE', `manifest?repository=mirrored/app&digest=${digest}`)
  t.equal(deleted.status, 200, `two of three mirrors deleted it: a quorum (${JSON.stringify(deleted.body)})`)
  t.same(deleted.body.tags, ['v1'])
  t.equal(await manifestStatus(c, 'mirrored/app', digest), 404, 'gone from c')
  t.equal(await manifestStatus(d, 'mirrored/app', digest), 404, 'gone from d')
  await gateway.logsSettled()
  t.ok(gateway.logs.some((line) => line.msg === 'upstream failed its part of a mirrored write' && line.upstream === 'e'), 'the mirror that missed the delete is named in the log')
})
