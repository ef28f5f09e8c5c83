// Header rules at both boundaries, observed by a recording upstream: forwarded headers, hop-by-hop removal, Location rewriting, pass-through headers.
import t from 'tap'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import { gatewayFixture } from '../helpers/gateway.js'
import { GatewayClient } from '../helpers/gwclient.js'

interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: number
}

const DIGEST = `sha256:${'ab'.repeat(32)}`
const SUBJECT = `sha256:${'cd'.repeat(32)}`
/**
 * A read that always reaches the upstream: `GET /v2/` may be answered by the gateway itself while
 * the upstream is healthy, so it shows nothing of what the gateway forwards.
 */
const ECHO = '/v2/echo/app/tags/list'

/** A stand-in registry: records every request and answers the way distribution does, with a few Location styles. */
const seen: Seen[] = []
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  let body = 0
  req.on('data', (chunk: Buffer) => {
    body += chunk.length
  })
  req.on('end', () => {
    if (req.method === 'HEAD') headSockets.add(req.socket)
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body })
    answer(req, res, body)
  })
})
// Connections that carried a HEAD: health checks have a pool of their own and may open connections meanwhile.
const headSockets = new Set<unknown>()
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
const upstreamPort = (upstream.address() as { port: number }).port
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
/**
 * Where the upstream redirects a blob GET, as a registry on S3-like storage does. Nothing is fetched
 * from it. Its host differs from the upstream's and its port is the upstream's: only the host tells
 * them apart. (A port from freePort() could be the one the kernel then gave the upstream, which made
 * this "storage" the upstream itself.)
 */
const storageUrl = `http://127.0.0.2:${upstreamPort}/bucket/docker/registry/v2/blobs/sha256/ab/${'ab'.repeat(32)}/data?X-Amz-Expires=1200&X-Amz-Signature=5eed`
t.teardown(() => {
  upstream.closeAllConnections()
  upstream.close()
})

function answer(req: IncomingMessage, res: ServerResponse, received: number): void {
  const url = new URL(req.url ?? '/', upstreamUrl)
  const path = url.pathname
  res.setHeader('Docker-Distribution-Api-Version', 'registry/2.0')
  const uploadStart = /^\/v2\/loc\/([a-z]+)\/blobs\/uploads\/$/.exec(path)
  if (req.method === 'POST' && uploadStart) {
    const kind = uploadStart[1] as string
    const relative = `/v2/loc/${kind}/blobs/uploads/u-${kind}?_state=st-${kind}`
    const locations: Record<string, string> = {
      relative,
      absolute: `${upstreamUrl}${relative}`,
      localhost: `http://localhost:${upstreamPort}${relative}`,
      forwarded: `${String(req.headers['x-forwarded-proto'])}://${String(req.headers['x-forwarded-host'])}${relative}`,
    }
    res.writeHead(202, { Location: locations[kind] ?? relative, 'Docker-Upload-UUID': `u-${kind}`, Range: '0-0', 'Content-Length': '0' })
    return void res.end()
  }
  if (req.method === 'PATCH' && path.startsWith('/v2/loc/')) {
    const kind = path.split('/')[3] as string
    res.writeHead(202, {
      Location: `/v2/loc/${kind}/blobs/uploads/u-${kind}?_state=next-${kind}`,
      'Docker-Upload-UUID': `u-${kind}`,
      Range: `0-${received - 1}`,
      'Content-Length': '0',
    })
    return void res.end()
  }
  if (path === `/v2/redir/app/blobs/${DIGEST}`) {
    res.writeHead(307, { Location: storageUrl, 'Content-Length': '0' })
    return void res.end()
  }
  if (path === `/v2/redir/self/blobs/${DIGEST}`) {
    res.writeHead(307, { Location: `${upstreamUrl}/v2/redir/app/blobs/${DIGEST}`, 'Content-Length': '0' })
    return void res.end()
  }
  if (path === `/v2/hdrs/app/blobs/${DIGEST}`) {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'Content-Length': '5368709120', 'Docker-Content-Digest': DIGEST, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes' })
      return void res.end()
    }
    res.writeHead(206, { 'Content-Range': 'bytes 0-99/1000', 'Content-Length': '100', 'Docker-Content-Digest': DIGEST, 'Accept-Ranges': 'bytes' })
    return void res.end(Buffer.alloc(100, 7))
  }
  if (path === '/v2/hdrs/app/manifests/v1') {
    if (req.method === 'PUT') {
      res.writeHead(201, { Location: `${upstreamUrl}/v2/hdrs/app/manifests/${DIGEST}`, 'Docker-Content-Digest': DIGEST, 'OCI-Subject': SUBJECT, 'Content-Length': '0' })
      return void res.end()
    }
    res.writeHead(200, { 'Content-Length': '1234', 'Content-Type': 'application/vnd.oci.image.manifest.v1+json', 'Docker-Content-Digest': DIGEST })
    return void res.end(req.method === 'HEAD' ? undefined : Buffer.alloc(1234, 32))
  }
  if (path === '/v2/hop/app/tags/list') {
    res.writeHead(200, { Connection: 'keep-alive, X-Upstream-Hop', 'X-Upstream-Hop': 'secret', 'Keep-Alive': 'timeout=7, max=3', 'X-End-To-End': 'kept', 'Content-Type': 'application/json', 'Content-Length': '2' })
    return void res.end('{}')
  }
  if (path === '/v2/' || path === ECHO) {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '2' })
    return void res.end('{}')
  }
  res.writeHead(404, { 'Content-Type': 'application/json' })
  res.end('{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}')
}

