// Running upload hashes asked of the worker or instance that holds them, over the shared bus; and a commit at one process of bytes another took in.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { createHash, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import type { Bus } from '../../src/shared/types.js'
import { HASH_TOPIC, openMessage, pidSpace, processGone, runningHashChannel, sealMessage, shareRunningHashes, type RunningHashChannel } from '../../src/storage/hash-exchange.js'
import { StorageUploads, type DigestSource } from '../../src/storage/upload-store.js'
import { loadConfig } from '../../src/app/config.js'
import { fileProblems } from '../../src/app/config-files.js'

/** Buses of several instances joined as the cluster's primary or Redis joins them: a message reaches every other instance, later. */
function buses(count: number): Bus[] {
  const listeners: Array<Map<string, Set<(message: string) => void>>> = []
  return Array.from({ length: count }, (_, index): Bus => {
    const mine = new Map<string, Set<(message: string) => void>>()
    listeners.push(mine)
    return {
      publish(topic, message) {
        setImmediate(() => {
          listeners.forEach((other, at) => {
            if (at !== index) for (const listener of other.get(topic) ?? []) listener(message)
          })
        })
      },
      subscribe(topic, listener) {
        const set = mine.get(topic) ?? new Set()
        set.add(listener)
        mine.set(topic, set)
        return () => set.delete(listener)
      },
      onResync: () => () => undefined,
    }
  })
}

const HEX = 'ab'.repeat(32)

/** The workers' channel (server.workers): IPC between processes of this machine, unsigned. */
const cluster = (bus: Bus): RunningHashChannel => ({ bus, sameMachine: true })
/** Instances on Redis: sealed with a key derived from their routing.secret. */
const redis = (bus: Bus, secret = 'a routing secret every instance shares'): RunningHashChannel => runningHashChannel('redis', bus, () => Buffer.from(secret)) as RunningHashChannel

t.test('the holder answers with the hash it holds at that size, and gives it up; another size or session gets no hash', async (t) => {
  const [a, b] = buses(2) as [Bus, Bus]
  const held = new Map([['/s/1', { size: 10, hex: HEX }]])
  const taken: string[] = []
  const holder = shareRunningHashes(cluster(b), (dir, size) => {
    const entry = held.get(dir)
    if (entry === undefined || entry.size !== size) return undefined
    held.delete(dir)
    taken.push(dir)
    return entry.hex
  })
  const asker = shareRunningHashes(cluster(a), () => undefined)
  t.teardown(() => {
    holder.close()
    asker.close()
  })
  t.not(holder.self, asker.self, 'each process has a name of its own')

  const started = Date.now()
  t.equal(await asker.ask('/s/1', 11, holder.self), undefined, 'another size: no hash')
  t.ok(Date.now() - started < 400, 'and the holder says so at once (no wait for the timeout)')
  t.equal(await asker.ask('/s/1', 10, holder.self), HEX, 'the hash at that size')
  t.same(taken, ['/s/1'], 'given up once told')
  t.equal(await asker.ask('/s/1', 10, holder.self), undefined, 'asked again: gone')
})

t.test('a holder that does not answer (gone) costs the timeout, then the data is read', async (t) => {
  const [a] = buses(2) as [Bus, Bus]
  const asker = shareRunningHashes(cluster(a), () => undefined, 100)
  t.teardown(() => asker.close())
  const started = Date.now()
  t.equal(await asker.ask('/s/1', 10, 'a-worker-that-was-replaced'), undefined)
  t.ok(Date.now() - started >= 90, 'waited for the timeout')
})

t.test('a holder whose process has exited is not asked: the data is read at once, with no wait for the timeout', async (t) => {
  const [a] = buses(2) as [Bus, Bus]
  const asker = shareRunningHashes(cluster(a), () => undefined, 5_000)
  t.teardown(() => asker.close())
  t.match(asker.self, new RegExp(`^${process.pid}-[0-9a-f-]{36}$`), 'a name starts with its pid')
  const exited = spawnSync(process.execPath, ['-e', '']).pid
  t.ok(processGone(`${exited}-${randomUUID()}`), 'an exited pid is gone')
  t.notOk(processGone(asker.self), 'a live one is not')
  t.notOk(processGone('a-name-without-a-pid'), 'a name without a pid is never taken for gone')
  const started = Date.now()
  t.equal(await asker.ask('/s/1', 10, `${exited}-${randomUUID()}`), undefined)
  t.ok(Date.now() - started < 1_000, `answered in ${Date.now() - started} ms, not after the 5 s timeout`)
})

