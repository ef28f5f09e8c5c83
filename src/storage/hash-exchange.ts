// Running upload hashes across processes: a commit at one asks the holder of the session's running sha256, over the shared bus, instead of reading the data again.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes, randomUUID } from 'node:crypto'
import { readFileSync, readlinkSync } from 'node:fs'
import type { Bus, SharedState } from '../shared/types.js'
import { isRecord } from '../lib/is-record.js'
import { BoundedCache } from '../lib/bounded-cache.js'

export const HASH_TOPIC = 'storage-upload-hash'

/** The bus running hashes are asked over, and how far its other ends are trusted. */
export interface RunningHashChannel {
  bus: Bus
  /**
   * Seals every question and answer (AES-256-GCM under a key derived from this one), and messages
   * that do not open under it are ignored. Set for Redis: whoever can publish there could otherwise
   * answer a question with a hash of their choosing, and the blob would be stored under a digest its
   * bytes do not have; and whoever can subscribe would read session paths, repositories and digests.
   */
  key?: Buffer
  /** The other ends are processes of this machine (the workers of server.workers): a holder whose pid has exited is not asked (over Redis, only one whose name carries this pid space). */
  sameMachine: boolean
  /** Whether the bus carries messages now (Redis reachable): while it does not, nobody is asked. */
  up?: () => boolean
}

/**
 * The channel for the shared state's engine:
 * - `cluster` (server.workers without Redis): the workers' IPC bus, whose every end is a process of
 *   this gateway;
 * - `redis`: Redis pub/sub, sealed with a key derived from `secret()` (routing.secret), so only
 *   instances given the same secret exchange hashes, and nobody else reads them; the others read the
 *   data again, as a single process does;
 * - `local`: none.
 */
export function runningHashChannel(
  engine: SharedState['engine'],
  bus: Bus,
  secret: () => Buffer,
  redis: { keyPrefix: string; up: () => boolean } = { keyPrefix: '', up: () => true },
): RunningHashChannel | undefined {
  if (engine === 'cluster') return { bus, sameMachine: true }
  if (engine !== 'redis') return undefined
  // Its own key, not the one that signs upload URLs; fleets on one Redis that reuse a secret still differ by key_prefix.
  const key = createHmac('sha256', secret()).update(`portier storage-upload-hash v2\0${redis.keyPrefix}`).digest()
  return { bus, key, sameMachine: false, up: redis.up }
}

/** A short public name of a key: processes named with another one cannot read this one's questions, and are not asked. */
function keyId(key: Buffer): string {
  return createHmac('sha256', key).update('key id').digest('hex').slice(0, 12)
}

/**
 * How long a commit waits for the holder's answer before it reads the data itself. An answer on the
 * cluster's IPC takes well under a millisecond, over Redis about one round trip. A worker whose process
 * has exited (replaced) is not asked at all (`processGone`); a holder that lives but has lost the
 * session, or another instance that has gone, never answers.
 */
export const ASK_TIMEOUT_MS = 500

/**
 * A process name: `<pid>-<uuid>`, on a sealed channel `<key id>.<pid>-<uuid>.<pid space>`. The workers
 * of server.workers share one machine, so the asker can tell from the pid that a holder has exited and
 * read the data at once rather than wait for the timeout; over Redis it can when the holder's pid space
 * is its own (the workers of one instance, or instances in one container). The uuid tells a holder
 * from a later process given the same pid (that one never answers: the timeout). The key id tells
 * instances given another routing.secret, which could not read the question, from those worth asking.
 */
function processName(pid: number, key: Buffer | undefined, space: string | undefined): string {
  if (key === undefined) return `${pid}-${randomUUID()}`
  return `${keyId(key)}.${pid}-${randomUUID()}${space !== undefined ? `.${space}` : ''}`
}

/**
 * A short name of the pid space this process lives in: this boot of this machine's kernel and its pid
 * namespace (a container has its own). Two processes whose names carry the same one see each other's
 * pids; undefined where /proc does not say (then a holder's pid is never checked over Redis).
 */
export function pidSpace(): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const namespace = readlinkSync('/proc/self/ns/pid')
    return createHash('sha256').update(`${boot}\0${namespace}`).digest('hex').slice(0, 12)
  } catch {
    return undefined
  }
}

