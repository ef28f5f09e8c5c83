// The access log's success lines skip redaction (their fields are scalars no redaction path matches); every other line is still redacted.
import t from 'tap'
import pino from 'pino'
import { createLoggerOn, scalarLogger } from '../../src/observe/log.js'
import { Recorder, type FinishedRequest } from '../../src/observe/record.js'
import { RecentPushes } from '../../src/observe/recent.js'
import { RegistryError } from '../../src/registry/errors.js'

function capture(): { lines: Array<Record<string, unknown>>; stream: { write: (line: string) => void } } {
  const lines: Array<Record<string, unknown>> = []
  return { lines, stream: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } }
}
const withoutTime = (line: Record<string, unknown> | undefined): Record<string, unknown> => {
  const { time: _time, ...rest } = line ?? {}
  return rest
}
const finished = (failure?: RegistryError): FinishedRequest => ({
  requestId: 'r1', method: 'GET', request: undefined, status: failure ? failure.status : 200, seconds: 0.001, clientIp: '127.0.0.1', user: 'alice', upstream: 'portier', bytesReceived: 0, bytesSent: 2, failure,
})

t.test('a line of scalars reads the same through the twin without redaction, on the same stream in order', async (t) => {
  const { lines, stream } = capture()
  const log = createLoggerOn('info', stream)
  const plain = scalarLogger(log)
  t.not(plain, log, 'a twin exists for a logger createLoggerOn made')
  const fields = { request_id: 'r1', method: 'GET', op: 'base', status: 200, ms: 0.2, client: '127.0.0.1', user: 'alice', upstream: 'portier', reference: undefined }
  log.info(fields, 'request')
  plain.info(fields, 'request')
  t.equal(lines.length, 2)
  t.same(withoutTime(lines[1]), withoutTime(lines[0]), 'the same line but for the time')
  t.equal(lines[1]?.service, 'portier')
})

t.test('the redacting logger still redacts; loggers it did not make are returned as they are', async (t) => {
  const { lines, stream } = capture()
  const log = createLoggerOn('info', stream)
  log.warn({ detail: { password: 'hunter2', token: 'abc' }, authorization: 'Basic x' }, 'refused')
  t.same(lines[0]?.detail, { password: '[redacted]', token: '[redacted]' })
  t.equal(lines[0]?.authorization, '[redacted]')
  const other = pino({ level: 'info' }, stream)
  t.equal(scalarLogger(other), other)
  const child = log.child({ part: 'x' })
  t.equal(scalarLogger(child), child, 'a child keeps its parent\'s redaction')
})

t.test('the recorder: a success line without redaction, a failed request\'s detail redacted', async (t) => {
  const { lines, stream } = capture()
  const recorder = new Recorder(createLoggerOn('info', stream), undefined, new RecentPushes(10))
  recorder.record(finished())
  recorder.record(finished(new RegistryError('DENIED', { password: 'hunter2' })))
  t.equal(lines[0]?.msg, 'request')
  t.equal(lines[0]?.upstream, 'portier')
  t.same(lines[1]?.detail, { password: '[redacted]' }, 'a failure\'s detail still goes through redaction')
})
