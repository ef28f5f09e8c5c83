// The store on SQLite vs PostgreSQL: events queued per second (one durable transaction each, as the events module writes them),
// events recorded and delivered per second to a real receiver on 127.0.0.1 (one instance, and three instances sharing PostgreSQL),
// and batched writes (pull times) committed per second. PostgreSQL is Debian's server started here on 127.0.0.1 (test/helpers/postgres.ts).
// Run: npm run build && bash scripts/with-node.sh node --import=tsx bench/store-engines.ts [rounds] [events] [pulls]
// Everything runs on 127.0.0.1; every loop is bounded in count and every process started here is stopped.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import type { StoreEngine } from '../src/store/engine.js'
import { Store } from '../src/store/store.js'
import { PostgresStore } from '../src/store/postgres.js'
import { PushPullTimes } from '../src/store/times.js'
import { storeQueue } from '../src/events/queue.js'
import { startEvents, type Events } from '../src/events/index.js'
import { eventsSection } from '../src/events/section.js'
import { eventsOf } from '../src/events/envelope.js'
import { Recorder, type FinishedRequest } from '../src/observe/record.js'
import { RecentPushes } from '../src/observe/recent.js'
import { classify } from '../src/registry/classify.js'
import { startReceiver } from '../test/helpers/receiver.js'
import { startPostgres } from '../test/helpers/postgres.js'
import { fmt, median } from './lib/stats.js'

const rounds = Number(process.argv[2] ?? 3)
const count = Number(process.argv[3] ?? 1000)
const PULLS = Number(process.argv[4] ?? 5000)
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const quiet = pino({ level: 'silent' })
const DIGEST = `sha256:${'d'.repeat(64)}`

function finished(n: number): FinishedRequest {
  return {
    requestId: `bench-${n}`, method: 'PUT', request: classify('PUT', `/v2/bench/app/manifests/t${n}`), status: 201, seconds: 0.001, clientIp: '127.0.0.1', user: 'bench',
    upstream: 'a', bytesReceived: 512, bytesSent: 0, failure: undefined, contentDigest: DIGEST, mediaType: OCI_MANIFEST, userAgent: 'bench', host: '127.0.0.1', publicOrigin: 'https://127.0.0.1',
  }
}

const seconds = (started: bigint): number => Number(process.hrtime.bigint() - started) / 1e9
const work = await mkdtemp(join(tmpdir(), 'portier-bench-store-'))
const postgres = await startPostgres({ database: 'bench' })
const receiver = await startReceiver()
let databases = 0
const open = async (engine: 'sqlite' | 'postgres', name: string): Promise<StoreEngine> =>
  engine === 'sqlite' ? Store.open(join(work, `${name}.db`)) : PostgresStore.open({ url: await postgres.createDatabase(`${name.replace(/\W/g, '_')}_${++databases}`) })

const results = new Map<string, number[]>()
const note = (what: string, value: number): void => {
  results.set(what, [...(results.get(what) ?? []), value])
}

try {
  for (let round = 0; round < rounds; round++) {
    for (const engine of round % 2 === 0 ? (['sqlite', 'postgres'] as const) : (['postgres', 'sqlite'] as const)) {
      // (1) queue.add, one durable transaction per event, one after the other.
      const store = await open(engine, `queue-${round}`)
      const queue = storeQueue(store)
      const source = { addr: 'bench:0', instanceID: 'bench' }
      let started = process.hrtime.bigint()
      for (let n = 0; n < count; n++) await queue.add('bench', eventsOf(finished(n), source))
      note(`${engine}: queue.add (events/s)`, count / seconds(started))
      await store.close()

      // (2) Recorded and delivered by instances sharing one store (SQLite: one instance; PostgreSQL: 1 and 3).
      for (const instances of engine === 'sqlite' ? [1] : [1, 3]) {
        const name = `deliver-${round}-${instances}`
        const first = await open(engine, name)
        const stores: StoreEngine[] = [first]
        // The other instances connect to the same database.
        for (let i = 1; i < instances; i++) stores.push(await PostgresStore.open({ url: `${postgres.url.replace(/\/[^/]+$/, '')}/${name.replace(/\W/g, '_')}_${databases}` }))
        const recorders = stores.map(() => new Recorder(quiet, undefined, new RecentPushes(10)))
        const running: Events[] = []
        for (const [i, instanceStore] of stores.entries()) {
          const events = startEvents(eventsSection.parse({ endpoints: [{ name: 'bench', url: receiver.url, timeout: '5s' }] }), { recorder: recorders[i] as Recorder, metrics: undefined, log: quiet, port: () => 0, store: instanceStore })
          if (events) running.push(events)
        }
        const before = receiver.events().length
        started = process.hrtime.bigint()
        for (let n = 0; n < count; n++) (recorders[n % instances] as Recorder).record(finished(n))
        await receiver.waitFor(before + count, 300_000)
        note(`${engine}: record + deliver, ${instances} instance${instances > 1 ? 's' : ''} (events/s)`, count / seconds(started))
        for (const events of running) await events.close()
        for (const instanceStore of stores) await instanceStore.close()
      }

      // (3) Batched writes: pull times, committed one transaction per flush.
      const timesStore = await open(engine, `times-${round}`)
      const times = new PushPullTimes(timesStore)
      await times.ready
      started = process.hrtime.bigint()
      for (let n = 0; n < PULLS; n++) times.pulled('bench/app', `t${n % 500}`, DIGEST)
      await timesStore.commit()
      note(`${engine}: pull times written (writes/s)`, PULLS / seconds(started))
      await timesStore.close()
    }
    console.log(`round ${round + 1}: ${[...results].map(([what, values]) => `${what} ${fmt(values.at(-1) as number)}`).join('; ')}`)
  }
  console.log(`\nmedians of ${rounds} rounds, ${count} events, ${PULLS} pull records:`)
  for (const [what, values] of results) console.log(`  ${what.padEnd(52)} ${fmt(median(values))}   (${values.map((value) => fmt(value)).join(', ')})`)
} finally {
  await receiver.close()
  await postgres.stop()
  await rm(work, { recursive: true, force: true })
}