/** A process name's pid: `<pid>-<uuid>`, or `<key id>.<pid>-<uuid>[.<pid space>]`. */
const PROCESS_NAME = /^(?:[0-9a-f]{12}\.)?(\d+)-[0-9a-f-]{36}(?:\.([0-9a-f]{12}))?$/

/** Whether the process named `holder` has exited: its pid is no process (of this machine) any more. */
export function processGone(holder: string): boolean {
  return pidGone(PROCESS_NAME.exec(holder))
}

/** Whether the pid of a parsed process name (PROCESS_NAME) is no process of this machine any more. */
function pidGone(name: RegExpExecArray | null): boolean {
  const pid = Number(name?.[1])
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    // EPERM: a process of another user has that pid now; it is not the holder either, but let the timeout say so.
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** Asks the process that holds a session's running hash for its sha256 over `size` bytes. */
export interface RunningHashPeers {
  /** This process's name in the session's `hasher` file. */
  readonly self: string
  /** The hex sha256, or undefined: the holder no longer has it, covers another size, or did not answer in time. */
  ask(dir: string, size: number, holder: string): Promise<string | undefined>
}

const SHA256_HEX = /^[0-9a-f]{64}$/

/** Longer messages are none of ours (a question names a session directory): dropped before any parsing or decryption. */
const MAX_MESSAGE_CHARS = 8192

/**
 * A question names the session directory and size it wants the hash for; its answer repeats them, and
 * the asker takes only an answer to the question it asked.
 */
type Message =
  | { kind: 'ask'; id: string; dir: string; size: number; holder: string; from: string }
  | { kind: 'answer'; id: string; to: string; dir: string; size: number; hex: string | null }

const SEAL_NONCE_BYTES = 12
const SEAL_TAG_BYTES = 16
const BASE64URL = /^[A-Za-z0-9_-]+$/

const sealingKeys = new WeakMap<Buffer, Buffer>()

/** The AES-256-GCM key that seals messages: derived (once) from the channel's key, which also names it (`keyId`). */
function sealingKey(key: Buffer): Buffer {
  let sealing = sealingKeys.get(key)
  if (sealing === undefined) sealingKeys.set(key, (sealing = createHmac('sha256', key).update('seal').digest()))
  return sealing
}

/** Question ids a holder remembers having answered: a question published again (replayed from Redis) is not answered twice. */
const ANSWERED_IDS_HELD = 1024

/** `{"sealed":"<nonce>.<ciphertext and tag>"}` (base64url): what crosses Redis, opaque to anyone without the key. */
export function sealMessage(key: Buffer, text: string): string {
  const nonce = randomBytes(SEAL_NONCE_BYTES)
  const cipher = createCipheriv('aes-256-gcm', sealingKey(key), nonce)
  const body = Buffer.concat([cipher.update(text, 'utf8'), cipher.final(), cipher.getAuthTag()])
  return JSON.stringify({ sealed: `${nonce.toString('base64url')}.${body.toString('base64url')}` })
}

/** The text inside a sealed message, or undefined: not sealed, altered, or sealed under another key. */
export function openMessage(key: Buffer, text: string): string | undefined {
  let sealed: unknown
  try {
    sealed = (JSON.parse(text) as { sealed?: unknown } | null)?.sealed
  } catch {
    return undefined
  }
  if (typeof sealed !== 'string') return undefined
  const [nonceText, bodyText, extra] = sealed.split('.')
  if (nonceText === undefined || bodyText === undefined || extra !== undefined || !BASE64URL.test(nonceText) || !BASE64URL.test(bodyText)) return undefined
  const nonce = Buffer.from(nonceText, 'base64url')
  const body = Buffer.from(bodyText, 'base64url')
  if (nonce.length !== SEAL_NONCE_BYTES || body.length <= SEAL_TAG_BYTES) return undefined
  try {
    const decipher = createDecipheriv('aes-256-gcm', sealingKey(key), nonce, { authTagLength: SEAL_TAG_BYTES })
    decipher.setAuthTag(body.subarray(body.length - SEAL_TAG_BYTES))
    return Buffer.concat([decipher.update(body.subarray(0, body.length - SEAL_TAG_BYTES)), decipher.final()]).toString('utf8')
  } catch {
    // The tag does not match: altered, or another key.
    return undefined
  }
}

function parse(text: string, key: Buffer | undefined): Message | undefined {
  if (text.length > MAX_MESSAGE_CHARS) return undefined
  const plain = key === undefined ? text : openMessage(key, text)
  if (plain === undefined) return undefined
  try {
    const value = JSON.parse(plain) as unknown
    if (!isRecord(value) || typeof value.id !== 'string' || typeof value.dir !== 'string' || typeof value.size !== 'number') return undefined
    if (value.kind === 'ask' && typeof value.holder === 'string' && typeof value.from === 'string') {
      return { kind: 'ask', id: value.id, dir: value.dir, size: value.size, holder: value.holder, from: value.from }
    }
    if (value.kind === 'answer' && typeof value.to === 'string' && ((typeof value.hex === 'string' && SHA256_HEX.test(value.hex)) || value.hex === null)) {
      return { kind: 'answer', id: value.id, to: value.to, dir: value.dir, size: value.size, hex: value.hex }
    }
  } catch {
    // Not one of ours: ignored.
  }
  return undefined
}

function encode(message: Message, key: Buffer | undefined): string {
  const text = JSON.stringify(message)
  return key === undefined ? text : sealMessage(key, text)
}

/**
 * Answers the other processes' questions with `take(dir, size)` (the hex sha256 this process holds for
 * that session at exactly that size, given up once told) and asks them. The directory in a question is
 * only a key into `take`'s map: nothing from the bus reaches the file system.
 */
export function shareRunningHashes(channel: RunningHashChannel, take: (dir: string, size: number) => string | undefined, timeoutMs = ASK_TIMEOUT_MS): RunningHashPeers & { close(): void } {
  const { bus, key, sameMachine, up } = channel
  const space = key !== undefined ? pidSpace() : undefined
  const self = processName(process.pid, key, space)
  const ours = key ? `${keyId(key)}.` : ''
  const waiting = new Map<string, { dir: string; size: number; settle: (hex: string | undefined) => void }>()
  const answered = new BoundedCache<string, true>({ max: ANSWERED_IDS_HELD })
  const unsubscribe = bus.subscribe(HASH_TOPIC, (text) => {
    const message = parse(text, key)
    if (message === undefined) return
    if (message.kind === 'ask') {
      if (message.holder !== self || answered.has(message.id)) return
      answered.set(message.id, true)
      const answer: Message = { kind: 'answer', id: message.id, to: message.from, dir: message.dir, size: message.size, hex: take(message.dir, message.size) ?? null }
      bus.publish(HASH_TOPIC, encode(answer, key))
      return
    }
    if (message.to !== self) return
    const question = waiting.get(message.id)
    // An answer for another session or size than the question asked is none.
    if (question !== undefined && question.dir === message.dir && question.size === message.size) question.settle(message.hex ?? undefined)
  })
  return {
    self,
    ask(dir, size, holder) {
      // Nobody to ask: the bus is down, or the holder seals with another key (it could not read the question).
      if (up?.() === false || (ours !== '' && !holder.startsWith(ours))) return Promise.resolve(undefined)
      // A pid names a process of one pid space only: over Redis the holder may run elsewhere, unless its name says it shares ours.
      const name = PROCESS_NAME.exec(holder)
      const comparable = sameMachine || (space !== undefined && name?.[2] === space)
      if (comparable && pidGone(name)) return Promise.resolve(undefined)
      const id = randomUUID()
      return new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => settle(undefined), timeoutMs)
        function settle(hex: string | undefined): void {
          clearTimeout(timer)
          waiting.delete(id)
          resolve(hex)
        }
        waiting.set(id, { dir, size, settle })
        const question: Message = { kind: 'ask', id, dir, size, holder, from: self }
        bus.publish(HASH_TOPIC, encode(question, key))
      })
    },
    close() {
      unsubscribe()
      for (const { settle } of waiting.values()) settle(undefined)
    },
  }
}