t.test('questions for another holder, answers for another asker and malformed messages are ignored', async (t) => {
  const [a, b, c] = buses(3) as [Bus, Bus, Bus]
  let asked = 0
  const holder = shareRunningHashes(cluster(b), () => {
    asked++
    return HEX
  })
  const bystander = shareRunningHashes(cluster(c), () => {
    asked += 100
    return HEX
  })
  const asker = shareRunningHashes(cluster(a), () => undefined, 200)
  t.teardown(() => {
    holder.close()
    bystander.close()
    asker.close()
  })
  t.equal(await asker.ask('/s/1', 10, holder.self), HEX)
  t.equal(asked, 1, 'only the named holder was asked')
  // Answers to the question itself that are no sha256, and junk: the asker waits for the timeout.
  const forge = c.subscribe(HASH_TOPIC, (text) => {
    const question = JSON.parse(text) as { kind: string; id: string; from: string }
    if (question.kind !== 'ask') return
    c.publish(HASH_TOPIC, 'not json')
    c.publish(HASH_TOPIC, JSON.stringify({ kind: 'answer', id: question.id, to: question.from, hex: '../../etc' }))
    c.publish(HASH_TOPIC, JSON.stringify({ kind: 'answer', id: question.id, to: question.from, hex: HEX.toUpperCase() }))
    c.publish(HASH_TOPIC, JSON.stringify({ kind: 'answer', id: question.id, to: question.from, hex: 42 }))
  })
  t.teardown(forge)
  t.equal(await asker.ask('/s/2', 10, 'nobody'), undefined, 'no answer taken')
})

t.test('the channel per engine: the workers\' IPC in clear, Redis sealed with a key derived from routing.secret, none alone', async (t) => {
  const [bus] = buses(1) as [Bus]
  t.same(runningHashChannel('cluster', bus, () => Buffer.from('x')), { bus, sameMachine: true })
  t.equal(runningHashChannel('local', bus, () => Buffer.from('x')), undefined)
  const sealed = redis(bus)
  t.equal(sealed.sameMachine, false, 'over Redis the holder may be another machine: no pid check')
  t.equal(sealed.key?.length, 32)
  t.not(sealed.key?.toString('hex'), Buffer.from('a routing secret every instance shares').toString('hex'), 'a key of its own, not the secret that signs upload URLs')
  t.not(redis(bus, 'another secret').key?.toString('hex'), sealed.key?.toString('hex'))
  const otherFleet = runningHashChannel('redis', bus, () => Buffer.from('a routing secret every instance shares'), { keyPrefix: 'other:', up: () => true })
  t.not(otherFleet?.key?.toString('hex'), sealed.key?.toString('hex'), 'fleets on one Redis that reuse a secret differ by key_prefix')
})

