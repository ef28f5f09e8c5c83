// The process logger: JSON lines on stdout, written asynchronously so logging never blocks a transfer.
import pino, { type Logger } from 'pino'

export type { Logger }

export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: { service: 'portier' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['req.headers.authorization', 'headers.authorization', '*.password', '*.token'], censor: '[redacted]' },
    },
    pino.destination({ dest: 1, sync: false }),
  )
}
