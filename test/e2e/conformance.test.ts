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

/** Follows Link rel="next" from `path` and returns every page's tags (at most 20 pages). */
async function walkTags(t: Test, target: Target, path: string, scope: string): Promise<string[][]> {
  const pages: string[][] = []
  let next: string | undefined = path
  while (next !== undefined && pages.length < 20) {
    const reply = await target.send('GET', next, { scope, anonymous: true })
    t.equal(reply.status, 200, `${target.name}: GET ${next}`)
    pages.push((reply.json() as { tags: string[] }).tags)
    const link = reply.headers.link
    const match = typeof link === 'string' ? /^<([^>]+)>; rel="next"$/.exec(link) : null
    if (typeof link === 'string') t.ok(match, `${target.name}: Link is <…>; rel="next" (${link})`)
    next = match?.[1]
  }
  return pages
}

t.test('tag lists: n and last, lexical order, Link to the next page', async (t) => {
  const repository = 'conf/tags'
  const tags = ['v3', 'a1', 'v10', 'b2', 'latest']
  const sorted = [...tags].sort()
  await pushImage(bare, repository, tags)
  const bareTwo = await bare.send('GET', `/v2/${repository}/tags/list?n=2`)
  t.equal((bareTwo.json() as { tags: string[] }).tags.length, tags.length, 'registry 2.8.2 alone ignores n (the failure Portier fixes)')

  for (const mode of modes) {
    const { target } = await gatewayTarget(t, mode)
    const scope = `repository:${repository}:pull`
    const all = await target.send('GET', `/v2/${repository}/tags/list`, { scope, anonymous: true })
    t.equal(all.status, 200, `${target.name}: the whole list`)
    t.same(all.json(), { name: repository, tags: sorted }, `${target.name}: every tag, in lexical order`)
    t.equal(all.headers.link, undefined, `${target.name}: no Link without n`)
    t.match(all.headers['content-type'], /^application\/json/, `${target.name}: JSON`)

    const pages = await walkTags(t, target, `/v2/${repository}/tags/list?n=2`, scope)
    t.same(pages, [sorted.slice(0, 2), sorted.slice(2, 4), sorted.slice(4)], `${target.name}: n=2 walks the list in pages of two`)
    const first = await target.send('GET', `/v2/${repository}/tags/list?n=2`, { scope, anonymous: true })
    t.equal(first.headers.link, `</v2/${repository}/tags/list?n=2&last=${sorted[1]}>; rel="next"`, `${target.name}: the Link keeps n and sets last`)

    const after = await target.send('GET', `/v2/${repository}/tags/list?last=${sorted[1]}`, { scope, anonymous: true })
    t.same((after.json() as { tags: string[] }).tags, sorted.slice(2), `${target.name}: last alone: every tag after it`)
    const between = await target.send('GET', `/v2/${repository}/tags/list?n=1&last=b`, { scope, anonymous: true })
    t.same((between.json() as { tags: string[] }).tags, ['b2'], `${target.name}: last need not be a tag`)
    const exact = await target.send('GET', `/v2/${repository}/tags/list?n=${tags.length}`, { scope, anonymous: true })
    t.same((exact.json() as { tags: string[] }).tags, sorted, `${target.name}: n equal to the count`)
    t.equal(exact.headers.link, undefined, `${target.name}: no Link when nothing follows`)
    const none = await target.send('GET', `/v2/${repository}/tags/list?n=0`, { scope, anonymous: true })
    t.same((none.json() as { tags: string[] }).tags, [], `${target.name}: n=0 lists nothing`)

    const unknown = await target.send('GET', '/v2/conf/no-such-repository/tags/list?n=2', { scope: 'repository:conf/no-such-repository:pull', anonymous: true })
    t.equal(unknown.status, 404, `${target.name}: an unknown repository is still 404`)
    t.equal(unknown.errorCode(), 'NAME_UNKNOWN', `${target.name}: NAME_UNKNOWN from the registry`)
  }
})

