// The shared state of server.workers: the primary process holds it (SharedHost), each worker reaches it over
// the cluster's IPC channel (createIpcShared). Same semantics as the Redis engine, for processes of one machine.
import { randomBytes } from 'node:crypto'
import { RevocationCopy, takeFromBucket } from './local.js'
import { BoundedCache } from '../lib/bounded-cache.js'
import type { RateRule } from './types.js'
import type { Bus, CounterRule, Counters, Locks, Revocations, SharedState, SharedStatus, SharedValues } from './types.js'
import { renewedLock } from './renewed-lock.js'
import { isRecord } from '../lib/is-record.js'

/** Marks this module's messages among the others on the channel (metrics, lifecycle). */
export const SHARED_TAG = 'portier:shared'

/** One end of an IPC channel: a worker's `process`, or the primary's `Worker`. */
export interface IpcChannel {
  send(message: SharedMessage): void
  onMessage(listener: (message: unknown) => void): () => void
}

type Request =
  | { op: 'hello' }
  | { op: 'hit'; key: string; rule: CounterRule }
  | { op: 'take'; key: string; rule: RateRule }
  | { op: 'revoke'; kind: string; revoked: string; until: number }
  | { op: 'set'; name: string; value: string }
  | { op: 'lock'; name: string; ttl: number }
  | { op: 'renew'; name: string; token: string; ttl: number }
  | { op: 'unlock'; name: string; token: string }
  | { op: 'turn'; name: string; turn: number }

/** What goes over the channel, both ways. */
export type SharedMessage =
  | ({ tag: typeof SHARED_TAG; id: number } & Request)
  | { tag: typeof SHARED_TAG; op: 'publish'; topic: string; message: string }
  | { tag: typeof SHARED_TAG; op: 'resets'; keys: string[] }
  | { tag: typeof SHARED_TAG; op: 'reply'; id: number; value: unknown }
  | { tag: typeof SHARED_TAG; op: 'revoked'; kind: string; revoked: string; until: number }
  | { tag: typeof SHARED_TAG; op: 'value'; name: string; value: string }
  | { tag: typeof SHARED_TAG; op: 'message'; topic: string; message: string }
  | { tag: typeof SHARED_TAG; op: 'locked'; key: string; until: number }

interface Snapshot {
  revocations: Array<[string, string, number]>
  values: Array<[string, string]>
  lockouts: Array<[string, number]>
}

function isShared(message: unknown): message is SharedMessage {
  return isRecord(message) && message.tag === SHARED_TAG && typeof message.op === 'string'
}

interface Counted {
  count: number
  windowEnds: number
}

/**
 * The state in the primary: counters and their locks, revocations, values and locks, with every attached
 * worker told of revocations, values and bus messages from the others. A detached worker's locks are freed.
 */
export class SharedHost {
  private readonly workers = new Map<string, IpcChannel>()
  private readonly counts = new Map<string, Counted>()
  private readonly lockouts = new Map<string, number>()
  /** Rate-limit buckets (GCRA theoretical arrival times); the least recently used go first when full. */
  private readonly buckets = new BoundedCache<string, number>({ max: 100_000 })
  private readonly revocations = new Map<string, [string, string, number]>()
  private readonly values = new Map<string, string>()
  private readonly locks = new Map<string, { holder: string; token: string; until: number }>()
  /** The last turn claimed per scheduled job (Locks.claimTurn). */
  private readonly turns = new Map<string, number>()
  private nextPrune = 0

  constructor(private readonly now: () => number = Date.now) {}

  /** Serves `channel` as worker `name`; the returned function detaches it (the worker exited). */
  attach(name: string, channel: IpcChannel): () => void {
    this.workers.set(name, channel)
    const stop = channel.onMessage((message) => {
      if (isShared(message)) this.handle(name, channel, message)
    })
    return () => {
      stop()
      if (this.workers.get(name) === channel) this.workers.delete(name)
      for (const [lock, held] of this.locks) if (held.holder === name) this.locks.delete(lock)
    }
  }

