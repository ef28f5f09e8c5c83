// Routing pieces on their own: signed upload URLs, rendezvous hashing, the body fan-out, catalog merging, config checks.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Readable, Writable } from 'node:stream'
import { ConfigError } from '../../src/config/index.js'
import { loadConfig } from '../../src/app/config.js'
import { sessionFromLocation, sessionRequest, UploadTokens, type UpstreamSession } from '../../src/uploads/token.js'
import { rendezvousOwner } from '../../src/routing/hash.js'
import { FanOut } from '../../src/forward/fanout.js'
import { mergePages } from '../../src/forward/catalog.js'
import { classify } from '../../src/registry/classify.js'

const secret = Buffer.from('a routing secret of at least thirty-two bytes')
const names = ['alpha', 'beta', 'gamma']
// A real distribution 2.8 `_state`: base64url with padding of a 32-byte HMAC and JSON.
const state = 'CTMH_extNHMTaX9c-3eBek6yL4DzSJtpeqjOwhp6duN7Ik5hbWUiOiJhL2IiLCJVVUlEIjoiODE4ODBlNjMtYTlmMC00YzhkLTgzZGQtZDlhNzE5YzZlYTU0IiwiT2Zmc2V0IjowLCJTdGFydGVkQXQiOiIyMDI2LTExLTIzVDEyOjA1OjQzLjE3NzM5MTM3OFoifQ=='
const uuid = '81880e63-a9f0-4c8d-83dd-d9a719c6ea54'

function tokenOf(path: string): string {
  return new URL(path, 'https://gw.invalid').searchParams.get('_portier') as string
}

t.test('a signed upload URL carries every session and reads back exactly', async (t) => {
  const tokens = new UploadTokens(secret, names)
  const sessions: UpstreamSession[] = [
    { upstream: 'alpha', uuid, state },
    { upstream: 'gamma', uuid: '0d9f1c2e-1111-4222-8333-944455556666', state: 'not-padded_base64' },
    { upstream: 'beta', uuid: 'not-a-standard-uuid.v1', state: 'text with spaces & symbols' },
  ]
  const path = tokens.clientPath('team/app', sessions)
  t.match(path, new RegExp(`^/v2/team/app/blobs/uploads/${uuid}\\?_portier=[A-Za-z0-9_-]+$`), 'path names the first session; one query parameter')
  t.same(tokens.read('team/app', uuid, tokenOf(path)), sessions, 'sessions, UUIDs and _state values survive verbatim')

  const single = tokens.clientPath('team/app', [{ upstream: 'alpha', uuid, state }])
  t.ok(tokenOf(single).length < 270, `one session is compact (${tokenOf(single).length} characters, the registry's own _state is ${state.length})`)
  t.same(tokens.read('team/app', uuid, tokenOf(single)), [{ upstream: 'alpha', uuid, state }])
  const noState = tokens.clientPath('x', [{ upstream: 'beta', uuid }])
  t.same(tokens.read('x', uuid, tokenOf(noState)), [{ upstream: 'beta', uuid }], 'a session without _state stays without')
})

t.test('a tampered, moved or foreign upload URL reads as unknown', async (t) => {
  const tokens = new UploadTokens(secret, names)
  const token = tokenOf(tokens.clientPath('team/app', [{ upstream: 'alpha', uuid, state }]))
  const raw = Buffer.from(token, 'base64url')
  for (let index = 0; index < raw.length; index += 7) {
    const changed = Buffer.from(raw)
    changed[index] = (changed[index] as number) ^ 0x01
    t.equal(tokens.read('team/app', uuid, changed.toString('base64url')), undefined, `flipping a bit at byte ${index} is detected`)
  }
  t.equal(tokens.read('team/other', uuid, token), undefined, 'bound to its repository')
  t.equal(tokens.read('team/app', '81880e63-a9f0-4c8d-83dd-d9a719c6ea55', token), undefined, 'bound to the path UUID')
  t.equal(tokens.read('team/app', uuid, token.slice(0, -2)), undefined, 'truncated')
  t.equal(tokens.read('team/app', uuid, null), undefined, 'missing')
  t.equal(tokens.read('team/app', uuid, `${token}%`), undefined, 'not base64url')
  t.equal(new UploadTokens(Buffer.from('another secret of at least thirty-two bytes!'), names).read('team/app', uuid, token), undefined, 'another secret')
  t.equal(new UploadTokens(secret, ['beta', 'gamma']).read('team/app', uuid, token), undefined, 'an upstream that is no longer configured')
  t.same(new UploadTokens(secret, ['gamma', 'alpha', 'beta']).read('team/app', uuid, token), [{ upstream: 'alpha', uuid, state }], 'reordering the upstreams changes nothing')
})

