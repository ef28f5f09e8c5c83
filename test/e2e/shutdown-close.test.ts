// close() of the composition root, in process: called twice while a download drains, it still stops the embedded registry last.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createHash, randomBytes } from 'node:crypto'
import { request, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { startPortier } from '../../src/app/index.js'
import { loadConfig } from '../../src/app/config.js'

const MiB = 1024 * 1024
const work = mkdtempSync(join(tmpdir(), 'portier-close-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

function digestOf(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

function get(url: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => request(url, resolve).once('error', reject).end())
}

/** Reads what is left of a response; `complete` is false when the connection ended before its Content-Length. */
function drain(res: IncomingMessage): Promise<{ bytes: number; digest: string; complete: boolean }> {
  return new Promise((resolve) => {
    const hash = createHash('sha256')
    let bytes = 0
    let settled = false
    const done = (): void => {
      if (settled) return
      settled = true
      resolve({ bytes, digest: `sha256:${hash.digest('hex')}`, complete: res.complete })
    }
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      hash.update(chunk)
    })
    res.once('end', done)
    res.once('error', done)
    res.once('close', done)
    // Paused explicitly, a stream stays paused when a 'data' listener is added.
    res.resume()
  })
}

t.test('close() twice during a download: one promise, the listener drains first, the embedded registry stops last', async (t) => {
  const file = join(work, 'portier.yaml')
  writeFileSync(
    file,
    [
      'server:',
      '  listen: 127.0.0.1:0',
      '  drain_timeout: 60s',
      'tls:',
      '  enabled: false',
      'auth:',
      '  mode: none',
      'ui:',
      '  enabled: false',
      'embedded_registry:',
      `  data_dir: ${join(work, 'registry')}`,
      '',
    ].join('\n'),
  )
  const { config } = loadConfig({ file })
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const running = await startPortier(config, log)
  let closed = false
  t.teardown(async () => {
    if (!closed) await running.close()
  })
  t.ok(running.embedded, 'no upstreams: the embedded registry serves')
  const base = `http://127.0.0.1:${running.address.port}`

  // A blob larger than every socket buffer on the way, so a paused reader keeps its download in flight.
  const blob = randomBytes(32 * MiB)
  const digest = digestOf(blob)
  const opened = await fetch(`${base}/v2/close/twice/blobs/uploads/`, { method: 'POST' })
  await opened.arrayBuffer()
  t.equal(opened.status, 202)
  const location = new URL(opened.headers.get('location') as string, base)
  location.searchParams.set('digest', digest)
  const put = await fetch(location, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } })
  await put.arrayBuffer()
  t.equal(put.status, 201, 'blob pushed')

  const download = await get(`${base}/v2/close/twice/blobs/${digest}`)
  t.equal(download.statusCode, 200)
  download.pause()

  // A signal and an internal error at once, or a caller's close after a failed check: both call close().
  const first = running.close()
  const second = running.close()
  t.equal(second, first, 'the second close() answers the same promise')

  // Stopping the registry before the drain (the old second close() ran the steps in start order) cuts this download.
  const read = await drain(download)
  t.equal(read.bytes, blob.length, 'every byte of the in-flight download arrived')
  t.equal(read.digest, digest, 'and they are the blob')
  t.ok(read.complete, 'the response ended at its Content-Length')
  await first
  closed = true
  const stopped = await fetch(`${running.embedded?.url}/v2/`).then(
    () => false,
    () => true,
  )
  t.ok(stopped, 'the embedded registry is stopped once close() resolves')
  t.equal(running.close(), first, 'a later close() still answers the same promise')
})