t.test('sealMessage and openMessage: the text back under the same key; nothing under another key, altered, or not sealed', async (t) => {
  const key = Buffer.alloc(32, 1)
  const text = JSON.stringify({ kind: 'ask', dir: '/var/lib/registry/docker/registry/v2/repositories/team/app/_uploads/x' })
  const sealed = sealMessage(key, text)
  t.match(sealed, /^\{"sealed":"[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+"\}$/)
  t.notMatch(sealed, /team|_uploads|ask/, 'nothing of the text readable')
  t.not(sealMessage(key, text), sealed, 'a fresh nonce every time')
  t.equal(openMessage(key, sealed), text)
  t.equal(openMessage(Buffer.alloc(32, 2), sealed), undefined, 'another key')
  const value = (JSON.parse(sealed) as { sealed: string }).sealed
  const [nonce = '', body = ''] = value.split('.')
  const flip = (b64: string, at: number): string => {
    const bytes = Buffer.from(b64, 'base64url')
    bytes[at] = (bytes[at] ?? 0) ^ 1
    return bytes.toString('base64url')
  }
  const bodyLength = Buffer.from(body, 'base64url').length
  for (const [what, altered] of [
    ['the nonce', `${flip(nonce, 0)}.${body}`],
    ['the ciphertext', `${nonce}.${flip(body, 0)}`],
    ['the tag', `${nonce}.${flip(body, bodyLength - 1)}`],
    ['a tag cut short', `${nonce}.${Buffer.from(body, 'base64url').subarray(0, bodyLength - 4).toString('base64url')}`],
    ['no body', `${nonce}.`],
    ['a third part', `${nonce}.${body}.x`],
    ['a short nonce', `${nonce.slice(0, 8)}.${body}`],
  ] as const) t.equal(openMessage(key, JSON.stringify({ sealed: altered })), undefined, what)
  for (const text of ['not json', 'null', '{}', JSON.stringify({ sealed: 42 }), JSON.stringify({ kind: 'answer', hex: HEX })]) t.equal(openMessage(key, text), undefined, `not sealed: ${text}`)
})

