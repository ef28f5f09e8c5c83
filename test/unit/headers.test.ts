// Header rules: Location rewriting toward the public origin, client/proxy resolution with and without trusted proxies, hop-by-hop removal.
import t from 'tap'
import {
  clientResponseHeaders,
  createTrustedProxies,
  describeClient,
  rewriteLocation,
  upstreamRequestHeaders,
  type ClientView,
} from '../../src/forward/headers.js'
import { createPublicHosts, type PublicHosts } from '../../src/pipeline/public-hosts.js'
import { ConfigError } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'

/** A policy accepting every well-formed Host (these tests are about the other header rules). */
const anyHost = (fallback: string): PublicHosts => ({ accepts: () => true, fallback: () => fallback })

const upstream = 'http://127.0.0.1:5000'
const none = createTrustedProxies([])
const client: ClientView = describeClient({ host: 'registry.example.com:5443' }, '203.0.113.7', true, none, '', anyHost('localhost:5443'))
const uploadPath = '/v2/team/app/blobs/uploads/6f1c2b1e-3a4d?_state=c2lnbmVk%3D%3D'

t.test('rewriteLocation', async (t) => {
  t.equal(client.publicOrigin, 'https://registry.example.com:5443')

  t.equal(rewriteLocation(uploadPath, 202, upstream, client), `https://registry.example.com:5443${uploadPath}`, 'relative Location')
  t.equal(rewriteLocation(`${upstream}${uploadPath}`, 202, upstream, client), `https://registry.example.com:5443${uploadPath}`, 'upstream-absolute Location')
  t.equal(
    rewriteLocation(`${upstream}/v2/team/app/blobs/${'sha256:' + 'a'.repeat(64)}`, 201, upstream, client),
    `https://registry.example.com:5443/v2/team/app/blobs/sha256:${'a'.repeat(64)}`,
    'a finished upload points at the gateway',
  )
  // registry:2 builds absolute URLs from the X-Forwarded-* headers the gateway sent it.
  t.equal(
    rewriteLocation(`https://registry.example.com:5443${uploadPath}`, 202, upstream, client),
    `https://registry.example.com:5443${uploadPath}`,
    'forwarded-derived Location (already public) stays public',
  )
  t.equal(
    rewriteLocation(`http://registry.example.com:5443${uploadPath}`, 202, upstream, client),
    `https://registry.example.com:5443${uploadPath}`,
    'a forwarded-derived Location with the wrong scheme is corrected to https',
  )
  t.equal(
    rewriteLocation(`http://registry:5000${uploadPath}`, 202, upstream, client),
    `https://registry.example.com:5443${uploadPath}`,
    'the upstream under another name (compose service name) is rewritten too',
  )

  const s3 = 'https://bucket.s3.eu-west-1.amazonaws.com/docker/registry/v2/blobs/sha256/ab/abcd/data?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0123'
  t.equal(rewriteLocation(s3, 307, upstream, client), s3, 'a 307 to object storage passes unchanged')
  const cdn = 'https://cdn.example.net/v2/team/app/blobs/sha256:abc?sig=1'
  t.equal(rewriteLocation(cdn, 307, upstream, client), cdn, 'a redirect to another host passes unchanged even with a /v2/ path')
  t.equal(rewriteLocation(`${upstream}/v2/team/app/`, 301, upstream, client), 'https://registry.example.com:5443/v2/team/app/', 'a redirect within the upstream is rewritten')
  t.equal(rewriteLocation('/v2/team/app/', 307, upstream, client), 'https://registry.example.com:5443/v2/team/app/', 'a relative redirect is rewritten')
  t.equal(rewriteLocation('https://example.org/docs', 201, upstream, client), 'https://example.org/docs', 'a foreign non-registry Location is left alone')
  t.equal(rewriteLocation('http://[invalid', 202, upstream, client), 'http://[invalid', 'an unparsable Location is passed as it is')

  const behindProxy = describeClient({ host: 'internal:5443' }, '127.0.0.1', true, none, 'https://registry.example.com', anyHost('localhost:5443'))
  t.equal(rewriteLocation(uploadPath, 202, upstream, behindProxy), `https://registry.example.com${uploadPath}`, 'the configured public_url wins')
})