t.test('tag lists merged over mirrors: the union, paged, each tag once', async (t) => {
  const second = await registryFixture(t)
  const mirrors = [{ target: bare, tags: ['m-a', 'm-c', 'm-e', 'shared'] }, { target: null, tags: ['m-b', 'm-d', 'shared'] }]
  const secondTarget: Target = { name: 'second registry', url: second.url, send: (method, path, options = {}) => exchange(bareAgent, `${second.url}${path}`, method, options) }
  mirrors[1] = { target: secondTarget, tags: mirrors[1]?.tags ?? [] }
  const repository = 'conf/mirrored-tags'
  for (const mirror of mirrors) await pushImage(mirror.target as Target, repository, mirror.tags)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
      routing: { strategy: 'mirror', secret: randomBytes(16).toString('hex'), mirror: { require: 'all' } },
    },
  })
  const agent = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => agent.close())
  const target: Target = { name: 'Portier over two mirrors', url: gateway.url, send: (method, path, options = {}) => exchange(agent, `${gateway.url}${path}`, method, options) }
  const union = ['m-a', 'm-b', 'm-c', 'm-d', 'm-e', 'shared']
  const all = await target.send('GET', `/v2/${repository}/tags/list`)
  t.same(all.json(), { name: repository, tags: union }, 'the union of both lists, sorted, "shared" once')
  const pages = await walkTags(t, target, `/v2/${repository}/tags/list?n=4`, '')
  t.same(pages, [union.slice(0, 4), union.slice(4)], 'n=4 over two mirrors: two pages')
  const onlyFirst = await target.send('GET', '/v2/conf/tags/tags/list?n=2')
  t.same((onlyFirst.json() as { tags: string[] }).tags, ['a1', 'b2'], 'a repository only one mirror holds: its tags, paged')
  const neither = await target.send('GET', '/v2/conf/nowhere/tags/list')
  t.equal(neither.status, 404, 'a repository no mirror holds: 404')
  t.equal(neither.errorCode(), 'NAME_UNKNOWN', 'NAME_UNKNOWN')
})

t.test('deleting a tag: 405 UNSUPPORTED where the registry cannot, and the tag stays; deletes by digest pass', async (t) => {
  const repository = 'conf/tag-delete'
  const pushed = await pushImage(bare, repository, ['keep', 'drop'])
  const bareDelete = await bare.send('DELETE', `/v2/${repository}/manifests/drop`)
  t.equal(bareDelete.status, 400, 'registry 2.8.2 alone: 400 (the failure Portier fixes)')
  t.equal(bareDelete.errorCode(), 'DIGEST_INVALID', 'registry 2.8.2 alone: DIGEST_INVALID')

  for (const mode of modes) {
    const { target } = await gatewayTarget(t, mode)
    const scope = `repository:${repository}:delete`
    const reply = await target.send('DELETE', `/v2/${repository}/manifests/drop`, { scope })
    t.equal(reply.status, 405, `${target.name}: a tag delete the registry cannot do is 405`)
    t.equal(reply.errorCode(), 'UNSUPPORTED', `${target.name}: UNSUPPORTED`)
    t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0', `${target.name}: API version header`)
    const still = await target.send('GET', `/v2/${repository}/manifests/drop`, { scope: `repository:${repository}:pull`, anonymous: true, headers: { accept: MT_MANIFEST } })
    t.equal(still.status, 200, `${target.name}: the tag is still there`)
    t.equal(still.headers['docker-content-digest'], pushed.digest, `${target.name}: and still names the manifest`)
    const unknownTag = await target.send('DELETE', `/v2/${repository}/manifests/never-pushed`, { scope })
    t.equal(unknownTag.status, 405, `${target.name}: an unknown tag gets the same answer (2.8 does not look it up)`)
  }

  const { target } = await gatewayTarget(t, 'token')
  const byDigest = await target.send('DELETE', `/v2/${repository}/manifests/${pushed.digest}`, { scope: `repository:${repository}:delete` })
  t.equal(byDigest.status, 202, 'a delete by digest passes through: 202')
  const gone = await target.send('GET', `/v2/${repository}/manifests/keep`, { scope: `repository:${repository}:pull`, anonymous: true, headers: { accept: MT_MANIFEST } })
  t.equal(gone.status, 404, 'and the tags of that manifest are gone')
  const badDigest = await target.send('DELETE', `/v2/${repository}/manifests/sha256:${'0'.repeat(64)}`, { scope: `repository:${repository}:delete` })
  t.equal(badDigest.status, 404, 'a delete of an unknown digest is relayed: 404')
  t.equal(badDigest.errorCode(), 'MANIFEST_UNKNOWN', 'MANIFEST_UNKNOWN')
})

