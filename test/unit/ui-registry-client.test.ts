// The web UI's registry client goes through routing: a catalog merged over upstreams keeps the page-boundary rule when one upstream pages short (as registry 3.x does at its page size), so no name is skipped.
import t from 'tap'
import { MockAgent, type MockPool } from 'undici'
import { Forwarder } from '../../src/forward/forward.js'
import { Router } from '../../src/routing/router.js'
import { createStrategy } from '../../src/routing/strategies.js'
import { rendezvousOwner } from '../../src/routing/hash.js'
import { UploadTokens } from '../../src/uploads/token.js'
import { createRegistryClient } from '../../src/ui/registry-client.js'
import type { Upstream } from '../../src/upstreams/upstreams.js'

/** A catalog as a registry serves it: sorted names after `last`, at most min(n, its own page size), and a Link when there are more. */
function serveCatalog(pool: MockPool, names: string[], pageSize: number, asked: string[]): void {
  pool
    .intercept({ path: (path) => path.startsWith('/v2/_catalog'), method: 'GET' })
    .reply((options) => {
      const query = new URL(options.path, 'http://registry.invalid').searchParams
      asked.push(query.toString())
      const last = query.get('last')
      const n = Math.min(Number(query.get('n') ?? '100'), pageSize)
      const after = [...names].sort().filter((name) => last === null || name > last)
      const page = after.slice(0, n)
      const headers: Record<string, string> = { 'content-type': 'application/json' }
      if (after.length > n) headers.link = `</v2/_catalog?last=${page[page.length - 1] ?? ''}&n=${n}>; rel="next"`
      return { statusCode: 200, data: JSON.stringify({ repositories: page }), responseOptions: { headers } }
    })
    .persist()
}

t.test('by-repository: the UI lists every repository although one upstream pages at 2 names', async (t) => {
  const agent = new MockAgent()
  agent.disableNetConnect()
  t.teardown(() => agent.close())
  const make = (name: string): Upstream => {
    const origin = `http://${name}.invalid`
    return { name, weight: 1, origin, forwardAuthorization: false, pool: agent.get<MockPool>(origin), healthPool: agent.get<MockPool>(origin) }
  }
  const upstreams = [make('a'), make('b')]
  // Names spread by the same hashing the router uses; `a` pages short (2), `b` answers whole pages. Taken in
  // order until `a` holds three and `b` one after a's third: a's first page then ends before names `b` has
  // already shown, which is where a merge without the page-boundary rule skips a's third name.
  const names: string[] = []
  let ownedByA = 0
  for (let index = 0; index < 100; index++) {
    const name = `team/app-${String(index).padStart(2, '0')}`
    names.push(name)
    if (rendezvousOwner(upstreams, name).name === 'a') ownedByA++
    else if (ownedByA >= 3) break
  }
  const held = (upstream: Upstream): string[] => names.filter((name) => rendezvousOwner(upstreams, name) === upstream)
  t.ok(held(upstreams[0] as Upstream).length >= 3 && rendezvousOwner(upstreams, names[names.length - 1] as string).name === 'b', `a holds ${ownedByA} of ${names.length} names, b the last`)
  const askedA: string[] = []
  serveCatalog(agent.get<MockPool>('http://a.invalid'), held(upstreams[0] as Upstream), 2, askedA)
  serveCatalog(agent.get<MockPool>('http://b.invalid'), held(upstreams[1] as Upstream), 1000, [])

  const forwarder = new Forwarder(() => undefined)
  const strategy = createStrategy(
    { strategy: 'by-repository', balance: 'least-in-flight', secret: '', secret_file: '', mirror: { require: 'all' } },
    { upstreams, isAvailable: () => true, forwarder, uploadTokens: () => new UploadTokens(Buffer.alloc(32, 7), ['a', 'b']), onMirrorBranchFailure: () => undefined },
  )
  const router = new Router({ strategy, forwarder })
  const client = createRegistryClient((context) => router.answer(context))

  // The UI's own walk (ui/api.ts): pages of up to 1000 from `last`, continuing from each page's last name.
  const listed: string[] = []
  let last: string | undefined
  for (let page = 0; page < 20; page++) {
    const answer = await client.catalog(last)
    listed.push(...answer.repositories)
    if (!answer.more || answer.repositories.length === 0) break
    last = answer.repositories[answer.repositories.length - 1]
  }
  t.same(listed, names, 'every name once, in order: none skipped at a\'s page boundaries')
  t.ok(askedA.length > 1, `upstream a was asked page by page (${askedA.length} times)`)
})
