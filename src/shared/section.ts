// The `shared` config section: the engine several gateway instances keep their hot, short-lived state in (Redis or Valkey).
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import { duration, section, text } from '../config/fields.js'
import { isRecord } from '../lib/is-record.js'
import type { KeyProblem } from '../config/fields.js'

const urlExpect = 'empty (state kept in this process), or a Redis URL like redis://127.0.0.1:6379 or rediss://redis.example:6380/0'

const redis = section({
  /** redis:// or rediss:// (TLS); empty: every instance keeps its own state, as a single instance does. */
  url: text({ pattern: /^(?:rediss?:\/\/[^\s/?#]+(?:\/\d{0,2})?)?$/, expect: urlExpect }).default(''),
  /** A file holding the password (Redis AUTH; with `username` for an ACL user). */
  password_file: text().default(''),
  /** The ACL user name (Redis 6+); empty: the default user. */
  username: text().default(''),
  /** PEM file of CA certificates trusted for rediss:// in addition to the system roots. */
  ca_file: text().default(''),
  /** Put before every key and channel: instances of one fleet share it, other fleets on the same server use their own. */
  key_prefix: text({ pattern: /^[A-Za-z0-9:._-]{0,64}$/, expect: 'up to 64 letters, digits and : . _ -' }).default('portier:'),
  /** How long a connection attempt may take. */
  connect_timeout: duration().default(2000),
  /** How long a command may wait for its answer before the gateway goes on without it (local fallbacks). */
  command_timeout: duration().default(500),
  /**
   * While the engine is unreachable, revocations (signed-out UI sessions) are checked against what this
   * instance has seen for this long; after it, sessions are refused until the engine is back (fail safe).
   */
  stale_after: duration().default(5 * 60_000),
  /**
   * How long a lock of scheduled housekeeping (gc, retention) outlives an instance that died holding it; the holder
   * renews it every third of this while it runs. Also the longest a scheduled time waits after a holder was killed.
   */
  lock_ttl: duration()
    .default(30_000)
    .refine((ms) => ms >= 1000, { error: 'a duration of at least 1s' }),
})

export const sharedSection = section({
  redis: redis.prefault({}),
}).prefault({})

export type SharedConfig = z.output<typeof sharedSection>
export type RedisConfig = SharedConfig['redis']

/** Files shared.redis names must be readable (and the CA file PEM); a CA file needs rediss://. */
export function sharedProblems(shared: unknown): KeyProblem[] {
  const problems: KeyProblem[] = []
  const redisTree = isRecord(shared) && isRecord(shared.redis) ? shared.redis : undefined
  if (!redisTree) return problems
  const url = typeof redisTree.url === 'string' ? redisTree.url : ''
  for (const [name, pem] of [['password_file', false], ['ca_file', true]] as const) {
    const path = redisTree[name]
    if (typeof path !== 'string' || path === '') continue
    const found = fileProblem(path, pem)
    if (found) problems.push({ key: `shared.redis.${name}`, expected: pem ? 'a readable PEM file of CA certificates' : 'a readable file holding the password', found: `${JSON.stringify(path)}: ${found}` })
  }
  if (typeof redisTree.ca_file === 'string' && redisTree.ca_file !== '' && url !== '' && !url.startsWith('rediss://')) {
    problems.push({ key: 'shared.redis.ca_file', expected: 'a rediss:// shared.redis.url (the CA file is for TLS)', found: JSON.stringify(redisTree.ca_file) })
  }
  return problems
}

function fileProblem(path: string, pem: boolean): string | undefined {
  let content: string
  try {
    content = readFileSync(path, 'utf8')
  } catch (error) {
    return `an unreadable file (${(error as NodeJS.ErrnoException).code ?? String(error)})`
  }
  return pem && !content.includes('-----BEGIN ') ? 'a file without PEM blocks' : undefined
}