  private handle(from: string, channel: IpcChannel, message: SharedMessage): void {
    if (message.op === 'publish') {
      this.broadcast(from, { tag: SHARED_TAG, op: 'message', topic: message.topic, message: message.message })
      return
    }
    if (message.op === 'resets') {
      for (const key of message.keys) this.counts.delete(key)
      return
    }
    if (!('id' in message) || message.op === 'reply') return
    const reply = (value: unknown): void => channel.send({ tag: SHARED_TAG, op: 'reply', id: message.id, value })
    const now = this.now()
    this.prune(now)
    switch (message.op) {
      case 'hello': {
        const snapshot: Snapshot = { revocations: [...this.revocations.values()], values: [...this.values], lockouts: [...this.lockouts] }
        reply(snapshot)
        return
      }
      case 'hit': {
        const wasLocked = (this.lockouts.get(message.key) ?? 0) > now
        const locked = this.hit(message.key, message.rule, now)
        reply(locked)
        // Every worker answers lockedFor from its own copy: a new lock is told to all at once.
        if (locked > 0 && !wasLocked) this.broadcast(undefined, { tag: SHARED_TAG, op: 'locked', key: message.key, until: now + locked })
        return
      }
      case 'take': {
        // A request of any worker counts in the one bucket here, as in Redis.
        const taken = takeFromBucket(this.buckets.get(message.key), now, message.rule)
        if (taken.waitMs === 0) this.buckets.set(message.key, taken.tat)
        reply(taken.waitMs)
        return
      }
      case 'revoke': {
        const key = `${message.kind}\n${message.revoked}`
        const until = Math.max(message.until, this.revocations.get(key)?.[2] ?? 0)
        this.revocations.set(key, [message.kind, message.revoked, until])
        this.broadcast(from, { tag: SHARED_TAG, op: 'revoked', kind: message.kind, revoked: message.revoked, until })
        reply(null)
        return
      }
      case 'set':
        this.values.set(message.name, message.value)
        this.broadcast(from, { tag: SHARED_TAG, op: 'value', name: message.name, value: message.value })
        reply(null)
        return
      case 'lock': {
        const held = this.locks.get(message.name)
        if (held && held.until > now) {
          reply(null)
          return
        }
        const token = randomBytes(8).toString('hex')
        this.locks.set(message.name, { holder: from, token, until: now + Math.max(1, message.ttl) })
        reply(token)
        return
      }
      case 'renew': {
        const held = this.locks.get(message.name)
        if (held?.token === message.token) held.until = now + Math.max(1, message.ttl)
        reply(held?.token === message.token)
        return
      }
      case 'unlock': {
        if (this.locks.get(message.name)?.token === message.token) this.locks.delete(message.name)
        reply(null)
        return
      }
      case 'turn': {
        // As the Redis engine's script: the first claim of a turn, or of a later one, wins.
        const claimed = (this.turns.get(message.name) ?? -1) < message.turn
        if (claimed) this.turns.set(message.name, message.turn)
        reply(claimed)
        return
      }
    }
  }

  /** As the Redis engine's script: a locked key is not counted; past the limit the key is locked and its count forgotten. */
  private hit(key: string, rule: CounterRule, now: number): number {
    const locked = (this.lockouts.get(key) ?? 0) - now
    if (locked > 0) return locked
    let counted = this.counts.get(key)
    if (!counted || counted.windowEnds <= now) {
      counted = { count: 0, windowEnds: now + Math.max(1, rule.windowMs) }
      this.counts.set(key, counted)
    }
    counted.count++
    if (counted.count > rule.limit) {
      const lockMs = Math.max(1, rule.lockMs)
      this.lockouts.set(key, now + lockMs)
      this.counts.delete(key)
      return lockMs
    }
    return 0
  }

  private broadcast(from: string | undefined, message: SharedMessage): void {
    for (const [name, channel] of this.workers) if (name !== from) channel.send(message)
  }