t.test('an upstream Location becomes a session, and a session becomes the upstream request', async (t) => {
  const location = `http://127.0.0.1:5000/v2/team/app/blobs/uploads/${uuid}?_state=${encodeURIComponent(state)}`
  t.same(sessionFromLocation('alpha', location), { repository: 'team/app', session: { upstream: 'alpha', uuid, state } })
  t.same(sessionFromLocation('alpha', `/v2/a/blobs/uploads/${uuid}`), { repository: 'a', session: { upstream: 'alpha', uuid } }, 'relative, no state')
  t.equal(sessionFromLocation('alpha', '/v2/a/blobs/sha256:abc'), undefined, 'not an upload URL')

  const tokens = new UploadTokens(secret, names)
  const client = tokens.clientPath('team/app', [{ upstream: 'alpha', uuid, state }])
  const request = classify('PUT', `${client}&digest=sha256:${'a'.repeat(64)}`)
  const upstream = sessionRequest(request, { upstream: 'alpha', uuid, state })
  t.equal(upstream.path, `/v2/team/app/blobs/uploads/${uuid}`)
  t.equal(upstream.params.get('_state'), state, 'the upstream gets its own _state back')
  t.equal(upstream.params.get('_portier'), null, 'and never the token')
  t.equal(upstream.params.get('digest'), `sha256:${'a'.repeat(64)}`, 'other parameters pass')
  t.equal(new URLSearchParams(upstream.query).get('_state'), state, 'the query string agrees with params')
})

t.test('rendezvous hashing: stable owners, ~1/N moves when an upstream is added, weights respected', async (t) => {
  const repositories = Array.from({ length: 3000 }, (_, index) => `team${index % 37}/app-${index}`)
  const three = [{ name: 'a' }, { name: 'b' }, { name: 'c' }]
  const four = [...three, { name: 'd' }]
  const before = repositories.map((name) => rendezvousOwner(three, name).name)
  t.same(repositories.map((name) => rendezvousOwner([...three].reverse(), name).name), before, 'configuration order does not matter')
  const after = repositories.map((name) => rendezvousOwner(four, name).name)
  let moved = 0
  let movedElsewhere = 0
  for (const [index, owner] of after.entries()) {
    if (owner === before[index]) continue
    moved += 1
    if (owner !== 'd') movedElsewhere += 1
  }
  t.equal(movedElsewhere, 0, 'a repository that moves, moves to the new upstream')
  t.ok(moved / repositories.length > 0.2 && moved / repositories.length < 0.3, `about a quarter moved (${moved} of ${repositories.length})`)

  const removed = repositories.map((name) => rendezvousOwner([three[0], three[2]] as typeof three, name).name)
  t.ok(removed.every((owner, index) => before[index] === 'b' || owner === before[index]), 'removing an upstream moves only its own repositories')

  const weighted = repositories.map((name) => rendezvousOwner([{ name: 'a', weight: 2 }, { name: 'b' }, { name: 'c' }], name).name)
  const share = weighted.filter((owner) => owner === 'a').length / repositories.length
  t.ok(share > 0.45 && share < 0.55, `weight 2 of 4 takes about half (${share.toFixed(3)})`)
})

