// Running upload hashes across the workers of server.workers: a commit at one asks the holder of the session's running sha256, over the shared bus, instead of reading the data again.
import { randomUUID } from 'node:crypto'
import type { Bus, SharedState } from '../shared/types.js'
import { isRecord } from '../lib/is-record.js'

export const HASH_TOPIC = 'storage-upload-hash'

/**
 * The bus running hashes are asked over: the workers' (server.workers), whose every end is a process
 * of this gateway. Not Redis: whoever can publish there could answer a question with a hash of their
 * choosing, and the blob would be stored under a digest its bytes do not have. Instances that share
 * Redis read the data again at a commit that reaches another instance.
 */
export function runningHashBus(engine: SharedState['engine'], bus: Bus): Bus | undefined {
  return engine === 'cluster' ? bus : undefined
}

/**
 * How long a commit waits for the holder's answer before it reads the data itself. An answer on the
 * cluster's IPC takes well under a millisecond. A holder whose process has exited (a worker replaced)
 * is not asked at all (`processGone`); one that lives but has lost the session never answers.
 */
export const ASK_TIMEOUT_MS = 500

/**
 * A process name: `<pid>-<uuid>`. The workers of server.workers share one machine, so the asker can tell
 * from the pid that a holder has exited and read the data at once rather than wait for the timeout.
 * The uuid tells a holder from a later process given the same pid (that one never answers: the timeout).
 */
function processName(pid: number): string {
  return `${pid}-${randomUUID()}`
}

/** Whether the process named `holder` has exited: its pid is no process any more. */
export function processGone(holder: string): boolean {
  const pid = Number(/^(\d+)-/.exec(holder)?.[1])
  if (!Number.isSafeInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    // EPERM: a process of another user has that pid now; it is not the holder either, but let the timeout say so.
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

/** Asks the worker that holds a session's running hash for its sha256 over `size` bytes. */
export interface RunningHashPeers {
  /** This process's name in the session's `hasher` file. */
  readonly self: string
  /** The hex sha256, or undefined: the holder no longer has it, covers another size, or did not answer in time. */
  ask(dir: string, size: number, holder: string): Promise<string | undefined>
}

const SHA256_HEX = /^[0-9a-f]{64}$/

type Message = { kind: 'ask'; id: string; dir: string; size: number; holder: string; from: string } | { kind: 'answer'; id: string; to: string; hex: string | null }

function parse(text: string): Message | undefined {
  try {
    const value = JSON.parse(text) as unknown
    if (!isRecord(value) || typeof value.id !== 'string') return undefined
    if (value.kind === 'ask' && typeof value.dir === 'string' && typeof value.size === 'number' && typeof value.holder === 'string' && typeof value.from === 'string') {
      return { kind: 'ask', id: value.id, dir: value.dir, size: value.size, holder: value.holder, from: value.from }
    }
    if (value.kind === 'answer' && typeof value.to === 'string' && ((typeof value.hex === 'string' && SHA256_HEX.test(value.hex)) || value.hex === null)) {
      return { kind: 'answer', id: value.id, to: value.to, hex: value.hex }
    }
  } catch {
    // Not one of ours: ignored.
  }
  return undefined
}

/**
 * Answers the other workers' questions with `take(dir, size)` (the hex sha256 this process holds for
 * that session at exactly that size, given up once told) and asks them. The directory in a question is
 * only a key into `take`'s map: nothing from the bus reaches the file system.
 */
export function shareRunningHashes(bus: Bus, take: (dir: string, size: number) => string | undefined, timeoutMs = ASK_TIMEOUT_MS): RunningHashPeers & { close(): void } {
  const self = processName(process.pid)
  const waiting = new Map<string, (hex: string | undefined) => void>()
  const unsubscribe = bus.subscribe(HASH_TOPIC, (text) => {
    const message = parse(text)
    if (message === undefined) return
    if (message.kind === 'ask') {
      if (message.holder !== self) return
      const answer: Message = { kind: 'answer', id: message.id, to: message.from, hex: take(message.dir, message.size) ?? null }
      bus.publish(HASH_TOPIC, JSON.stringify(answer))
      return
    }
    if (message.to === self) waiting.get(message.id)?.(message.hex ?? undefined)
  })
  return {
    self,
    ask(dir, size, holder) {
      if (processGone(holder)) return Promise.resolve(undefined)
      const id = randomUUID()
      return new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => settle(undefined), timeoutMs)
        function settle(hex: string | undefined): void {
          clearTimeout(timer)
          waiting.delete(id)
          resolve(hex)
        }
        waiting.set(id, settle)
        const question: Message = { kind: 'ask', id, dir, size, holder, from: self }
        bus.publish(HASH_TOPIC, JSON.stringify(question))
      })
    },
    close() {
      unsubscribe()
      for (const settle of waiting.values()) settle(undefined)
    },
  }
}
