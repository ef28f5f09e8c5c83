// The shared state in Redis or Valkey: counters, revocations, values and locks as keys, messages on one pub/sub channel; fails safe while it is unreachable.
import { createHash, randomBytes } from 'node:crypto'
import { createClient } from '@redis/client'
import type { Logger } from '../observe/log.js'
import { RevocationCopy } from './local.js'
import type { Bus, Counters, Locks, Revocations, SharedState, SharedStatus, SharedValues } from './types.js'
import { renewedLock } from './renewed-lock.js'

export interface RedisSharedOptions {
  url: string
  username: string
  /** Empty: none (or the one in the URL). */
  password: string
  /** PEM CA certificates for rediss://; undefined: the system roots. */
  ca: string | undefined
  keyPrefix: string
  connectTimeoutMs: number
  commandTimeoutMs: number
  staleAfterMs: number
  log: Logger
  /** Milliseconds since the epoch; tests pass their own clock. */
  now?: () => number
}

type Client = ReturnType<typeof createClient>

/** Reconnection waits grow from 50 ms to this, so a restarted Redis is found within about two seconds. */
const MAX_RECONNECT_WAIT_MS = 2000
const REVOKED_TOPIC = 'shared.revoked'
const VALUE_TOPIC = 'shared.value'

/**
 * Counts one failure unless the key is locked; past the limit, sets the lock and forgets the count.
 * KEYS: count, lock. ARGV: limit, window ms, lock ms. Returns the lock's remaining ms (0: not locked).
 */
const HIT_SCRIPT = `
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return locked end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0`

/**
 * Takes one request from a token bucket (GCRA, the arithmetic of takeFromBucket in local.ts) on Redis's
 * own clock, so instances whose clocks differ still agree. KEYS: bucket. ARGV: interval µs, tolerance µs
 * ((burst - 1) intervals). Returns 0 when taken, else the milliseconds until a request would go through.
 */
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now - tonumber(ARGV[2])
if ahead > 0 then return math.ceil(ahead / 1000) end
tat = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 0`

const takeSha = createHash('sha1').update(TAKE_SCRIPT).digest('hex')

/** Deletes (ARGV[2] = "del") or extends (ARGV[2] = ms) a lock only while it still holds our token. */
const OWNED_LOCK_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'del' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])`

/** Stores ARGV[1] in KEYS[1] when it is greater than what is there: 1 when it was, 0 when not. */
const CLAIM_TURN_SCRIPT = `
local last = tonumber(redis.call('GET', KEYS[1]) or '-1')
if last >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1`

