// compose.multi.yaml layered over compose.yaml: every upstream of its config is a registry service with its own storage, and the upload-URL key persists.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import yaml from 'js-yaml'
import { ROOT } from '../helpers/gateway.js'
import { loadConfig } from '../../src/app/config.js'

type Service = { image?: string; ports?: string[]; volumes?: string[]; depends_on?: string[] }
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> }
const base = yaml.load(readFileSync(join(ROOT, 'compose.yaml'), 'utf8')) as Compose
const overlay = yaml.load(readFileSync(join(ROOT, 'compose.multi.yaml'), 'utf8')) as Compose
const configFile = join(ROOT, 'config', 'compose.multi.portier.yaml')
const { config } = loadConfig({ file: configFile, env: {} })

/** Compose's merge rules for the keys used here: volumes replace by target, depends_on is appended. */
function merged(name: string): Service {
  const a = base.services[name] ?? {}
  const b = overlay.services[name] ?? {}
  const target = (entry: string): string => entry.split(':')[1] as string
  const volumes = [...(a.volumes ?? []).filter((v) => !(b.volumes ?? []).some((w) => target(w) === target(v))), ...(b.volumes ?? [])]
  return { ...a, ...b, volumes, depends_on: [...new Set([...(a.depends_on ?? []), ...(b.depends_on ?? [])])] }
}

t.test('the config routes over three upstreams that do not share storage', async (t) => {
  t.equal(config.upstreams.length, 3)
  t.ok(config.routing.strategy === 'mirror' || config.routing.strategy === 'by-repository', `strategy ${config.routing.strategy}`)
})

t.test('every upstream is a registry service of the merged compose file, on port 5000, with its own volume', async (t) => {
  const portier = merged('portier')
  const storage = new Set<string>()
  for (const upstream of config.upstreams) {
    const url = new URL(upstream.url)
    const service = merged(url.hostname)
    t.match(service.image, /^registry:2/, `${url.hostname} is a registry:2 service`)
    t.equal(url.port, '5000', `${upstream.name} on the registry's port`)
    t.ok(portier.depends_on?.includes(url.hostname), `portier starts after ${url.hostname}`)
    const volume = service.volumes?.find((v) => v.endsWith(':/var/lib/registry'))?.split(':')[0]
    t.ok(volume && volume in { ...base.volumes, ...overlay.volumes }, `${url.hostname} stores in a declared volume (${volume})`)
    storage.add(volume as string)
  }
  t.equal(storage.size, config.upstreams.length, 'no two registries share storage (that would be routing.strategy: shared)')
})

t.test('the multi config replaces the default one, and the upload-URL key persists in a volume', async (t) => {
  const portier = merged('portier')
  t.same(portier.volumes?.filter((v) => v.split(':')[1] === '/etc/portier/portier.yaml'), ['./config/compose.multi.portier.yaml:/etc/portier/portier.yaml:ro'])
  t.equal(config.routing.secret, '', 'the key comes from the file, not from the committed config')
  const data = portier.volumes?.find((v) => v.startsWith('portier-data:'))?.split(':')[1] as string
  t.ok(posix.join('/app', config.routing.secret_file).startsWith(`${data}/`), 'data/routing/secret is in the portier-data volume')
  t.ok('portier-data' in (overlay.volumes ?? {}))
})