t.test('clientResponseHeaders drops hop-by-hop headers and rewrites Location', async (t) => {
  const out = clientResponseHeaders(
    {
      location: uploadPath,
      'docker-upload-uuid': '6f1c2b1e-3a4d',
      range: '0-0',
      connection: 'keep-alive, x-upstream-private',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'x-upstream-private': 'secret',
      'docker-distribution-api-version': 'registry/2.0',
    },
    202,
    upstream,
    client,
  )
  t.same(out, {
    location: `https://registry.example.com:5443${uploadPath}`,
    'docker-upload-uuid': '6f1c2b1e-3a4d',
    range: '0-0',
    'docker-distribution-api-version': 'registry/2.0',
  })
})

t.test('describeClient without trusted proxies ignores forwarded headers', async (t) => {
  const headers = {
    host: 'registry.example.com',
    'x-forwarded-for': '198.51.100.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': 'evil.example',
    forwarded: 'for=198.51.100.1;proto=http',
  }
  const view = describeClient(headers, '203.0.113.7', true, none, '', anyHost('localhost:5443'))
  t.same(view, {
    peer: '203.0.113.7',
    clientIp: '203.0.113.7',
    forwardedFor: '203.0.113.7',
    proto: 'https',
    host: 'registry.example.com',
    publicOrigin: 'https://registry.example.com',
  }, 'the peer is the client; proto from the connection; host from Host')
  t.equal(describeClient(headers, '::ffff:203.0.113.7', false, none, '', anyHost('x')).peer, '203.0.113.7', 'IPv4-mapped addresses are shown as IPv4')
  t.equal(describeClient(headers, '::ffff:203.0.113.7', false, none, '', anyHost('x')).proto, 'http', 'plain connections are http')

  const noHost = describeClient({}, '203.0.113.7', true, none, '', anyHost('localhost:5443'))
  t.equal(noHost.publicOrigin, 'https://localhost:5443', 'no Host: the fallback')
  const badHost = describeClient({ host: 'evil.example/path?x' }, '203.0.113.7', true, none, '', anyHost('localhost:5443'))
  t.equal(badHost.host, 'localhost:5443', 'a malformed Host is not echoed into Locations')
  const v6 = describeClient({ host: '[::1]:5443' }, '::1', true, none, '', anyHost('localhost:5443'))
  t.equal(v6.publicOrigin, 'https://[::1]:5443')
})