  /** Ended windows, locks and revocations go at most once a second. */
  private prune(now: number): void {
    if (now < this.nextPrune) return
    this.nextPrune = now + 1000
    for (const [key, counted] of this.counts) if (counted.windowEnds <= now) this.counts.delete(key)
    for (const [key, until] of this.lockouts) if (until <= now) this.lockouts.delete(key)
    for (const [key, entry] of this.revocations) if (entry[2] <= now) this.revocations.delete(key)
    for (const [key, held] of this.locks) if (held.until <= now) this.locks.delete(key)
  }
}

const RESET_BATCH_MS = 50

export interface IpcSharedOptions {
  /** How long a request may wait for the primary's answer before it rejects (counters, locks). */
  timeoutMs?: number
}

/** A worker's shared state: requests to the primary, and the copies (revocations, values) it keeps current here. */
export function createIpcShared(channel: IpcChannel, options: IpcSharedOptions = {}): SharedState {
  const timeoutMs = options.timeoutMs ?? 2000
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: NodeJS.Timeout }>()
  let nextId = 1
  let closed = false
  const copy = new RevocationCopy()
  /** Locked keys until when, as the primary told them: lockedFor (asked on every login) needs no round trip. */
  const lockouts = new Map<string, number>()
  let nextPrune = 0
  const lockedUntil = (key: string, until: number): void => {
    const now = Date.now()
    if (now >= nextPrune) {
      nextPrune = now + 1000
      for (const [entry, ends] of lockouts) if (ends <= now) lockouts.delete(entry)
    }
    lockouts.set(key, Math.max(until, lockouts.get(key) ?? 0))
  }
  const known = new Map<string, string>()
  /** Values the primary held when this worker started: told to watchers that come later too. */
  const stored = new Map<string, string>()
  const watchers = new Map<string, Set<(value: string) => void>>()
  const subscribers = new Map<string, Set<(message: string) => void>>()

  const request = (body: Request): Promise<unknown> => {
    if (closed) return Promise.reject(new Error('shared state closed'))
    const id = nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id)
        reject(new Error(`the primary process did not answer within ${timeoutMs} ms`))
      }, timeoutMs)
      timer.unref()
      pending.set(id, { resolve, reject, timer })
      try {
        channel.send({ tag: SHARED_TAG, id, ...body })
      } catch (error) {
        clearTimeout(timer)
        pending.delete(id)
        reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
  }

  const tell = <T>(listeners: Set<(value: T) => void> | undefined, value: T): void => {
    for (const listener of listeners ?? []) {
      try {
        listener(value)
      } catch {
        // A listener's failure is its own; the others are still told.
      }
    }
  }

  const stop = channel.onMessage((message) => {
    if (!isShared(message)) return
    switch (message.op) {
      case 'reply': {
        const waiting = pending.get(message.id)
        if (!waiting) return
        pending.delete(message.id)
        clearTimeout(waiting.timer)
        waiting.resolve(message.value)
        return
      }
      case 'revoked':
        copy.add(message.kind, message.revoked, message.until)
        return
      case 'value':
        stored.delete(message.name)
        known.set(message.name, message.value)
        tell(watchers.get(message.name), message.value)
        return
      case 'message':
        tell(subscribers.get(message.topic), message.message)
        return
      case 'locked':
        lockedUntil(message.key, message.until)
        return
      default:
        return
    }
  })

  // The state the primary holds from before this worker started (a restarted worker finds maintenance on).
  const hello = request({ op: 'hello' }).then((value) => {
    const snapshot = value as Snapshot
    for (const [kind, id, until] of snapshot.revocations) copy.add(kind, id, until)
    for (const [key, until] of snapshot.lockouts) lockedUntil(key, until)
    for (const [name, text] of snapshot.values) {
      if (known.has(name)) continue
      known.set(name, text)
      stored.set(name, text)
      tell(watchers.get(name), text)
    }
  })
  hello.catch(() => undefined)

  // Every successful login forgets its count: sent in batches (one message per RESET_BATCH_MS however
  // many logins), and always before a hit, so a failure is never forgotten by a reset made before it.
  const resets = new Set<string>()
  let resetTimer: NodeJS.Timeout | undefined
  const flushResets = (): void => {
    clearTimeout(resetTimer)
    resetTimer = undefined
    if (resets.size === 0 || closed) return
    const keys = [...resets]
    resets.clear()
    try {
      channel.send({ tag: SHARED_TAG, op: 'resets', keys })
    } catch {
      // The primary is gone, and this worker with it.
    }
  }
  const counters: Counters = {
    hit: async (key, rule) => {
      flushResets()
      const locked = Number(await request({ op: 'hit', key, rule }))
      if (locked > 0) lockedUntil(key, Date.now() + locked)
      return locked
    },
    // From this worker's copy of the locks (the primary tells every worker of a new one, and a starting
    // worker of those in force): no round trip on the requests that check it.
    lockedFor: (keys) => {
      const now = Date.now()
      return Promise.resolve(Math.max(0, ...keys.map((key) => (lockouts.get(key) ?? 0) - now)))
    },
    // Rate limits: one round trip to the primary per counted request, so the workers share each bucket.
    take: async (key, rule) => Number(await request({ op: 'take', key, rule })),
    reset: (key) => {
      resets.add(key)
      resetTimer ??= setTimeout(flushResets, RESET_BATCH_MS)
      resetTimer.unref()
      return Promise.resolve()
    },
  }
  const revocations: Revocations = {
    revoke: async (kind, id, untilMs) => {
      copy.add(kind, id, untilMs)
      await request({ op: 'revoke', kind, revoked: id, until: untilMs }).catch(() => undefined)
    },
    isRevoked: (kind, id, now) => copy.has(kind, id, now),
  }
  const bus: Bus = {
    publish: (topic, message) => {
      if (closed) return
      try {
        channel.send({ tag: SHARED_TAG, op: 'publish', topic, message })
      } catch {
        // Fire and forget: the primary is gone, and this worker with it.
      }
    },
    subscribe: (topic, listener) => {
      const set = subscribers.get(topic) ?? new Set()
      subscribers.set(topic, set)
      set.add(listener)
      return () => set.delete(listener)
    },
    // The primary never loses a message while it runs; when it stops, the workers stop too.
    onResync: () => () => undefined,
  }
  const values: SharedValues = {
    set: async (name, value) => {
      stored.delete(name)
      known.set(name, value)
      await request({ op: 'set', name, value }).catch(() => undefined)
    },
    watch: (name, listener) => {
      const set = watchers.get(name) ?? new Set()
      watchers.set(name, set)
      set.add(listener)
      const text = stored.get(name)
      if (text !== undefined && known.get(name) === text) queueMicrotask(() => tell(new Set([listener]), text))
      return () => set.delete(listener)
    },
  }
  const locks: Locks = {
    tryAcquire: async (name, ttlMs) => {
      const token = await request({ op: 'lock', name, ttl: ttlMs })
      if (typeof token !== 'string') return undefined
      return renewedLock(
        ttlMs,
        () => void request({ op: 'renew', name, token, ttl: ttlMs }).catch(() => undefined),
        () => request({ op: 'unlock', name, token }).then(() => undefined, () => undefined),
      )
    },
    claimTurn: async (name, turn) => (await request({ op: 'turn', name, turn })) === true,
  }
  const status: SharedStatus = { engine: 'cluster', up: true, since: new Date().toISOString() }
  return {
    engine: 'cluster',
    counters,
    revocations,
    bus,
    values,
    locks,
    status: () => ({ ...status }),
    connected: () => hello.then(() => true, () => false),
    onStatus: () => () => undefined,
    close: () => {
      flushResets()
      closed = true
      stop()
      for (const [, waiting] of pending) {
        clearTimeout(waiting.timer)
        waiting.reject(new Error('shared state closed'))
      }
      pending.clear()
      return Promise.resolve()
    },
  }
}