const open = await gatewayFixture(t, { config: { upstreams: [{ url: upstreamUrl }] } })
const trusted = await gatewayFixture(t, { config: { upstreams: [{ url: upstreamUrl }], server: { trusted_proxies: ['127.0.0.1'] } } })
const openClient = new GatewayClient(open)
const trustedClient = new GatewayClient(trusted)
t.teardown(() => {
  openClient.close()
  trustedClient.close()
})

/** Sends one request and returns what the upstream saw for it (matched by a unique query marker). */
async function through(client: GatewayClient, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer) {
  const marker = `m${Math.random().toString(36).slice(2)}`
  const url = `${path}${path.includes('?') ? '&' : '?'}marker=${marker}`
  const reply = await client.send(method, url, body ? { headers, body } : { headers })
  const request = seen.find((s) => s.url.includes(marker))
  return { reply, request }
}

function count(request: Seen | undefined, name: string): number {
  return (request?.rawHeaders ?? []).filter((_, i, all) => i % 2 === 0 && all[i]?.toLowerCase() === name).length
}

const spoof = {
  'x-forwarded-for': '198.51.100.7',
  'x-forwarded-host': 'registry.example.com',
  'x-forwarded-proto': 'https',
  'x-real-ip': '198.51.100.7',
  forwarded: 'for=198.51.100.7;proto=https',
}