export function createRedisShared(options: RedisSharedOptions): SharedState {
  const { log, keyPrefix: prefix } = options
  const now = options.now ?? Date.now
  const instance = randomBytes(8).toString('hex')
  const channel = `${prefix}bus`
  const revokedKey = `${prefix}revoked`
  const valueKey = (name: string): string => `${prefix}value:${name}`

  const client: Client = createClient({
    url: options.url,
    ...(options.username !== '' ? { username: options.username } : {}),
    ...(options.password !== '' ? { password: options.password } : {}),
    socket: {
      connectTimeout: options.connectTimeoutMs,
      // Never give up: the gateway serves from its local fallbacks meanwhile.
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** Math.min(retries, 10), MAX_RECONNECT_WAIT_MS),
      ...(options.url.startsWith('rediss://') ? { tls: true as const, ...(options.ca !== undefined ? { ca: options.ca } : {}) } : {}),
    },
    // A command is refused at once while disconnected, and given up after the timeout: requests never wait on Redis.
    disableOfflineQueue: true,
    commandOptions: { timeout: options.commandTimeoutMs, rejectInFlight: true },
  })
  const subscriber: Client = client.duplicate()

  // --- up and down, told once per transition ---
  let commandReady = false
  let subscriberReady = false
  let subscribed = false
  let closed = false
  const state: SharedStatus = { engine: 'redis', up: false, since: new Date(now()).toISOString() }
  let downSince = now()
  const statusListeners = new Set<(status: SharedStatus) => void>()
  const update = (error?: unknown): void => {
    if (error !== undefined) state.error = describe(error)
    const up = commandReady && subscriberReady && subscribed
    if (up === state.up || closed) return
    state.up = up
    state.since = new Date(now()).toISOString()
    if (up) {
      delete state.error
      delete state.fallback
      log.info({ url: redacted(options.url) }, 'shared state: Redis is reachable; throttle, rate limits, revocations, maintenance and cache invalidation are shared')
    } else {
      downSince = now()
      state.fallback = 'local throttle counters; rate limits counted by each instance alone (fail open to per-instance limits); revocations seen here (for shared.redis.stale_after, then UI sessions are refused); last known maintenance state; caches expire by their TTL'
      log.error({ url: redacted(options.url), err: state.error }, 'shared state: Redis is unreachable; instances fall back to local state until it is back')
    }
    for (const listener of [...statusListeners]) listener({ ...state })
  }
  const watchClient = (which: Client, ready: (value: boolean) => void): void => {
    which.on('ready', () => {
      ready(true)
      update()
    })
    which.on('end', () => {
      ready(false)
      update()
    })
    which.on('reconnecting', () => {
      ready(false)
      update()
    })
    // Without a listener an 'error' event would end the process; the state carries it instead.
    which.on('error', (error: unknown) => {
      ready(which.isReady)
      update(error)
    })
  }
  watchClient(client, (value) => (commandReady = value))
  watchClient(subscriber, (value) => {
    subscriberReady = value
    // Resubscribed after a reconnect: messages sent meanwhile are lost, so everything they would have told is read again.
    if (value && subscribed) resync().catch(failed)
  })

  /** A command failed (timeout, refused while disconnected): the caller falls back; the error is kept for /readyz. */
  const failed = (error: unknown): void => {
    state.error = describe(error)
  }

  // --- messages ---
  const topics = new Map<string, Set<(message: string) => void>>()
  const resyncListeners = new Set<() => void>()
  const onMessage = (raw: string): void => {
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch {
      return
    }
    const { f, t, m } = parsed as { f?: unknown; t?: unknown; m?: unknown }
    if (f === instance || typeof t !== 'string' || typeof m !== 'string') return
    for (const listener of [...(topics.get(t) ?? [])]) {
      try {
        listener(m)
      } catch (error) {
        log.error({ topic: t, err: error instanceof Error ? error.message : String(error) }, 'shared state: a message listener failed')
      }
    }
  }
  const send = (topic: string, message: string): Promise<unknown> => client.sendCommand(['PUBLISH', channel, JSON.stringify({ f: instance, t: topic, m: message })])
  const bus: Bus = {
    publish(topic, message) {
      if (!state.up) return
      send(topic, message).catch(failed)
    },
    subscribe(topic, listener) {
      let set = topics.get(topic)
      if (!set) topics.set(topic, (set = new Set()))
      set.add(listener)
      return () => set.delete(listener)
    },
    onResync(listener) {
      resyncListeners.add(listener)
      return () => resyncListeners.delete(listener)
    },
  }

  // --- revocations: a sorted set (score: until) for instances that (re)connect, a message for those connected ---
  const copy = new RevocationCopy()
  bus.subscribe(REVOKED_TOPIC, (message) => {
    const { k, i, u } = JSON.parse(message) as { k: string; i: string; u: number }
    copy.add(k, i, u, now())
  })
  const revocations: Revocations = {
    async revoke(kind, id, untilMs) {
      const at = now()
      copy.add(kind, id, untilMs, at)
      if (!state.up) return
      try {
        await Promise.all([
          client.sendCommand(['ZADD', revokedKey, String(untilMs), `${kind}\n${id}`]),
          client.sendCommand(['ZREMRANGEBYSCORE', revokedKey, '-inf', String(at)]),
          send(REVOKED_TOPIC, JSON.stringify({ k: kind, i: id, u: untilMs })),
        ])
      } catch (error) {
        failed(error)
      }
    },
    isRevoked(kind, id, at = now()) {
      if (copy.has(kind, id, at)) return true
      return !state.up && at - downSince > options.staleAfterMs
    },
  }

  // --- values ---
  const known = new Map<string, string>()
  const valueListeners = new Map<string, Set<(value: string) => void>>()
  const tell = (name: string, value: string): void => {
    if (known.get(name) === value) return
    known.set(name, value)
    for (const listener of [...(valueListeners.get(name) ?? [])]) listener(value)
  }
  bus.subscribe(VALUE_TOPIC, (message) => {
    const { n, v } = JSON.parse(message) as { n: string; v: string }
    tell(n, v)
  })
  /** Set while the engine was unreachable: stored when it is back, before the stored values are read. */
  const unsent = new Map<string, string>()
  const values: SharedValues = {
    async set(name, value) {
      known.set(name, value)
      if (!state.up) {
        unsent.set(name, value)
        return
      }
      try {
        await Promise.all([client.sendCommand(['SET', valueKey(name), value]), send(VALUE_TOPIC, JSON.stringify({ n: name, v: value }))])
      } catch (error) {
        unsent.set(name, value)
        failed(error)
      }
    },
    watch(name, listener) {
      let set = valueListeners.get(name)
      if (!set) valueListeners.set(name, (set = new Set()))
      set.add(listener)
      // Known already: told at once; else read now (resyncs read every watched name again).
      const value = known.get(name)
      if (value !== undefined) listener(value)
      else if (state.up) {
        client
          .sendCommand<string | null>(['GET', valueKey(name)])
          .then((stored) => {
            if (stored !== null) tell(name, String(stored))
          })
          .catch(failed)
      }
      return () => set.delete(listener)
    },
  }

  /** After (re)subscribing: revocations and values read whole, caches told that messages may have been missed. */
  const resync = async (): Promise<void> => {
    try {
      for (const [name, value] of [...unsent]) {
        await Promise.all([client.sendCommand(['SET', valueKey(name), value]), send(VALUE_TOPIC, JSON.stringify({ n: name, v: value }))])
        unsent.delete(name)
      }
      const at = now()
      // RESP3 answers [member, score] pairs; RESP2 a flat list.
      const reply = await client.sendCommand<unknown[]>(['ZRANGE', revokedKey, String(at), '+inf', 'BYSCORE', 'WITHSCORES'])
      const flat = reply.flat()
      for (let index = 0; index + 1 < flat.length; index += 2) {
        const member = String(flat[index])
        const split = member.indexOf('\n')
        if (split > 0) copy.add(member.slice(0, split), member.slice(split + 1), Number(flat[index + 1]), at)
      }
      for (const name of new Set([...valueListeners.keys(), ...known.keys()])) {
        const value = await client.sendCommand<string | null>(['GET', valueKey(name)])
        if (value !== null) tell(name, String(value))
      }
    } catch (error) {
      failed(error)
      log.warn({ err: state.error }, 'shared state: could not read revocations and values after connecting; they come with the next messages')
    }
    for (const listener of [...resyncListeners]) {
      try {
        listener()
      } catch (error) {
        log.error({ err: error instanceof Error ? error.message : String(error) }, 'shared state: a resync listener failed')
      }
    }
  }

  // --- counters ---
  const counters: Counters = {
    async hit(key, rule) {
      const reply = await client.sendCommand<number>(['EVAL', HIT_SCRIPT, '2', `${prefix}count:{${key}}`, `${prefix}lock:{${key}}`, String(rule.limit), String(Math.max(1, rule.windowMs)), String(Math.max(1, rule.lockMs))])
      return Math.max(0, Number(reply))
    },
    async lockedFor(keys) {
      const replies = await Promise.all(keys.map((key) => client.sendCommand<number>(['PTTL', `${prefix}lock:{${key}}`])))
      return Math.max(0, ...replies.map(Number))
    },
    async reset(key) {
      await client.sendCommand(['DEL', `${prefix}count:{${key}}`])
    },
    async take(key, rule) {
      const intervalUs = Math.max(1, Math.round(rule.intervalMs * 1000))
      const toleranceUs = (Math.max(1, rule.burst) - 1) * intervalUs
      const reply = await client.sendCommand<number>(['EVALSHA', takeSha, '1', `${prefix}rate:{${key}}`, String(intervalUs), String(toleranceUs)]).catch((error: unknown) => {
        // A restarted Redis has forgotten the script: sent whole once, cached again by it.
        if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
        return client.sendCommand<number>(['EVAL', TAKE_SCRIPT, '1', `${prefix}rate:{${key}}`, String(intervalUs), String(toleranceUs)])
      })
      return Math.max(0, Number(reply))
    },
  }

  // --- locks ---
  const locks: Locks = {
    async tryAcquire(name, ttlMs) {
      const key = `${prefix}lock:${name}`
      const token = `${instance}:${randomBytes(8).toString('hex')}`
      const reply = await client.sendCommand<string | null>(['SET', key, token, 'NX', 'PX', String(ttlMs)])
      if (reply === null) return undefined
      let lostTold = false
      const renew = (): void => {
        client
          .sendCommand<number>(['EVAL', OWNED_LOCK_SCRIPT, '1', key, token, String(ttlMs)])
          .then((renewed) => {
            // Expired (not renewed within its TTL while Redis was away) and maybe taken by another instance: said once.
            if (Number(renewed) === 0 && !lostTold) {
              lostTold = true
              log.error({ lock: name, ttl_ms: ttlMs }, 'shared state: a lock this instance held expired before it was released; another instance may hold it now')
            }
          })
          .catch(failed)
      }
      // Unreleased, it expires after ttlMs.
      return renewedLock(ttlMs, renew, () => client.sendCommand(['EVAL', OWNED_LOCK_SCRIPT, '1', key, token, 'del']).then(() => undefined, failed))
    },
    async claimTurn(name, turn) {
      const reply = await client.sendCommand<number>(['EVAL', CLAIM_TURN_SCRIPT, '1', `${prefix}turn:${name}`, String(Math.trunc(turn))])
      return Number(reply) === 1
    },
  }

  // --- connecting: in the background; start-up waits at most connect_timeout for it ---
  const connected = (async () => {
    await Promise.all([client.connect(), subscriber.connect()])
    await subscriber.subscribe(channel, onMessage)
    subscribed = true
    update()
    await resync()
  })()
  connected.catch((error: unknown) => update(error))

  return {
    engine: 'redis',
    counters,
    revocations,
    bus,
    values,
    locks,
    status: () => ({ ...state }),
    connected: () => waitAtMost(connected, options.connectTimeoutMs),
    onStatus(listener) {
      statusListeners.add(listener)
      return () => statusListeners.delete(listener)
    },
    async close() {
      if (closed) return
      closed = true
      for (const which of [subscriber, client]) {
        try {
          if (which.isReady) await which.close()
          else which.destroy()
        } catch {
          which.destroy()
        }
      }
    },
  }
}

/** Whether the engine was reached within `ms`; never rejects. */
function waitAtMost(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    timer.unref()
    promise.then(
      () => {
        clearTimeout(timer)
        resolve(true)
      },
      () => {
        clearTimeout(timer)
        resolve(false)
      },
    )
  })
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name
  return typeof error === 'string' ? error : 'unknown error'
}

/** The URL without its password, for logs. */
export function redacted(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'redis://?'
  }
}
