// Webhooks: how many events per second the store queue takes and delivers, and what delivery costs a push.
// (1) in-process: queue.add (one durable transaction per request, as the record step does it) and delivery of N events to a
//     real HTTP receiver on 127.0.0.1, one POST per event; (2) two real gateways in front of one registry, events off vs on
//     (a receiver on 127.0.0.1 taking every event), alternating rounds: sequential manifest PUTs and a skopeo push.
// Run: npm run bench:events -- [rounds] [events]
// Everything runs on 127.0.0.1; every loop is bounded in count and every process started here is stopped.
import { mkdtemp, rm, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import pino from 'pino'
import { Store } from '../src/store/store.js'
import { storeQueue } from '../src/events/queue.js'
import { startEvents } from '../src/events/index.js'
import { eventsSection } from '../src/events/section.js'
import { eventsOf } from '../src/events/envelope.js'
import { Recorder, type FinishedRequest } from '../src/observe/record.js'
import { RecentPushes } from '../src/observe/recent.js'
import { classify } from '../src/registry/classify.js'
import { startReceiver } from '../test/helpers/receiver.js'
import { startRegistry } from '../test/helpers/registry.js'
import { startGateway, type GatewayHandle } from '../test/helpers/gateway.js'
import { makeOciLayout, ociBlobPath } from '../test/helpers/oci.js'
import { skopeoCopy } from '../test/helpers/skopeo.js'
import { fmt, median } from './lib/stats.js'

const rounds = Number(process.argv[2] ?? 3)
const count = Number(process.argv[3] ?? 2000)
const PUTS = 200
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const quiet = pino({ level: 'silent' })
const DIGEST = `sha256:${'d'.repeat(64)}`

function finished(n: number): FinishedRequest {
  return {
    requestId: `bench-${n}`, method: 'PUT', request: classify('PUT', `/v2/bench/app/manifests/t${n}`), status: 201, seconds: 0.001, clientIp: '127.0.0.1', user: 'bench',
    upstream: 'a', bytesReceived: 512, bytesSent: 0, failure: undefined, contentDigest: DIGEST, mediaType: OCI_MANIFEST, userAgent: 'bench', host: '127.0.0.1', publicOrigin: 'https://127.0.0.1',
  }
}

const work = await mkdtemp(join(tmpdir(), 'portier-bench-events-'))
const gateways: GatewayHandle[] = []
const registry = await startRegistry()
const receiver = await startReceiver()
try {
  // (1) The queue alone and delivery alone.
  const addRates: number[] = []
  const deliveryRates: number[] = []
  for (let round = 0; round < rounds; round++) {
    const store = Store.open(join(work, `queue-${round}.db`))
    const queue = storeQueue(store)
    const source = { addr: 'bench:0', instanceID: 'bench' }
    let started = process.hrtime.bigint()
    for (let n = 0; n < count; n++) await queue.add('bench', eventsOf(finished(n), source))
    addRates.push(count / (Number(process.hrtime.bigint() - started) / 1e9))

    const recorder = new Recorder(quiet, undefined, new RecentPushes(10))
    const before = receiver.events().length
    const events = startEvents(eventsSection.parse({ endpoints: [{ name: 'bench', url: receiver.url, timeout: '5s' }] }), { recorder, metrics: undefined, log: quiet, port: () => 0, store: Store.open(join(work, `deliver-${round}.db`)) })
    started = process.hrtime.bigint()
    for (let n = 0; n < count; n++) recorder.record(finished(n))
    await receiver.waitFor(before + count, 120_000)
    deliveryRates.push(count / (Number(process.hrtime.bigint() - started) / 1e9))
    await events?.close()
    store.close()
    console.log(`round ${round + 1}: queue.add ${fmt(addRates[round] as number)} events/s; record + deliver ${count} events ${fmt(deliveryRates[round] as number)} events/s`)
  }

  // (2) What delivery costs a push: the same gateway build, events off vs on.
  const image = await makeOciLayout(join(work, 'image'), { layers: [4 * 1024 * 1024, 64 * 1024] })
  const manifest = await readFile(ociBlobPath(image.dir, image.manifestDigest))
  const base = { upstreams: [{ url: registry.url }], store: { scan: false } }
  const variants = [
    { name: 'events off', gateway: await startGateway({ config: base }) },
    { name: 'events on', gateway: await startGateway({ config: { ...base, events: { endpoints: [{ name: 'bench', url: receiver.url, timeout: '5s' }] } } }) },
  ]
  gateways.push(...variants.map((variant) => variant.gateway))
  // The blobs once, so the PUT loop measures manifest PUTs only.
  await skopeoCopy(`oci:${image.dir}:latest`, `docker://${variants[0]?.gateway.host}/bench/app:seed`, { destCertDir: variants[0]?.gateway.certDir as string })
  const putRates = new Map<string, number[]>()
  const pushTimes = new Map<string, number[]>()
  for (let round = 0; round < rounds; round++) {
    for (const variant of round % 2 === 0 ? variants : [...variants].reverse()) {
      const dispatcher = new Agent({ connect: { ca: await readFile(variant.gateway.caFile) } })
      let started = process.hrtime.bigint()
      for (let n = 0; n < PUTS; n++) {
        const put = await request(`${variant.gateway.url}/v2/bench/app/manifests/r${round}-${n}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST }, dispatcher })
        await put.body.dump()
        if (put.statusCode !== 201) throw new Error(`manifest PUT: ${put.statusCode}`)
      }
      const putRate = PUTS / (Number(process.hrtime.bigint() - started) / 1e9)
      await dispatcher.close()
      started = process.hrtime.bigint()
      await skopeoCopy(`oci:${image.dir}:latest`, `docker://${variant.gateway.host}/bench/push-${round}:v1`, { destCertDir: variant.gateway.certDir })
      const pushMs = Number(process.hrtime.bigint() - started) / 1e6
      putRates.set(variant.name, [...(putRates.get(variant.name) ?? []), putRate])
      pushTimes.set(variant.name, [...(pushTimes.get(variant.name) ?? []), pushMs])
      console.log(`round ${round + 1} ${variant.name}: ${fmt(putRate)} manifest PUTs/s (sequential), skopeo push of 2 layers (4 MiB + 64 KiB) ${fmt(pushMs)} ms`)
    }
  }
  const off = { put: median(putRates.get('events off') ?? []), push: median(pushTimes.get('events off') ?? []) }
  const on = { put: median(putRates.get('events on') ?? []), push: median(pushTimes.get('events on') ?? []) }
  console.log(`\n| ${rounds} rounds, medians | events off | events on | on/off |`)
  console.log('|---|---|---|---|')
  console.log(`| queue.add (durable, one transaction each) | | ${fmt(median(addRates))} events/s | |`)
  console.log(`| record + deliver ${count} events, one POST each | | ${fmt(median(deliveryRates))} events/s | |`)
  console.log(`| manifest PUT, sequential | ${fmt(off.put)}/s | ${fmt(on.put)}/s | ${(on.put / off.put).toFixed(3)}× |`)
  console.log(`| skopeo push (2 layers, 4 MiB + 64 KiB) | ${fmt(off.push)} ms | ${fmt(on.push)} ms | ${(on.push / off.push).toFixed(3)}× |`)
} finally {
  await Promise.all(gateways.map((gateway) => gateway.stop()))
  await receiver.close()
  await registry.stop()
  await rm(work, { recursive: true, force: true })
}