t.test('over Redis: instances with the same secret exchange hashes, sealed; a forged answer, or another secret, gets nothing', async (t) => {
  const [a, b, c] = buses(3) as [Bus, Bus, Bus]
  let taken = 0
  const holder = shareRunningHashes(redis(b), () => {
    taken++
    return HEX
  })
  const asker = shareRunningHashes(redis(a), () => undefined, 200)
  const stranger = shareRunningHashes(redis(c, 'not the fleet\'s secret'), () => undefined, 200)
  t.teardown(() => {
    holder.close()
    asker.close()
    stranger.close()
  })
  const seen: string[] = []
  const unseen = c.subscribe(HASH_TOPIC, (text) => seen.push(text))
  t.teardown(unseen)
  t.equal(await asker.ask('/s/1', 10, holder.self), HEX, 'the same secret: the holder\'s hash')
  t.equal(seen.length, 2, 'a question and its answer')
  t.ok(seen.every((text) => /^\{"sealed":"[A-Za-z0-9_.-]+"\}$/.test(text)), 'both sealed')
  t.notOk(seen.some((text) => text.includes('/s/1') || text.includes(HEX) || text.includes(holder.self) || text.includes(asker.self)), 'neither the session, the hash nor a process name is readable on Redis')
  const strangerAsked = Date.now()
  t.equal(await stranger.ask('/s/1', 10, holder.self), undefined, 'another secret: nothing')
  t.ok(Date.now() - strangerAsked < 150, 'at once: the holder\'s name carries another key id, so it is not asked (it could not read the question)')
  t.equal(taken, 1, 'and gives nothing up')
  t.equal(await stranger.ask('/s/1', 10, `${stranger.self.split('.')[0] ?? ''}.${holder.self.split('.')[1] ?? ''}`), undefined, 'named with the stranger\'s key id, the holder cannot open the question')
  t.equal(taken, 1, 'and gives nothing up for it')

  // Someone who can publish on Redis, and even knows each question's id, answers every question first: in clear, or sealed under a key of their own.
  const fleetKey = redis(a).key as Buffer
  const forge = c.subscribe(HASH_TOPIC, (text) => {
    const opened = openMessage(fleetKey, text)
    const question = opened === undefined ? undefined : JSON.parse(opened) as { kind: string; id: string; from: string; dir: string; size: number }
    if (question?.kind !== 'ask') return
    const forged = JSON.stringify({ kind: 'answer', id: question.id, to: question.from, dir: question.dir, size: question.size, hex: 'cd'.repeat(32) })
    c.publish(HASH_TOPIC, forged)
    c.publish(HASH_TOPIC, sealMessage(Buffer.alloc(32, 7), forged))
    c.publish(HASH_TOPIC, JSON.stringify({ sealed: 'AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }))
  })
  t.teardown(forge)
  t.equal(await asker.ask('/s/2', 10, 'a-holder-that-is-gone'), undefined, 'forged answers are ignored: the commit reads the data')
  t.equal(await asker.ask('/s/1', 10, holder.self), HEX, 'the genuine answer still gets through beside the forgeries')
})

t.test('a sealed question or answer altered, replayed, or answering another question is ignored', async (t) => {
  const [a, b, c] = buses(3) as [Bus, Bus, Bus]
  const held = new Map([['/s/1', HEX], ['/s/2', HEX]])
  let taken: string[] = []
  const holder = shareRunningHashes(redis(b), (dir) => {
    const hex = held.get(dir)
    if (hex !== undefined) taken.push(dir)
    return hex
  })
  const asker = shareRunningHashes(redis(a), () => undefined, 150)
  t.teardown(() => {
    holder.close()
    asker.close()
  })
  const key = redis(c).key as Buffer
  const genuine: string[] = []
  const recording = c.subscribe(HASH_TOPIC, (text) => genuine.push(text))
  t.equal(await asker.ask('/s/1', 10, holder.self), HEX)
  recording()
  const [question, answer] = genuine as [string, string]
  t.equal((JSON.parse(openMessage(key, question) ?? '{}') as { kind?: string }).kind, 'ask', 'the question seen on the bus')
  // The genuine question with one character of its sealed text changed: the holder gives nothing up.
  taken = []
  const sealedText = (JSON.parse(question) as { sealed: string }).sealed
  for (const at of [0, 20, sealedText.length - 2]) {
    const altered = sealedText.slice(0, at) + (sealedText[at] === 'A' ? 'B' : 'A') + sealedText.slice(at + 1)
    c.publish(HASH_TOPIC, JSON.stringify({ sealed: altered }))
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(taken, [], 'no altered question was answered')
  // The genuine question published again, as whoever reads Redis could: not answered a second time.
  const after: string[] = []
  const replies = c.subscribe(HASH_TOPIC, (text) => after.push(text))
  c.publish(HASH_TOPIC, question)
  await new Promise((resolve) => setTimeout(resolve, 50))
  replies()
  t.same(taken, [], 'a replayed question takes nothing')
  t.same(after, [], 'and is not answered')

  // Answers to a pending question for /s/3 at 10 bytes: the genuine old answer replayed, and answers sealed with the
  // right key (an instance of the fleet) for another session, another size or another asker: none is taken.
  // Asked of a process of the fleet that does not exist, so that only these answers come.
  const nobody = `${holder.self.split('.')[0] ?? ''}.1-${randomUUID()}`
  /** The question for `dir` as it crosses the bus, opened with the fleet's key. */
  const questionFor = (dir: string): Promise<{ id: string; from: string }> =>
    new Promise((resolve) => {
      const off = c.subscribe(HASH_TOPIC, (text) => {
        const message = JSON.parse(openMessage(key, text) ?? '{}') as { kind?: string; dir?: string; id: string; from: string }
        if (message.kind === 'ask' && message.dir === dir) {
          off()
          resolve(message)
        }
      })
    })
  const asked = questionFor('/s/3')
  const pending = asker.ask('/s/3', 10, nobody)
  const next = await asked
  const reply = (fields: Record<string, unknown>): void => c.publish(HASH_TOPIC, sealMessage(key, JSON.stringify({ kind: 'answer', id: next.id, to: next.from, dir: '/s/3', size: 10, hex: 'cd'.repeat(32), ...fields })))
  c.publish(HASH_TOPIC, answer)
  reply({ dir: '/s/4' })
  reply({ size: 11 })
  reply({ to: 'someone-else' })
  t.equal(await pending, undefined, 'no answer but one to the question asked is taken')

  // The same, with the answer that does fit: taken (the ignoring above is for the reasons named).
  const askedFifth = questionFor('/s/5')
  const fitting = asker.ask('/s/5', 10, nobody)
  const fifth = await askedFifth
  c.publish(HASH_TOPIC, sealMessage(key, JSON.stringify({ kind: 'answer', id: fifth.id, to: fifth.from, dir: '/s/5', size: 10, hex: 'ef'.repeat(32) })))
  t.equal(await fitting, 'ef'.repeat(32), 'an answer sealed with the fleet\'s key, to this question, is taken')
})

t.test('while the bus is down nobody is asked: the data is read at once', async (t) => {
  const [a, b] = buses(2) as [Bus, Bus]
  let up = false
  const channel = runningHashChannel('redis', a, () => Buffer.from('s'), { keyPrefix: '', up: () => up }) as RunningHashChannel
  const asker = shareRunningHashes(channel, () => undefined, 5_000)
  t.teardown(() => asker.close())
  const seen: string[] = []
  t.teardown(b.subscribe(HASH_TOPIC, (text) => seen.push(text)))
  const started = Date.now()
  t.equal(await asker.ask('/s/1', 10, asker.self), undefined)
  t.ok(Date.now() - started < 500, 'no wait for the timeout')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(seen, [], 'nothing published')
  up = true
})

t.test('over Redis a holder\'s pid is checked only when its name says it shares this pid space', async (t) => {
  const [a, b] = buses(2) as [Bus, Bus]
  const asker = shareRunningHashes(redis(a), () => undefined, 100)
  t.teardown(() => asker.close())
  const questions: string[] = []
  const listening = b.subscribe(HASH_TOPIC, (text) => questions.push(text))
  t.teardown(listening)
  const exited = spawnSync(process.execPath, ['-e', '']).pid
  const space = pidSpace()
  t.match(space, /^[0-9a-f]{12}$/, 'this Linux names its pid space (boot id and pid namespace)')
  t.equal(asker.self, `${asker.self.split('.')[0] ?? ''}.${process.pid}-${asker.self.split('.')[1]?.split('-').slice(1).join('-') ?? ''}.${space ?? ''}`, 'a name on a sealed channel: key id, pid, uuid, pid space')
  t.match(asker.self, /^[0-9a-f]{12}\.\d+-[0-9a-f-]{36}\.[0-9a-f]{12}$/)
  const keyId = asker.self.split('.')[0] ?? ''
  t.equal(await asker.ask('/s/1', 10, `${keyId}.${exited}-${randomUUID()}`), undefined)
  t.equal(questions.length, 1, 'a name without a pid space: the question was sent (and timed out)')
  t.equal(await asker.ask('/s/1', 10, `${keyId}.${exited}-${randomUUID()}.${'0'.repeat(12)}`), undefined)
  t.equal(questions.length, 2, 'another pid space (another machine or container): sent, whatever its pid')
  const started = Date.now()
  t.equal(await asker.ask('/s/1', 10, `${keyId}.${exited}-${randomUUID()}.${space ?? ''}`), undefined)
  t.ok(Date.now() - started < 90, 'this pid space and an exited pid: answered at once (a replaced worker of this instance)')
  t.equal(questions.length, 2, 'and nothing sent')
})

t.test('a commit at one process of bytes another took in: the sha256 comes from that process, not from reading the data', async (t) => {
  const storage = mkdtempSync(join(tmpdir(), 'portier-hash-exchange-'))
  t.teardown(() => rmSync(storage, { recursive: true, force: true }))
  const [a, b] = buses(2) as [Bus, Bus]
  const sources: Array<[string, DigestSource]> = []
  const joined = (bus: Bus, name: string): StorageUploads => {
    const uploads: StorageUploads = new StorageUploads({
      peers: shareRunningHashes(cluster(bus), (dir, size) => uploads.takeRunning(dir, size)),
      digested: (source) => sources.push([name, source]),
    })
    return uploads
  }
  const first = joined(a, 'first')
  const second = joined(b, 'second')
  const nothing = (): void => undefined

  // POST and PATCH at the first, PUT at the second: as skopeo's new connections land on two workers.
  const bytes = Buffer.alloc(3 * 1024 * 1024 + 5, 7)
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
  const place = await first.create(storage, 'team/app')
  t.equal(await first.append(place, 0, Readable.from([bytes]), nothing), bytes.length)
  t.same(await second.commit(place, digest), { kind: 'committed', size: bytes.length })
  t.same(sources, [['second', 'peer']], "the sha256 was the first process's running hash")

  // A wrong digest is still found wrong from the peer's hash.
  const other = await first.create(storage, 'team/app')
  await first.append(other, 0, Readable.from([bytes]), nothing)
  t.match(await second.commit(other, `sha256:${'0'.repeat(64)}`), { kind: 'mismatch', actual: digest })

  // Chunks at both: the second has no running hash for the second chunk, and the hasher file still
  // names the first at the first chunk's size. A third process that commits does not ask for it.
  sources.length = 0
  const [c] = buses(1) as [Bus]
  const third = joined(c, 'third')
  const split = await first.create(storage, 'team/app')
  await first.append(split, 0, Readable.from([bytes.subarray(0, 1000)]), nothing)
  await second.append(split, 1000, Readable.from([bytes.subarray(1000)]), nothing)
  t.same(await third.commit(split, digest), { kind: 'committed', size: bytes.length })
  t.same(sources, [['third', 'read']], 'nobody holds a hash of the whole: the data is read again')

  // The process that took every byte in commits from its own hash.
  sources.length = 0
  const own = await second.create(storage, 'team/app')
  await second.append(own, 0, Readable.from([bytes]), nothing)
  t.same(await second.commit(own, digest), { kind: 'committed', size: bytes.length })
  t.same(sources, [['second', 'running']])
})

t.test('a hash a write is feeding is not given away: asked mid-PATCH, the holder has nothing to tell', async (t) => {
  const storage = mkdtempSync(join(tmpdir(), 'portier-hash-exchange-'))
  t.teardown(() => rmSync(storage, { recursive: true, force: true }))
  const uploads = new StorageUploads()
  const place = await uploads.create(storage, 'team/app')
  const first = Buffer.alloc(1000, 1)
  await uploads.append(place, 0, Readable.from([first]), () => undefined)
  const rest = Buffer.alloc(2 * 1024 * 1024, 2)
  let asked: string | undefined = 'not asked'
  let sent = 0
  const body = new Readable({
    read() {
      if (sent === rest.length) return void this.push(null)
      setImmediate(() => {
        if (sent === 1024 * 1024) asked = uploads.takeRunning(place.dir, first.length)
        this.push(rest.subarray(sent, sent + 256 * 1024))
        sent += 256 * 1024
      })
    },
  })
  t.equal(await uploads.append(place, first.length, body, () => undefined), rest.length, 'the PATCH went through')
  t.equal(asked, undefined, 'asked at the size before the PATCH, while it ran: nothing')
  const whole = Buffer.concat([first, rest])
  t.equal(uploads.takeRunning(place.dir, whole.length), createHash('sha256').update(whole).digest('hex'), 'after it: the hash of every byte')
})

t.test('check-config reads routing.secret_file when instances on Redis take uploads into storage (it signs their running hashes), not otherwise', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-hash-secret-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const short = join(dir, 'secret')
  writeFileSync(short, 'too short\n')
  const problemsFor = async (yaml: string): Promise<string[]> => {
    const file = join(dir, 'portier.yaml')
    writeFileSync(file, `${yaml}routing: { secret_file: ${JSON.stringify(short)} }\n`)
    const { config } = loadConfig({ file, env: {} })
    return (await fileProblems(config, file)).filter((problem) => problem.key === 'routing.secret_file').map((problem) => problem.expected)
  }
  const storage = `upstreams: [{ url: "http://127.0.0.1:5000", storage: ${JSON.stringify(dir)}, storage_uploads: true }]\n`
  t.match(await problemsFor(`${storage}shared: { redis: { url: "redis://127.0.0.1:6379" } }\n`), [/at least 32 characters/], 'Redis and uploads into storage: the short key is a problem')
  t.same(await problemsFor(storage), [], 'without Redis it is not used')
  t.same(await problemsFor(`upstreams: [{ url: "http://127.0.0.1:5000" }]\nshared: { redis: { url: "redis://127.0.0.1:6379" } }\n`), [], 'nor without uploads into storage')
})