t.test('describeClient with trusted proxies believes them, and only them', async (t) => {
  const trusted = createTrustedProxies(['10.0.0.0/8', '192.168.1.1'])
  t.ok(trusted.isTrusted('10.1.2.3'))
  t.ok(trusted.isTrusted('::ffff:10.1.2.3'), 'IPv4-mapped peers match IPv4 rules')
  t.ok(trusted.isTrusted('192.168.1.1'))
  t.notOk(trusted.isTrusted('192.168.1.2'))
  t.notOk(trusted.isTrusted(''))
  t.notOk(none.isTrusted('10.1.2.3'), 'nobody is trusted by default')

  const headers = {
    host: 'internal:5443',
    'x-forwarded-for': '198.51.100.1, 10.9.9.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'registry.example.com, internal',
    forwarded: 'for=198.51.100.1;proto=https',
  }
  const view = describeClient(headers, '10.0.0.2', false, trusted, '', anyHost('localhost:5443'))
  t.equal(view.peer, '10.0.0.2')
  t.equal(view.clientIp, '198.51.100.1', 'the right-most untrusted address is the client')
  t.equal(view.forwardedFor, '198.51.100.1, 10.9.9.9, 10.0.0.2', 'the chain grows by the peer')
  t.equal(view.proto, 'https', 'X-Forwarded-Proto from a trusted proxy')
  t.equal(view.host, 'registry.example.com', 'the first X-Forwarded-Host')
  t.equal(view.publicOrigin, 'https://registry.example.com')
  t.equal(view.priorForwarded, 'for=198.51.100.1;proto=https')

  const spoofed = describeClient({ ...headers, 'x-forwarded-for': '1.1.1.1, 198.51.100.1' }, '10.0.0.2', false, trusted, '', anyHost('x'))
  t.equal(spoofed.clientIp, '198.51.100.1', 'addresses left of the first untrusted hop cannot be spoofed in')

  const untrustedPeer = describeClient(headers, '198.51.100.99', false, trusted, '', anyHost('localhost:5443'))
  t.equal(untrustedPeer.proto, 'http', 'the same headers from an untrusted peer are ignored')
  t.equal(untrustedPeer.host, 'internal:5443')
  t.equal(untrustedPeer.clientIp, '198.51.100.99')
  t.equal(untrustedPeer.priorForwarded, undefined)

  const badProto = describeClient({ ...headers, 'x-forwarded-proto': 'gopher' }, '10.0.0.2', true, trusted, '', anyHost('x'))
  t.equal(badProto.proto, 'https', 'an unknown forwarded proto keeps the connection scheme')

  const configured = describeClient(headers, '10.0.0.2', false, trusted, 'https://cr.example.org', anyHost('x'))
  t.equal(configured.publicOrigin, 'https://cr.example.org', 'public_url beats forwarded headers')
  t.equal(configured.host, 'cr.example.org')
  t.equal(configured.proto, 'https')
})

t.test('upstreamRequestHeaders: end-to-end headers plus a fresh forwarded set', async (t) => {
  const view = describeClient({ host: 'registry.example.com' }, '203.0.113.7', true, none, '', anyHost('x'))
  const out = upstreamRequestHeaders(
    {
      host: 'registry.example.com',
      authorization: 'Basic abc',
      'content-type': 'application/octet-stream',
      'content-length': '10',
      connection: 'keep-alive, x-hop',
      'x-hop': 'drop me',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      expect: '100-continue',
      'x-forwarded-for': '6.6.6.6',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'evil',
      forwarded: 'for=6.6.6.6',
      'x-real-ip': '6.6.6.6',
    },
    view,
  )
  t.same(out, {
    authorization: 'Basic abc',
    'content-type': 'application/octet-stream',
    'content-length': '10',
    forwarded: 'for=203.0.113.7;host="registry.example.com";proto=https',
    'x-forwarded-for': '203.0.113.7',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'registry.example.com',
    'x-real-ip': '203.0.113.7',
  })
  const v6 = describeClient({ host: 'r' }, '2001:db8::1', true, none, '', anyHost('x'))
  t.match(upstreamRequestHeaders({}, v6).forwarded, /^for="\[2001:db8::1\]";/, 'IPv6 nodes are quoted and bracketed (RFC 7239)')
})

