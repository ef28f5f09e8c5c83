// Storage redirects: a registry whose storage answers blob GETs with a 307 to the storage's own URL (distribution's `redirect` middleware, as with S3 or a CDN); Portier passes that Location on unchanged, and still points upload URLs at itself.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { join, normalize } from 'node:path'
import { Agent, request } from 'undici'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { freePort } from '../helpers/ports.js'

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/** A stand-in for object storage: serves files under `root` by path, and counts what it was asked. */
function storageServer(root: string, port: number, asked: string[]): Promise<Server> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'))
    asked.push(`${req.method ?? 'GET'} ${path}`)
    if (!path.startsWith('/docker/registry/v2/blobs/')) {
      res.writeHead(404).end()
      return
    }
    const file = createReadStream(join(root, path))
    file.once('error', () => res.writeHead(404).end())
    file.once('open', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      if (req.method === 'HEAD') {
        file.destroy()
        res.end()
      } else {
        file.pipe(res)
      }
    })
  })
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)))
}

t.test('a blob GET the registry redirects to its storage: the 307 and its Location pass unchanged', async (t) => {
  const storagePort = await freePort()
  const storageBase = `http://127.0.0.1:${storagePort}`
  const registry = await registryFixture(t, {
    extraConfig: ['middleware:', '  storage:', '    - name: redirect', '      options:', `        baseurl: ${storageBase}/`].join('\n'),
  })
  const asked: string[] = []
  const storage = await storageServer(registry.storageDir, storagePort, asked)
  t.teardown(() => new Promise<void>((resolve) => storage.close(() => resolve())))
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const dispatcher = new Agent({ connect: { ca: readFileSync(gateway.caFile) } })
  t.teardown(() => dispatcher.close())

  // A push through Portier: the upload Locations point at Portier, not at the registry or the storage.
  const data = randomBytes(256 * 1024 + 3)
  const digest = sha256(data)
  const started = await request(`${gateway.url}/v2/r/app/blobs/uploads/`, { dispatcher, method: 'POST' })
  await started.body.dump()
  t.equal(started.statusCode, 202, 'upload started')
  const location = String(started.headers.location)
  t.ok(location.startsWith(`${gateway.url}/v2/r/app/blobs/uploads/`), `the upload Location points at Portier (${location.slice(0, 60)}…)`)
  const put = await request(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, {
    dispatcher,
    method: 'PUT',
    body: data,
    headers: { 'content-type': 'application/octet-stream' },
  })
  await put.body.dump()
  t.equal(put.statusCode, 201, 'blob pushed')
  t.equal(String(put.headers.location), `${gateway.url}/v2/r/app/blobs/${digest}`, 'the finished blob\'s Location points at Portier')

  const path = `/v2/r/app/blobs/${digest}`
  for (const method of ['GET', 'HEAD'] as const) {
    const direct = await request(`${registry.url}${path}`, { method })
    await direct.body.dump()
    t.equal(direct.statusCode, 307, `${method}: the registry redirects to its storage`)
    const expected = String(direct.headers.location)
    t.ok(expected.startsWith(`${storageBase}/docker/registry/v2/blobs/sha256/`), `${method}: to the storage's URL (${expected})`)
    const through = await request(`${gateway.url}${path}`, { dispatcher, method })
    await through.body.dump()
    t.equal(through.statusCode, 307, `${method} through Portier: the registry's 307`)
    t.equal(through.headers.location, expected, `${method} through Portier: the Location exactly as the registry sent it`)
  }

  // A client that follows the redirect gets the blob from the storage itself.
  const redirected = await request(`${gateway.url}${path}`, { dispatcher })
  await redirected.body.dump()
  const followed = await request(String(redirected.headers.location))
  const bytes = Buffer.from(await followed.body.arrayBuffer())
  t.equal(followed.statusCode, 200)
  t.equal(sha256(bytes), digest, 'the storage\'s bytes hash to the digest')
  t.ok(asked.some((line) => line.startsWith('GET /docker/registry/v2/blobs/sha256/')), 'the storage served it')
})