t.test('deleting a tag through mirrors that cannot: 405 UNSUPPORTED', async (t) => {
  const second = await registryFixture(t)
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
      routing: { strategy: 'mirror', secret: randomBytes(16).toString('hex'), mirror: { require: 'all' } },
    },
  })
  const agent = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => agent.close())
  const target: Target = { name: 'Portier over two mirrors', url: gateway.url, send: (method, path, options = {}) => exchange(agent, `${gateway.url}${path}`, method, options) }
  const pushed = await pushImage(target, 'conf/mirror-tag-delete', ['v1'])
  const reply = await target.send('DELETE', '/v2/conf/mirror-tag-delete/manifests/v1')
  t.equal(reply.status, 405, '405')
  t.equal(reply.errorCode(), 'UNSUPPORTED', 'UNSUPPORTED')
  const still = await target.send('GET', '/v2/conf/mirror-tag-delete/manifests/v1', { headers: { accept: MT_MANIFEST } })
  t.equal(still.headers['docker-content-digest'], pushed.digest, 'the tag is still there')
})

/** The path and query of an absolute or relative Location. */
function relative(target: Target, location: string | string[] | undefined): string {
  if (typeof location !== 'string') throw new Error(`no Location from ${target.name}`)
  const url = new URL(location, target.url)
  return `${url.pathname}${url.search}`
}

/**
 * The conformance suite's chunked-upload steps: an out-of-order chunk, a re-sent chunk and a status
 * request on an old upload URL, then the upload completes from the URL the status request gave.
 */
async function chunkedUpload(t: Test, target: Target, repository: string, uploadsOpen: () => Promise<string[]>): Promise<void> {
  const scope = `repository:${repository}:pull,push`
  const blob = randomBytes(300_000)
  const chunk1 = blob.subarray(0, 120_000)
  const chunk2 = blob.subarray(120_000)
  const range1 = `0-${chunk1.length - 1}`
  const range2 = `${chunk1.length}-${blob.length - 1}`
  const octets = { 'content-type': 'application/octet-stream' }

  const other = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } })
  const outOfOrder = await target.send('PATCH', relative(target, other.headers.location), { scope, body: chunk2, headers: { ...octets, 'content-range': range2 } })
  t.equal(outOfOrder.status, 416, `${target.name}: a chunk that does not start at 0 is 416`)
  t.equal(outOfOrder.errorCode(), 'RANGE_INVALID', `${target.name}: RANGE_INVALID`)

  const started = await target.send('POST', `/v2/${repository}/blobs/uploads/`, { scope, headers: { 'content-length': '0' } })
  t.equal(started.status, 202, `${target.name}: POST starts the upload`)
  const first = relative(target, started.headers.location)
  const uuid = started.headers['docker-upload-uuid']
  const patched = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(patched.status, 202, `${target.name}: the first chunk is accepted`)
  t.equal(patched.headers.range, range1, `${target.name}: Range covers the first chunk`)
  const openBefore = await uploadsOpen()

  const resent = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(resent.status, 416, `${target.name}: the first chunk re-sent on the old URL is 416`)
  t.equal(resent.errorCode(), 'RANGE_INVALID', `${target.name}: RANGE_INVALID in the JSON error format`)
  t.equal(resent.headers.range, range1, `${target.name}: the 416 says what the session holds`)
  t.equal(resent.headers['docker-upload-uuid'], uuid, `${target.name}: and which session`)
  t.ok(typeof resent.headers.location === 'string', `${target.name}: and where to continue`)
  const unranged = await target.send('PATCH', first, { scope, body: chunk2, headers: octets })
  t.equal(unranged.status, 416, `${target.name}: a chunk without Content-Range on the old URL is 416 too (it may be the previous one again)`)
  t.same(await uploadsOpen(), openBefore, `${target.name}: the session survives on disk (registry 2.8 cancels it on a stale _state)`)

  const status = await target.send('GET', first, { scope })
  t.equal(status.status, 204, `${target.name}: GET on the old upload URL is 204`)
  t.equal(status.headers.range, range1, `${target.name}: with the current Range`)
  t.equal(status.headers['docker-upload-uuid'], uuid, `${target.name}: and Docker-Upload-UUID`)
  const next = relative(target, status.headers.location)

  const second = await target.send('PATCH', next, { scope, body: chunk2, headers: { ...octets, 'content-range': range2 } })
  t.equal(second.status, 202, `${target.name}: the second chunk on the URL from the status request`)
  t.equal(second.headers.range, `0-${blob.length - 1}`, `${target.name}: Range covers the whole blob`)
  const finishUrl = new URL(relative(target, second.headers.location), target.url)
  finishUrl.searchParams.set('digest', sha256(blob))
  const finished = await target.send('PUT', `${finishUrl.pathname}${finishUrl.search}`, { scope, headers: { ...octets, 'content-length': '0' } })
  t.equal(finished.status, 201, `${target.name}: PUT ?digest= completes it`)
  t.equal(finished.headers['docker-content-digest'], sha256(blob), `${target.name}: Docker-Content-Digest`)
  const read = await target.send('GET', `/v2/${repository}/blobs/${sha256(blob)}`, { scope })
  t.equal(sha256(read.body), sha256(blob), `${target.name}: every byte, in order`)
  const after = await target.send('PATCH', first, { scope, body: chunk1, headers: { ...octets, 'content-range': range1 } })
  t.equal(after.status, 404, `${target.name}: after the upload is finished, its old URL is unknown`)
}

