// The process logger: JSON lines on stdout, written asynchronously and in batches so logging never blocks a transfer.
import pino, { type DestinationStream, type Logger } from 'pino'

export type { Logger }

export type LogFormat = 'json' | 'pretty'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }
const HIDDEN = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname'])

/** One JSON log line as a human reads it: time, level, message, then key=value pairs. */
export function formatPretty(line: string): string {
  let entry: Record<string, unknown>
  try {
    entry = JSON.parse(line) as Record<string, unknown>
  } catch {
    return line
  }
  const time = typeof entry.time === 'string' ? entry.time.slice(11, 23) : ''
  const level = LEVELS[Number(entry.level)] ?? String(entry.level)
  const fields = Object.entries(entry)
    .filter(([key, value]) => !HIDDEN.has(key) && value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
  return `${time} ${level.padEnd(5)} ${typeof entry.msg === 'string' ? entry.msg : entry.msg === undefined ? '' : JSON.stringify(entry.msg)}${fields.length ? `  ${fields.join(' ')}` : ''}\n`
}

/** For development (log.format: pretty): readable lines, written synchronously. */
const prettyStdout: DestinationStream = {
  write(line: string) {
    process.stdout.write(formatPretty(line))
  },
}

/** Lines are written in batches of this many bytes ... */
const BATCH_BYTES = 8 * 1024
/** ... or after this long, whichever comes first. */
const BATCH_MS = 100

/**
 * JSON lines on stdout, batched: one asynchronous write per access-log line was ~10 % of Portier's CPU per small
 * request (npm run bench:observe); batches cut that to a write every few dozen lines under load, and a line waits
 * at most BATCH_MS when traffic is light. Whatever is buffered is written synchronously when the process exits.
 */
function batchedStdout(): DestinationStream & { flush(callback?: (error?: Error) => void): void } {
  const destination = pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES })
  // Bytes handed over and bytes written: a flush while a write is in flight does nothing (sonic-boom), so the timer
  // keeps flushing until every byte is out; a flag cleared on the first try left the last lines of a busy moment
  // (the ready line once) in the buffer until the next line came.
  let given = 0
  let written = 0
  destination.on('write', (bytes: number) => {
    written += bytes
  })
  const timer = setInterval(() => {
    if (written >= given) return
    try {
      destination.flush()
    } catch {
      // stdout is gone (closed pipe): nothing left to write to, and logging must never stop the gateway.
    }
  }, BATCH_MS)
  timer.unref()
  return {
    write(line: string) {
      given += Buffer.byteLength(line)
      destination.write(line)
    },
    flush(callback) {
      destination.flush(callback)
    },
  }
}

/** Each logger createLoggerOn made, with its twin without redaction (same level, options and stream). */
const plainTwins = new WeakMap<Logger, Logger>()

/** `fields`: on every line besides service (a worker of server.workers: its number). */
export function createLogger(level: string, format: LogFormat = 'json', fields: Record<string, string | number> = {}): Logger {
  return createLoggerOn(level, format === 'pretty' ? prettyStdout : batchedStdout(), fields)
}

/** The process logger on a given stream (createLogger's, or a test's). */
export function createLoggerOn(level: string, stream: DestinationStream, fields: Record<string, string | number> = {}): Logger {
  const options = { level, base: { service: 'portier', ...fields }, timestamp: pino.stdTimeFunctions.isoTime }
  const log = pino(
    {
      ...options,
      // Nothing Portier logs carries these, but a detail copied from a request must never leak one.
      redact: {
        paths: REDACTED_PATHS,
        censor: '[redacted]',
      },
    },
    stream,
  )
  plainTwins.set(log, pino(options, stream))
  return log
}

const REDACTED_PATHS = ['req.headers.authorization', 'headers.authorization', 'authorization', '*.password', '*.token', '*.access_token', '*._state', 'detail.password']

/**
 * The logger for lines whose fields are all strings, numbers, booleans or undefined and none is named
 * `authorization` (the access log's line for a request that did not fail): no redaction path can match
 * such a line, while pino's wildcard paths (`*.password`) run the redaction for every field of every line,
 * ~5 % of a small request's CPU. A logger createLoggerOn did not make (a child, a test's) is returned as it is.
 */
export function scalarLogger(log: Logger): Logger {
  return plainTwins.get(log) ?? log
}
