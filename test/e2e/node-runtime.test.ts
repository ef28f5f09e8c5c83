// The gateway under test runs on the supported Node.js: its ready line names the runtime, and it is the same
// binary tap runs on (so `npm test` exercises Node 24, not the machine's older node).
import t from 'tap'
import { readlinkSync, realpathSync } from 'node:fs'
import { request } from 'node:https'
import { gatewayFixture } from '../helpers/gateway.js'
import { registryFixture } from '../helpers/registry.js'
import { MIN_NODE_MAJOR, nodeMajor } from '../../src/runtime.js'

t.test('the gateway process runs on Node.js 24 or newer and serves /v2/ over TLS', async (t) => {
  const registry = await registryFixture(t)
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }] } })
  const ready = gateway.logs.find((line) => line.msg === 'portier ready')
  const reported = String(ready?.node)
  t.match(reported, /^v\d+\.\d+\.\d+$/, 'the ready line names the Node.js version')
  t.ok(nodeMajor(reported.slice(1)) >= MIN_NODE_MAJOR, `gateway runs on ${reported}`)
  t.equal(reported, process.version, 'the same runtime as the tests')
  // The process itself, not only what it says: its executable is the node binary tap runs on.
  t.equal(readlinkSync(`/proc/${gateway.child.pid}/exe`), realpathSync(process.execPath))

  const status = await new Promise<{ status: number; api: string | undefined }>((resolve, reject) => {
    request({ host: '127.0.0.1', port: gateway.port, path: '/v2/', rejectUnauthorized: false }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode ?? 0, api: res.headers['docker-distribution-api-version'] as string | undefined }))
    })
      .on('error', reject)
      .end()
  })
  t.equal(status.status, 200)
  t.equal(status.api, 'registry/2.0')
})
