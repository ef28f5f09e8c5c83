// compose.acme.yaml layered over compose.yaml: ports 80 and 443 reach the listeners its config names, the
// config replaces the default one, and the ACME storage lands in the certificates volume.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import yaml from 'js-yaml'
import { ROOT } from '../helpers/gateway.js'
import { loadConfig } from '../../src/app/config.js'

type Service = { ports?: string[]; volumes?: string[] }
const base = yaml.load(readFileSync(join(ROOT, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> }
const overlay = yaml.load(readFileSync(join(ROOT, 'compose.acme.yaml'), 'utf8')) as { services: Record<string, Service> }
const configFile = join(ROOT, 'config', 'compose.acme.portier.yaml')

/** Compose's merge rules for the keys used here: ports are appended, volumes replace by target. */
function merged(name: string): Required<Service> {
  const a = base.services[name] ?? {}
  const b = overlay.services[name] ?? {}
  const target = (entry: string): string => entry.split(':')[1] as string
  const volumes = [...(a.volumes ?? []).filter((v) => !(b.volumes ?? []).some((w) => target(w) === target(v))), ...(b.volumes ?? [])]
  return { ports: [...(a.ports ?? []), ...(b.ports ?? [])], volumes }
}

const port = (address: string): number => Number(/:(\d+)$/.exec(address)?.[1])

t.test('the overlay changes only the portier service', async (t) => {
  t.same(Object.keys(overlay.services), ['portier'])
})

t.test('ports 443 and 80 reach the HTTPS and plain-HTTP listeners of the ACME config', async (t) => {
  const { config } = loadConfig({ file: configFile, env: {} })
  t.equal(config.tls.acme.enabled, true)
  t.equal(config.tls.acme.challenge, 'http-01')
  t.ok(config.tls.acme.domains.length > 0)
  const portier = merged('portier')
  const published = new Map(portier.ports.map((mapping) => [Number(mapping.split(':')[0]), Number(mapping.split(':')[1])]))
  t.equal(published.get(443), port(config.server.listen), '443 → server.listen')
  t.equal(published.get(80), port(config.server.http_redirect_listen), '80 → server.http_redirect_listen (http-01 and redirects)')
  t.ok(port(config.server.http_redirect_listen) > 1024, 'an unprivileged port inside the container: the image runs as a non-root user')
})

t.test('the ACME config replaces the default one, and its storage is in the certificates volume', async (t) => {
  const portier = merged('portier')
  const configMounts = portier.volumes.filter((v) => v.split(':')[1] === '/etc/portier/portier.yaml')
  t.same(configMounts, ['./config/compose.acme.portier.yaml:/etc/portier/portier.yaml:ro'])
  const { config } = loadConfig({ file: configFile, env: {} })
  const certsVolume = portier.volumes.find((v) => v.startsWith('portier-certs:'))?.split(':')[1]
  t.equal(certsVolume, '/app/certs')
  t.ok(posix.join('/app', config.tls.acme.storage).startsWith(`${certsVolume}/`), 'account key and certificates persist across container re-creation')
})
