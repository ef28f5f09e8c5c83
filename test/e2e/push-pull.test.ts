// skopeo pushes an image through Portier over verified HTTPS and pulls it back: every digest must survive.
import t from 'tap'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { skopeoCopy } from '../helpers/skopeo.js'

const MiB = 1024 * 1024

async function peakRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const match = /VmHWM:\s+(\d+) kB/.exec(status)
  return match ? Number(match[1]) * 1024 : 0
}

t.test('skopeo push and pull through Portier over HTTPS keep every digest', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const work = await mkdtemp(join(tmpdir(), 'portier-pushpull-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))

  const image = await makeOciLayout(join(work, 'src'), { layers: [72 * MiB, 3 * MiB, 1 * MiB] })
  const ref = `docker://${gateway.host}/e2e/pushpull:v1`

  const rssBefore = await peakRssBytes(gateway.child.pid as number)
  // Certificate verification stays on: skopeo trusts the generated self-signed certificate as a CA.
  const push = await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir })
  const rss = await peakRssBytes(gateway.child.pid as number)
  t.comment(`push through Portier: ${push.ms} ms; gateway peak RSS ${(rss / MiB).toFixed(1)} MiB`)
  // Streaming, not buffering: holding the 72 MiB layer would raise the peak by at least that much.
  t.ok(rss - rssBefore < 64 * MiB, `gateway peak RSS grew by ${((rss - rssBefore) / MiB).toFixed(1)} MiB during a 72 MiB layer push`)

  const manifest = await fetch(`${registry.url}/v2/e2e/pushpull/manifests/v1`, {
    headers: { accept: image.manifestMediaType },
  })
  await manifest.arrayBuffer()
  t.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest, 'the registry behind holds the same manifest')

  const pull = await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir })
  t.comment(`pull through Portier: ${pull.ms} ms`)
  const back = await readOciLayout(join(work, 'back'), 'latest')
  t.equal(back.manifestDigest, image.manifestDigest, 'manifest digest')
  t.equal(back.configDigest, image.configDigest, 'config digest')
  t.same(back.layerDigests, image.layerDigests, 'layer digests')
  t.same(back.layerSizes, image.layerSizes, 'layer sizes')

  t.equal(await registry.uploadsOpen('e2e/pushpull').then((u) => u.length), 0, 'no upload left open')
})
