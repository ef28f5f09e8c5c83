// scanUntilComplete: a start-up scan that could not read everything runs again, after growing waits, a bounded number of times.
import t from 'tap'
import type { Logger } from '../../src/observe/log.js'
import { scanUntilComplete, type ScanAttempt } from '../../src/store/scan.js'

interface Logged { level: string; message: string; fields: Record<string, unknown> }

function recorder(): { log: Logger; lines: Logged[] } {
  const lines: Logged[] = []
  const at = (level: string) => (fields: Record<string, unknown>, message: string): void => {
    lines.push({ level, message, fields })
  }
  return { log: { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger, lines }
}

/** An attempt that answers `outcomes` in turn (a string that is not an outcome is thrown), noting when each began. */
function attempts(outcomes: Array<ScanAttempt | Error>): { attempt: () => Promise<ScanAttempt>; began: number[] } {
  const began: number[] = []
  return {
    began,
    attempt: async () => {
      began.push(Date.now())
      const next = outcomes[began.length - 1] ?? 'complete'
      if (next instanceof Error) throw next
      return next
    },
  }
}

t.test('incomplete attempts run again after retryMs, then twice as long, up to the longest wait, until one is complete', async (t) => {
  const { log, lines } = recorder()
  const run = attempts(['incomplete', 'incomplete', 'incomplete', 'complete', 'incomplete'])
  await scanUntilComplete(run.attempt, { retryMs: 40, maxAttempts: 8, maxDelayMs: 100, signal: new AbortController().signal, log })
  t.equal(run.began.length, 4, 'stopped at the complete one')
  const waits = run.began.slice(1).map((at, index) => at - (run.began[index] as number))
  t.ok((waits[0] ?? 0) >= 38 && (waits[1] ?? 0) >= 78 && (waits[2] ?? 0) >= 98, `waits of 40, 80, then 100 (at most maxDelayMs): ${waits.join(', ')} ms`)
  t.same(lines.map((line) => [line.level, line.fields.attempt, line.fields.retry_in_ms]), [['info', 1, 40], ['info', 2, 80], ['info', 3, 100]], 'each retry is logged with its attempt and wait')
})

t.test('skipped (another instance scans) and complete end at once; maxAttempts bounds the attempts; 0 never retries', async (t) => {
  for (const outcome of ['skipped', 'complete'] as const) {
    const run = attempts([outcome])
    await scanUntilComplete(run.attempt, { retryMs: 10, maxAttempts: 8, maxDelayMs: 100, signal: new AbortController().signal, log: recorder().log })
    t.equal(run.began.length, 1, `${outcome}: one attempt`)
  }
  const bounded = recorder()
  const always = attempts(Array.from({ length: 10 }, () => 'incomplete' as const))
  await scanUntilComplete(always.attempt, { retryMs: 5, maxAttempts: 3, maxDelayMs: 10, signal: new AbortController().signal, log: bounded.log })
  t.equal(always.began.length, 3, 'three attempts in all')
  t.match(bounded.lines.at(-1), { level: 'warn', message: /no more attempts until the next start/, fields: { attempts: 3 } })
  const never = attempts(['incomplete', 'complete'])
  await scanUntilComplete(never.attempt, { retryMs: 0, maxAttempts: 8, maxDelayMs: 100, signal: new AbortController().signal, log: recorder().log })
  t.equal(never.began.length, 1, 'scan_retry 0: at start only')
})

t.test('a thrown attempt counts as incomplete (logged); shutdown ends a wait at once and starts no attempt', async (t) => {
  const { log, lines } = recorder()
  const run = attempts([new Error('store closed'), 'complete'])
  await scanUntilComplete(run.attempt, { retryMs: 5, maxAttempts: 8, maxDelayMs: 10, signal: new AbortController().signal, log })
  t.equal(run.began.length, 2)
  t.match(lines[0], { level: 'error', message: 'store scan failed', fields: { err: 'store closed' } })
  const shutdown = new AbortController()
  const waiting = attempts(['incomplete', 'complete'])
  const started = Date.now()
  const ended = scanUntilComplete(waiting.attempt, { retryMs: 60_000, maxAttempts: 8, maxDelayMs: 60_000, signal: shutdown.signal, log: recorder().log })
  setTimeout(() => shutdown.abort(), 50)
  await ended
  t.ok(Date.now() - started < 5_000, 'the minute-long wait ended with the shutdown')
  t.equal(waiting.began.length, 1, 'and no attempt followed')
  const stopped = new AbortController()
  const aborted = attempts(['incomplete', 'complete'])
  await scanUntilComplete(async () => {
    stopped.abort()
    return aborted.attempt()
  }, { retryMs: 5, maxAttempts: 8, maxDelayMs: 10, signal: stopped.signal, log: recorder().log })
  t.equal(aborted.began.length, 1, 'an attempt stopped by the shutdown is not retried')
})
