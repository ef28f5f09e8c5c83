// The process logger: JSON lines on stdout, written asynchronously so logging never blocks a transfer.
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
  return `${time} ${level.padEnd(5)} ${String(entry.msg ?? '')}${fields.length ? `  ${fields.join(' ')}` : ''}\n`
}

/** For development (log.format: pretty): readable lines, written synchronously. */
const prettyStdout: DestinationStream = {
  write(line: string) {
    process.stdout.write(formatPretty(line))
  },
}

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  return pino(
    {
      level,
      base: { service: 'portier' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Nothing Portier logs carries these, but a detail copied from a request must never leak one.
      redact: {
        paths: ['req.headers.authorization', 'headers.authorization', 'authorization', '*.password', '*.token', '*.access_token', '*._state', 'detail.password'],
        censor: '[redacted]',
      },
    },
    format === 'pretty' ? prettyStdout : pino.destination({ dest: 1, sync: false }),
  )
}