t.test('Host is used for URLs only when the certificates or server.hosts name it', async (t) => {
  const certificateNames = new Set(['registry.example.com', '127.0.0.1'])
  const hosts = createPublicHosts({ hosts: [], covers: (name) => certificateNames.has(name), defaultName: () => 'registry.example.com', port: () => 5443 })
  const origin = (host: string | undefined, localAddress?: string): string =>
    describeClient(host === undefined ? {} : { host }, '203.0.113.7', true, none, '', hosts, localAddress).publicOrigin
  t.equal(origin('evil.example'), 'https://registry.example.com:5443', 'a name no certificate covers gets the default name')
  t.equal(origin('evil.example:5443'), 'https://registry.example.com:5443', 'with a port too')
  t.equal(origin('evil.example/phish?'), 'https://registry.example.com:5443', 'a Host with a path is never echoed')
  t.equal(origin('user@registry.example.com'), 'https://registry.example.com:5443', 'nor one with user info')
  t.equal(origin('Registry.Example.com:5443'), 'https://Registry.Example.com:5443', 'a covered name (any case) is kept as the client wrote it')
  t.equal(origin('127.0.0.1:5443'), 'https://127.0.0.1:5443', 'a covered address')
  t.equal(origin('10.0.0.5:5443', '10.0.0.5'), 'https://10.0.0.5:5443', 'the address the client connected to')
  t.equal(origin('10.0.0.5:5443', '::ffff:10.0.0.6'), 'https://registry.example.com:5443', 'another address')
  t.equal(origin(undefined), 'https://registry.example.com:5443', 'no Host')
  t.equal(origin('registry.example.com:99999'), 'https://registry.example.com:5443', 'a port no URL can hold is never echoed')
  t.doesNotThrow(() => new URL(origin('127.0.0.1:65536')), 'the public origin always parses')
  t.equal(origin('[127.0.0.1]:5443'), 'https://registry.example.com:5443', 'an IPv4 address in brackets is not an address')
  t.equal(origin('[127.0.0.1]', '127.0.0.1'), 'https://registry.example.com:5443', 'not even the one the client connected to')
  t.equal(origin('[dead.beef]:5443'), 'https://registry.example.com:5443', 'nor is a name in brackets')
  t.equal(origin('[::1]:5443', '::1'), 'https://[::1]:5443', 'an IPv6 address in brackets is')
  for (const host of ['[127.0.0.1]', '[127.0.0.1]:5443', '127.0.0.1:99999', '[::1]:70000', '[ab.cd]']) {
    t.doesNotThrow(() => new URL(origin(host, '127.0.0.1')), `${host}: the public origin parses`)
  }
  const trusted = describeClient({ host: 'cr.example.org:70000', 'x-forwarded-host': 'cr.example.org:99999' }, '10.0.0.2', false, createTrustedProxies(['10.0.0.2']), '', hosts)
  t.equal(trusted.publicOrigin, 'http://registry.example.com:5443', 'nor from a trusted proxy')

  // Behind a trusted proxy (TLS off, nginx passing the client's Host), the proxy answers for the name.
  const proxy = createTrustedProxies(['10.0.0.2'])
  const proxied = describeClient({ host: 'cr.example.org', 'x-forwarded-proto': 'https' }, '10.0.0.2', false, proxy, '', hosts)
  t.equal(proxied.publicOrigin, 'https://cr.example.org', "a trusted proxy's Host is believed")
  const proxiedBad = describeClient({ host: 'cr.example.org/x?', 'x-forwarded-proto': 'https' }, '10.0.0.2', false, proxy, '', hosts)
  t.equal(proxiedBad.publicOrigin, 'https://registry.example.com:5443', 'but only a well-formed one')
  const notProxy = describeClient({ host: 'cr.example.org' }, '10.0.0.3', false, proxy, '', hosts)
  t.equal(notProxy.publicOrigin, 'http://registry.example.com:5443', 'from anyone else it is checked')

  const configured = createPublicHosts({ hosts: ['cr.example.org', '*.apps.example.org'], covers: () => false, defaultName: () => 'localhost', port: () => 443 })
  t.ok(configured.accepts('cr.example.org:443'))
  t.ok(configured.accepts('team.apps.example.org'), 'a wildcard covers one label')
  t.notOk(configured.accepts('a.team.apps.example.org'), 'and only one')
  t.notOk(configured.accepts('apps.example.org'))
  t.notOk(configured.accepts('evil.example'))
  t.equal(configured.fallback(), 'cr.example.org', 'the first configured name is the default; port 443 is left out')

  const refused: string[] = []
  const reporting = createPublicHosts({ hosts: [], covers: () => false, defaultName: () => 'localhost', port: () => 5443, onRefused: (name, fallback) => refused.push(`${name} -> ${fallback}`) })
  for (let i = 0; i < 3; i++) reporting.accepts('evil.example:5443')
  reporting.accepts('EVIL.example')
  for (let i = 0; i < 150; i++) reporting.accepts(`scan${i}.example`)
  t.same(refused.slice(0, 1), ['evil.example -> localhost:5443'], 'a refused name is reported with the name used instead')
  t.equal(refused.filter((line) => line.startsWith('evil.example')).length, 1, 'once per name, whatever its case or port')
  t.equal(refused.length, 100, 'and at most 100 names: a scanner cannot flood the log')
  refused.length = 0
  const configuredUrl = describeClient({ host: 'other.example:5443' }, '203.0.113.7', true, none, 'https://cr.example.org', reporting)
  t.equal(configuredUrl.publicOrigin, 'https://cr.example.org', 'server.public_url names the gateway')
  t.equal(configuredUrl.host, 'cr.example.org')
  t.same(refused, [], 'so the Host is neither checked nor reported as refused (URLs never use the default name then)')
  t.equal(describeClient({}, '203.0.113.7', true, none, 'http://10.0.0.9:8080', reporting).publicOrigin, 'http://10.0.0.9:8080', 'another public_url is parsed afresh')
  t.equal(describeClient({}, '203.0.113.7', true, none, 'http://10.0.0.9:8080', reporting).proto, 'http')

  const plain = createPublicHosts({ hosts: [], defaultName: () => '127.0.0.1', port: () => 8080 })
  t.ok(plain.accepts('localhost:8080'), 'TLS off: loopback names stand in for the certificate')
  t.ok(plain.accepts('[::1]:8080'))
  t.notOk(plain.accepts('evil.example:8080'))
  t.equal(plain.fallback(), '127.0.0.1:8080')
  const v6 = createPublicHosts({ hosts: [], defaultName: () => '::1', port: () => 8080 })
  t.equal(v6.fallback(), '[::1]:8080', 'an IPv6 default is bracketed')
})