t.test('chunked uploads: out-of-order and re-sent chunks get 416, an old upload URL answers from the real offset', async (t) => {
  const repository = 'conf/chunked'
  const uploadsOpen = (): Promise<string[]> => registry.uploadsOpen(repository)

  // What registry 2.8.2 alone does with the re-sent chunk: 404 BLOB_UPLOAD_INVALID, and the session is gone.
  const started = await bare.send('POST', `/v2/${repository}/blobs/uploads/`)
  const first = relative(bare, started.headers.location)
  const chunk = randomBytes(1000)
  const headers = { 'content-type': 'application/octet-stream', 'content-range': '0-999' }
  t.equal((await bare.send('PATCH', first, { body: chunk, headers })).status, 202, 'bare registry: first chunk')
  const resent = await bare.send('PATCH', first, { body: chunk, headers })
  t.equal(resent.status, 404, 'bare registry: the re-sent chunk is 404 (the failure Portier fixes)')
  t.equal(resent.errorCode(), 'BLOB_UPLOAD_INVALID', 'bare registry: BLOB_UPLOAD_INVALID')
  t.equal((await bare.send('GET', first)).status, 404, 'bare registry: and the session is gone')

  for (const mode of modes) {
    const { target } = await gatewayTarget(t, mode)
    await chunkedUpload(t, target, repository, uploadsOpen)
  }
})

t.test('chunked uploads with signed upload URLs (routing by repository)', async (t) => {
  const second = await registryFixture(t)
  const registries = [registry, second]
  const gateway = await gatewayFixture(t, {
    config: {
      upstreams: [{ url: registry.url, name: 'first' }, { url: second.url, name: 'second' }],
      routing: { strategy: 'by-repository', secret: randomBytes(16).toString('hex') },
    },
  })
  const agent = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => agent.close())
  const target: Target = { name: 'Portier by repository', url: gateway.url, send: (method, path, options = {}) => exchange(agent, `${gateway.url}${path}`, method, options) }
  const repository = 'conf/chunked-signed'
  const uploadsOpen = async (): Promise<string[]> => (await Promise.all(registries.map((one) => one.uploadsOpen(repository)))).flat()
  await chunkedUpload(t, target, repository, uploadsOpen)
})