t.test('the fan-out reads the body once, every branch gets every byte, the slowest sets the pace', async (t) => {
  const chunks = Array.from({ length: 64 }, () => randomBytes(64 * 1024))
  const expected = Buffer.concat(chunks)
  const source = new PassThrough({ highWaterMark: 64 * 1024 })
  const fan = new FanOut(source, 3, 256 * 1024)
  let maxAhead = 0
  let written = 0
  const received = [0, 0, 0]
  const sinks = fan.branches.map((branch, index) => {
    const parts: Buffer[] = []
    const sink = new Writable({
      highWaterMark: 16 * 1024,
      write(chunk: Buffer, _encoding, done) {
        parts.push(chunk)
        received[index] = (received[index] as number) + chunk.length
        // Branch 2 is slow: everything waits for it.
        setTimeout(done, index === 2 ? 2 : 0)
      },
    })
    branch.pipe(sink)
    return new Promise<Buffer>((resolve) => sink.on('finish', () => resolve(Buffer.concat(parts))))
  })
  for (const chunk of chunks) {
    written += chunk.length
    maxAhead = Math.max(maxAhead, written - Math.min(...received))
    if (!source.write(chunk)) await new Promise((resolve) => source.once('drain', resolve))
  }
  source.end()
  const results = await Promise.all(sinks)
  for (const [index, result] of results.entries()) t.ok(result.equals(expected), `branch ${index} got every byte in order`)
  t.ok(maxAhead < 1.5 * 1024 * 1024, `the fastest branch never ran far ahead of the slowest (${maxAhead} bytes of ${expected.length})`)
})

t.test('a dropped branch stops holding the others back', async (t) => {
  const source = Readable.from(Array.from({ length: 32 }, () => randomBytes(64 * 1024)), { objectMode: false })
  const fan = new FanOut(source, 2, 64 * 1024)
  // Branch 0 is never read: without the drop, the source would wait for it forever.
  fan.drop(0)
  let size = 0
  for await (const chunk of fan.branches[1] as PassThrough) size += (chunk as Buffer).length
  t.equal(size, 32 * 64 * 1024, 'the live branch got the whole body')
  t.ok(fan.branches[0]?.destroyed, 'the dropped branch is destroyed')
})

t.test('merged catalog pages: sorted, de-duplicated, paginated, never skipping a name', async (t) => {
  const all = (names: string[]): string[] => names
  t.same(mergePages([{ repositories: ['a', 'c'], more: false }, { repositories: ['b', 'c', 'd'], more: false }], 10, all), { repositories: ['a', 'b', 'c', 'd'] })
  t.same(mergePages([{ repositories: ['a', 'c'], more: false }, { repositories: ['b', 'c', 'd'], more: false }], 2, all), { repositories: ['a', 'b'], nextLast: 'b' })
  // The second upstream has more after "c": names after "c" from the first are not vouched for yet.
  t.same(mergePages([{ repositories: ['a', 'd', 'e'], more: false }, { repositories: ['b', 'c'], more: true }], 10, all), { repositories: ['a', 'b', 'c'], nextLast: 'c' })
  const hidden = (names: string[]): string[] => names.filter((name) => !name.startsWith('secret'))
  t.same(mergePages([{ repositories: ['a', 'secret1', 'secret2'], more: false }], 1, hidden), { repositories: ['a'] }, 'the ACL filter applies before paging')

  // Walking every page finds every name exactly once.
  const upstreamLists = [
    Array.from({ length: 40 }, (_, index) => `r${String(index * 3).padStart(3, '0')}`),
    Array.from({ length: 40 }, (_, index) => `r${String(index * 2).padStart(3, '0')}`),
  ]
  const pageOf = (list: string[], last: string | undefined, n: number, cap: number) => {
    const after = list.filter((name) => last === undefined || name > last)
    const size = Math.min(n, cap)
    return { repositories: after.slice(0, size), more: after.length > size }
  }
  const seen: string[] = []
  let last: string | undefined
  for (let pages = 0; pages < 100; pages++) {
    // The second upstream caps pages at 4 entries, as a registry with a small catalog.maxentries would.
    const page = mergePages([pageOf(upstreamLists[0] as string[], last, 7, 100), pageOf(upstreamLists[1] as string[], last, 7, 4)], 7, all)
    seen.push(...page.repositories)
    if (page.nextLast === undefined) break
    last = page.nextLast
  }
  t.same(seen, [...new Set([...(upstreamLists[0] as string[]), ...(upstreamLists[1] as string[])])].sort(), 'every name once, in order')
})