t.test("upstreamRequestHeaders drops Portier's own UI cookie and keeps the others", async (t) => {
  const view = describeClient({ host: 'r' }, '203.0.113.7', true, none, '', anyHost('x'))
  t.equal(upstreamRequestHeaders({ cookie: '__Host-portier-ui=v1.abc' }, view).cookie, undefined, 'only ours: no Cookie header at all')
  t.equal(upstreamRequestHeaders({ cookie: 'a=1; __Host-portier-ui=v1.abc; b=2' }, view).cookie, 'a=1; b=2')
  t.equal(upstreamRequestHeaders({ cookie: 'a=1' }, view).cookie, 'a=1')
})

t.test('server.hosts and server.hsts are checked when the configuration loads', async (t) => {
  const loaded = loadConfig({ env: { PORTIER_SERVER_HOSTS: 'registry.example.com, *.example.org, 10.0.0.5', PORTIER_SERVER_HSTS_SEND: 'always' } })
  t.same(loaded.config.server.hosts, ['registry.example.com', '*.example.org', '10.0.0.5'])
  t.same(loaded.config.server.hsts, { send: 'always', max_age: 365 * 86_400_000, include_subdomains: false })
  for (const bad of ['https://registry.example.com', 'registry.example.com:5443', 'evil.example/phish']) {
    try {
      loadConfig({ env: { PORTIER_SERVER_HOSTS: bad } })
      t.fail(`${bad} was accepted`)
    } catch (error) {
      t.ok(error instanceof ConfigError, bad)
      t.match((error as ConfigError).problems, [{ key: 'server.hosts[0]', source: 'environment PORTIER_SERVER_HOSTS' }], `${bad} is named by key and source`)
    }
  }
})