t.test('an untrusted peer cannot choose its forwarded headers: the gateway overwrites them', async (t) => {
  const { reply, request } = await through(openClient, 'GET', ECHO, spoof)
  t.equal(reply.status, 200)
  t.ok(request, 'the upstream saw the request')
  t.equal(request?.headers['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For is the peer, the fake one is gone')
  t.equal(request?.headers['x-real-ip'], '127.0.0.1', 'X-Real-IP is the peer')
  t.equal(request?.headers['x-forwarded-proto'], 'https', 'X-Forwarded-Proto: https')
  t.equal(request?.headers['x-forwarded-host'], open.host, 'X-Forwarded-Host is the Host the client used')
  t.equal(request?.headers.forwarded, `for=127.0.0.1;host="${open.host}";proto=https`, 'Forwarded (RFC 7239)')
  for (const name of ['x-forwarded-for', 'x-real-ip', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']) {
    t.equal(count(request, name), 1, `${name} sent exactly once`)
  }
})

t.test('behind a trusted proxy the chain is appended and the client is the first untrusted address', async (t) => {
  const { request } = await through(trustedClient, 'GET', ECHO, spoof)
  t.equal(request?.headers['x-forwarded-for'], '198.51.100.7, 127.0.0.1', 'X-Forwarded-For appended')
  t.equal(request?.headers['x-real-ip'], '198.51.100.7', 'X-Real-IP is the original client')
  t.equal(request?.headers['x-forwarded-proto'], 'https')
  t.equal(request?.headers['x-forwarded-host'], 'registry.example.com', 'the public host the proxy saw')
  t.equal(request?.headers.forwarded, 'for=198.51.100.7;proto=https, for=127.0.0.1;host="registry.example.com";proto=https', 'Forwarded appended')

  const plain = await through(trustedClient, 'GET', ECHO)
  t.equal(plain.request?.headers['x-forwarded-for'], '127.0.0.1', 'no chain from the client: just the peer')
  t.equal(plain.request?.headers['x-real-ip'], '127.0.0.1')
  t.equal(plain.request?.headers['x-forwarded-host'], trusted.host)
})

t.test('hop-by-hop headers stop at the gateway, in both directions', async (t) => {
  const { reply, request } = await through(openClient, 'GET', '/v2/hop/app/tags/list', {
    connection: 'keep-alive, X-Hop-Secret',
    'x-hop-secret': 'do not forward',
    'keep-alive': 'timeout=5',
    te: 'trailers',
    upgrade: 'h2c',
    'proxy-connection': 'keep-alive',
    'proxy-authorization': 'Basic Zm9vOmJhcg==',
    'x-end-to-end': 'kept',
  })
  t.equal(reply.status, 200)
  const h = request?.headers ?? {}
  t.notOk(h['x-hop-secret'], 'a header named in Connection is dropped')
  t.notOk(h.te, 'TE dropped')
  t.notOk(h.upgrade, 'Upgrade dropped')
  t.notOk(h['proxy-connection'], 'Proxy-Connection dropped')
  t.notOk(h['proxy-authorization'], 'Proxy-Authorization dropped')
  t.not(h['keep-alive'], 'timeout=5', "the client's Keep-Alive is not forwarded")
  t.notMatch(String(h.connection ?? ''), /hop-secret/i, "the client's Connection tokens are not forwarded")
  t.equal(h['x-end-to-end'], 'kept', 'end-to-end headers pass')

  t.notOk(reply.headers['x-upstream-hop'], "a header named in the upstream's Connection does not reach the client")
  t.not(reply.headers['keep-alive'], 'timeout=7, max=3', "the upstream's Keep-Alive does not reach the client")
  t.equal(reply.headers['x-end-to-end'], 'kept', 'end-to-end response headers pass')
  t.equal(reply.headers['docker-distribution-api-version'], 'registry/2.0')
})

t.test('upload Locations point at the gateway whatever form the upstream uses', async (t) => {
  for (const kind of ['relative', 'absolute', 'localhost', 'forwarded']) {
    const { reply, request } = await through(openClient, 'POST', `/v2/loc/${kind}/blobs/uploads/`)
    t.equal(reply.status, 202, `${kind}: 202`)
    const expected = `${open.url}/v2/loc/${kind}/blobs/uploads/u-${kind}?_state=st-${kind}`
    t.equal(reply.headers.location, expected, `${kind}: Location points at the gateway`)
    t.equal(reply.headers['docker-upload-uuid'], `u-${kind}`, 'Docker-Upload-UUID unchanged')
    t.equal(reply.headers.range, '0-0', 'Range unchanged')
    if (kind === 'forwarded') t.equal(request?.headers['x-forwarded-host'], open.host)

    // The client follows it: the upstream receives the session path and state it issued.
    const chunk = await openClient.send('PATCH', openClient.pathOf(reply.headers.location as string), { body: Buffer.alloc(1024, 1) })
    t.equal(chunk.status, 202, `${kind}: PATCH through the rewritten Location`)
    const patch = seen.filter((s) => s.method === 'PATCH').at(-1)
    t.equal(patch?.url, `/v2/loc/${kind}/blobs/uploads/u-${kind}?_state=st-${kind}`, 'the upstream got its own session URL back')
    t.equal(patch?.body, 1024, 'with every byte')
    t.equal(chunk.headers.range, '0-1023', 'Range passes unchanged')
    t.equal(chunk.headers.location, `${open.url}/v2/loc/${kind}/blobs/uploads/u-${kind}?_state=next-${kind}`, 'the next Location too')
  }

  const behindProxy = await through(trustedClient, 'POST', '/v2/loc/forwarded/blobs/uploads/', { 'x-forwarded-host': 'registry.example.com', 'x-forwarded-proto': 'https' })
  t.equal(behindProxy.reply.headers.location, 'https://registry.example.com/v2/loc/forwarded/blobs/uploads/u-forwarded?_state=st-forwarded', 'behind a trusted proxy: the public origin it reported')
})

t.test('redirects to object storage pass unchanged; redirects to the upstream itself are rewritten', async (t) => {
  const storage = await through(openClient, 'GET', `/v2/redir/app/blobs/${DIGEST}`)
  t.equal(storage.reply.status, 307, '307 passes through')
  t.equal(storage.reply.headers.location, storageUrl, 'storage Location unchanged')
  const self = await through(openClient, 'GET', `/v2/redir/self/blobs/${DIGEST}`)
  t.equal(self.reply.status, 307)
  t.equal(self.reply.headers.location, `${open.url}/v2/redir/app/blobs/${DIGEST}`, 'a redirect to the upstream points at the gateway')
})

t.test('registry headers pass unchanged, HEAD keeps Content-Length', async (t) => {
  const ranged = await through(openClient, 'GET', `/v2/hdrs/app/blobs/${DIGEST}`, { range: 'bytes=0-99' })
  t.equal(ranged.request?.headers.range, 'bytes=0-99', 'the client Range reaches the upstream')
  t.equal(ranged.reply.status, 206, '206 passes')
  t.equal(ranged.reply.headers['content-range'], 'bytes 0-99/1000', 'Content-Range')
  t.equal(ranged.reply.headers['docker-content-digest'], DIGEST, 'Docker-Content-Digest')
  t.equal(ranged.reply.body.length, 100, 'the partial body')

  const head = await through(openClient, 'HEAD', `/v2/hdrs/app/blobs/${DIGEST}`)
  t.equal(head.reply.status, 200)
  t.equal(head.reply.headers['content-length'], '5368709120', 'HEAD keeps a 5 GiB Content-Length')
  t.equal(head.reply.headers['docker-content-digest'], DIGEST)
  t.equal(head.reply.body.length, 0)

  const manifestHead = await through(openClient, 'HEAD', '/v2/hdrs/app/manifests/v1')
  t.equal(manifestHead.reply.headers['content-length'], '1234', 'HEAD manifest Content-Length')
  t.equal(manifestHead.reply.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json')

  const put = await through(openClient, 'PUT', '/v2/hdrs/app/manifests/v1', { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, Buffer.from('{"schemaVersion":2}'))
  t.equal(put.reply.status, 201)
  t.equal(put.reply.headers['oci-subject'], SUBJECT, 'OCI-Subject')
  t.equal(put.reply.headers['docker-content-digest'], DIGEST, 'Docker-Content-Digest')
  t.equal(put.reply.headers.location, `${open.url}/v2/hdrs/app/manifests/${DIGEST}`, 'manifest Location points at the gateway')
  t.equal(put.request?.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json', 'Content-Type reaches the upstream')
  t.equal(put.request?.body, 19, 'the manifest body reaches the upstream')
})

t.test("the client's Authorization never reaches the upstream unless configured; upstream credentials replace it", async (t) => {
  const bearer = { authorization: 'Bearer client-token-for-the-gateway' }
  const { request: plain } = await through(openClient, 'GET', ECHO, bearer)
  t.equal(plain?.headers.authorization, undefined, 'not forwarded by default')

  const withCredentials = await gatewayFixture(t, { config: { upstreams: [{ url: upstreamUrl, username: 'portier', password: 'upstream-secret' }] } })
  const credentialsClient = new GatewayClient(withCredentials)
  t.teardown(() => credentialsClient.close())
  const { request: replaced } = await through(credentialsClient, 'GET', ECHO, bearer)
  t.equal(replaced?.headers.authorization, `Basic ${Buffer.from('portier:upstream-secret').toString('base64')}`, "the upstream gets Portier's own credentials")

  const passing = await gatewayFixture(t, { config: { upstreams: [{ url: upstreamUrl, forward_authorization: true }] } })
  const passingClient = new GatewayClient(passing)
  t.teardown(() => passingClient.close())
  const { request: passed } = await through(passingClient, 'GET', ECHO, bearer)
  t.equal(passed?.headers.authorization, bearer.authorization, 'forward_authorization: true passes it through')
})

t.test('HEAD requests reuse the upstream keep-alive connection (docker checks blobs with HEAD all the time)', async (t) => {
  await through(openClient, 'HEAD', `/v2/hdrs/app/blobs/${DIGEST}`)
  const before = headSockets.size
  const statuses: number[] = []
  for (let i = 0; i < 20; i++) statuses.push((await through(openClient, 'HEAD', `/v2/hdrs/app/blobs/${DIGEST}`)).reply.status)
  t.ok(statuses.every((status) => status === 200), 'every HEAD answered 200')
  t.equal(headSockets.size - before, 0, '20 sequential HEADs opened no new upstream connection')
})