t.test('config: several upstreams need a strategy; TLS files must exist, pair up and go with https', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-routing-config-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = (text: string): string => {
    const path = join(dir, `${randomBytes(4).toString('hex')}.yaml`)
    writeFileSync(path, text)
    return path
  }
  const problems = (text: string): Array<{ key: string; expected: string; found: string }> => {
    try {
      loadConfig({ file: file(text), env: {} })
      return []
    } catch (error) {
      if (error instanceof ConfigError) return error.problems
      throw error
    }
  }
  const two = 'upstreams:\n  - url: http://a:5000\n  - url: http://b:5000\n'
  const missing = problems(two)
  t.match(missing, [{ key: 'routing.strategy', expected: /shared.*by-repository.*mirror/, found: 'nothing' }], 'a choice is required, with what each means')
  t.same(problems(`${two}routing:\n  strategy: by-repository\n`), [])
  t.match(problems(`${two}routing:\n  strategy: sharded\n`), [{ key: 'routing.strategy' }])
  t.match(problems(`${two}routing:\n  strategy: mirror\n  mirror:\n    require: most\n`), [{ key: 'routing.mirror.require' }])
  t.match(problems(`${two}routing:\n  strategy: mirror\n  secret: short\n`), [{ key: 'routing.secret', expected: /32 characters/ }])

  const pem = join(dir, 'ca.pem')
  writeFileSync(pem, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
  t.match(problems(`upstreams:\n  - url: http://a:5000\n    ca_bundle: ${pem}\n`), [{ key: 'upstreams[0].ca_bundle', expected: /https:\/\// }], 'TLS options on a plain-HTTP upstream')
  t.match(problems(`upstreams:\n  - url: https://a\n    ca_bundle: ${join(dir, 'nope.pem')}\n`), [{ key: 'upstreams[0].ca_bundle', found: /ENOENT/ }], 'a missing file is named')
  t.match(problems(`upstreams:\n  - url: https://a\n    client_cert: ${pem}\n`), [{ key: 'upstreams[0].client_key', expected: /private key/ }], 'a certificate without its key')
  t.same(problems(`upstreams:\n  - url: https://a\n    ca_bundle: ${pem}\n    weight: 3\n`), [])
  t.match(problems('upstreams:\n  - url: https://a\n    weight: 0\n'), [{ key: 'upstreams[0].weight' }])
})

t.test('the router: where each strategy sends reads, writes and uploads, and when it is ready', async (t) => {
  const { Pool } = await import('undici')
  const { createStrategy } = await import('../../src/routing/strategies.js')
  const { routeNames } = await import('../../src/routing/route.js')
  const { Forwarder } = await import('../../src/forward/forward.js')
  const { RegistryError } = await import('../../src/registry/errors.js')
  type UpstreamLike = import('../../src/upstreams/upstreams.js').Upstream
  const make = (name: string, weight = 1): UpstreamLike => ({ name, weight, origin: `http://${name}.invalid`, forwardAuthorization: false, pool: new Pool(`http://${name}.invalid`), healthPool: new Pool(`http://${name}.invalid`) })
  const [a, b, c] = [make('a', 2), make('b'), make('c')] as [UpstreamLike, UpstreamLike, UpstreamLike]
  t.teardown(() => Promise.all([a, b, c].flatMap((upstream) => [upstream.pool.close(), upstream.healthPool.close()])))
  const down = new Set<string>()
  const tokens = new UploadTokens(secret, ['a', 'b', 'c'])
  const router = (strategy: '' | 'shared' | 'by-repository' | 'mirror', balance: 'least-in-flight' | 'round-robin' = 'round-robin', list = [a, b, c]) =>
    createStrategy({ strategy, balance, secret: '', secret_file: '', mirror: { require: 'quorum' } }, {
      upstreams: list,
      isAvailable: (upstream) => !down.has(upstream.name),
      forwarder: new Forwarder(() => undefined),
      uploadTokens: () => tokens,
      onMirrorBranchFailure: () => undefined,
    })
  const refusal = (run: () => unknown): InstanceType<typeof RegistryError> | undefined => {
    try {
      run()
      return undefined
    } catch (error) {
      return error instanceof RegistryError ? error : undefined
    }
  }
  const get = classify('GET', '/v2/team/app/manifests/v1')
  const post = classify('POST', '/v2/team/app/blobs/uploads/')

  const single = router('', 'round-robin', [a]).route(get)
  t.match(single, { kind: 'forward', upstream: a, fallbacks: [], nextOnNotFound: false }, 'one upstream: everything goes there, as without routing')
  t.equal((single as { uploadLocation?: unknown }).uploadLocation, undefined, 'and upload URLs stay the registry\'s own')

  const shared = router('shared')
  const counts = new Map<string, number>()
  for (let index = 0; index < 8; index++) {
    const served = routeNames(shared.route(post))
    counts.set(served, (counts.get(served) ?? 0) + 1)
  }
  t.same(Object.fromEntries(counts), { a: 4, b: 2, c: 2 }, 'weighted round robin: weight 2 gets twice the share')
  t.match(shared.route(get), { kind: 'forward', fallbacks: [{}, {}] }, 'reads carry the other upstreams as fallbacks')
  t.match(shared.route(post), { kind: 'forward', fallbacks: [] }, 'writes never move')
  down.add('a').add('b')
  t.match(shared.route(get), { upstream: c, fallbacks: [] }, 'a down upstream is skipped')
  down.add('c')
  t.match(refusal(() => shared.route(get)), { code: 'UNAVAILABLE', headers: { 'Retry-After': '5' } }, 'none up: 503')
  t.same(shared.readiness([{ name: 'a', url: '', state: 'down', since: '', consecutiveFailures: 3 }, { name: 'b', url: '', state: 'up', since: '', consecutiveFailures: 0 }]).ready, true, 'shared is ready with one upstream up')
  down.clear()

  const byRepository = router('by-repository')
  const owner = rendezvousOwner([a, b, c], 'team/app')
  t.match(byRepository.route(get), { kind: 'forward', upstream: owner, fallbacks: [] }, 'the owner serves reads, with nowhere else to go')
  const started = byRepository.route(post) as { uploadLocation?: (location: string, upstream: UpstreamLike) => string }
  const signed = started.uploadLocation?.(`https://gw.example/v2/team/app/blobs/uploads/${uuid}?_state=${encodeURIComponent(state)}`, owner) as string
  t.match(signed, new RegExp(`^https://gw.example/v2/team/app/blobs/uploads/${uuid}\\?_portier=`), 'the upload Location is signed')
  const chunk = classify('PATCH', signed.slice('https://gw.example'.length))
  t.match(byRepository.route(chunk), { upstream: owner, request: { path: `/v2/team/app/blobs/uploads/${uuid}` } }, 'a chunk goes to the session\'s upstream with its own URL')
  t.match(refusal(() => byRepository.route(classify('PATCH', `/v2/team/app/blobs/uploads/${uuid}?_state=${encodeURIComponent(state)}`))), { code: 'BLOB_UPLOAD_UNKNOWN', status: 404 }, 'an unsigned upload URL is unknown')
  down.add(owner.name)
  t.match(refusal(() => byRepository.route(post)), { code: 'UNAVAILABLE', headers: { 'Retry-After': '5' } }, 'the owner down: writes get 503, never another upstream')
  t.match(refusal(() => byRepository.route(chunk)), { code: 'UNAVAILABLE' }, 'and so do its uploads in progress')
  const states = [a, b, c].map((upstream) => ({ name: upstream.name, url: '', state: down.has(upstream.name) ? ('down' as const) : ('up' as const), since: '', consecutiveFailures: 0 }))
  t.match(byRepository.readiness(states), { ready: false, detail: { unreachable: [`repositories owned by ${owner.name}`] } })
  down.clear()

  const mirror = router('mirror')
  t.match(mirror.route(get), { kind: 'forward', upstream: a, fallbacks: [b, c], nextOnNotFound: true }, 'mirror reads: first healthy upstream, the next one on a 404')
  t.match(mirror.route(post), { kind: 'mirror', upstreams: [a, b, c] }, 'mirror writes go to all')
  t.match(mirror.route(classify('GET', '/v2/_catalog')), { kind: 'catalog', upstreams: [a, b, c] }, 'the catalog is merged')
  const quorumStates = states.map((entry, index) => ({ ...entry, state: index === 0 ? ('down' as const) : ('up' as const) }))
  t.match(mirror.readiness(quorumStates), { ready: true, detail: { needed: 2 } }, 'quorum of 3: two up is ready')
  t.match(mirror.readiness(quorumStates.map((entry, index) => ({ ...entry, state: index === 2 ? ('down' as const) : entry.state }))), { ready: false })
})
