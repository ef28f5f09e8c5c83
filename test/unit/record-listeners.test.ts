// The record step's listeners: told of every finished request after its log line, isolated from each other's failures.
import t from 'tap'
import pino from 'pino'
import { Recorder, type FinishedRequest } from '../../src/observe/record.js'
import { RecentPushes } from '../../src/observe/recent.js'

const finished = (requestId: string): FinishedRequest => ({
  requestId, method: 'GET', request: undefined, status: 200, seconds: 0.001, clientIp: '127.0.0.1', user: 'alice', upstream: 'a', bytesReceived: 0, bytesSent: 2, failure: undefined,
})

t.test('listeners hear every finished request after the log line; one that throws is logged and the others still hear it', (t) => {
  const order: string[] = []
  const log = pino({ level: 'info' }, { write: (line: string) => void order.push(`log:${(JSON.parse(line) as { msg: string }).msg}`) })
  const recorder = new Recorder(log, undefined, new RecentPushes(10))
  recorder.listen(() => {
    throw new Error('listener broke')
  })
  const stop = recorder.listen((done) => void order.push(`heard:${done.requestId}`))
  recorder.record(finished('r1'))
  t.same(order, ['log:request', 'log:a listener of finished requests failed', 'heard:r1'])
  stop()
  order.length = 0
  recorder.record(finished('r2'))
  t.same(order, ['log:request', 'log:a listener of finished requests failed'], 'a removed listener hears nothing more')
  t.end()
})
