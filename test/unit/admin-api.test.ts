// The admin API's route table: exact paths, methods, administrators for state changes, JSON bodies, refusals as { error, code }, and failures as 500s.
import t, { type Test } from 'tap'
import { createServer, type Server } from 'node:http'
import pino from 'pino'
import { createAdminApi, createAdminAuth, reply, type AdminAuth } from '../../src/admin/api.js'
import { AdminError, createAdminHandler } from '../../src/observe/admin.js'

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)))
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

async function serve(t: Test, auth: AdminAuth) {
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
  const api = createAdminApi({ auth, log })
  const handler = createAdminHandler({ api, metrics: undefined, allow: undefined, users: undefined, readiness: () => [], log })
  const server = createServer((req, res) => void handler(req, res))
  t.teardown(() => server.close())
  const port = await listen(server)
  const call = async (method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { method, signal: AbortSignal.timeout(10_000), ...init })
    const text = await response.text()
    return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) as Record<string, unknown> }
  }
  return { api, call, lines }
}

/** Administrators: root, with password "secret". */
const auth = createAdminAuth({
  authMode: 'htpasswd',
  verifyLogin: async (user, password) => (user === 'root' || user === 'alice') && password === 'secret',
  isAdmin: (user) => user === 'root',
})

t.test('routes: exact paths and methods, GET answers HEAD, refusals name what exists', async (t) => {
  const { api, call } = await serve(t, auth)
  api.route('GET', '/admin/api/thing', async (call) => ({ user: call.user, q: call.params.get('q') }))
  api.route('POST', '/admin/api/thing', async (call) => reply(202, { started: true, by: call.user, body: await call.json() }))
  t.throws(() => api.route('GET', '/admin/api/thing', async () => ({})), /registered twice/)
  t.throws(() => api.route('GET', '/other', async () => ({})), /live under \/admin\/api\//)

  const got = await call('GET', '/admin/api/thing?q=1')
  t.equal(got.status, 200)
  t.same(got.json(), { user: 'anonymous', q: '1' }, 'a GET needs no administrator')
  t.equal(got.headers.get('cache-control'), 'no-store')
  const head = await call('HEAD', '/admin/api/thing')
  t.equal(head.status, 200)
  t.equal(head.text, '')
  const missing = await call('GET', '/admin/api/nothing')
  t.equal(missing.status, 404)
  t.same(missing.json(), { error: 'not found', code: 'ADMIN_NOT_FOUND', paths: ['/admin/api/thing'] })
  const wrong = await call('DELETE', '/admin/api/thing', { headers: { authorization: basic('root', 'secret') } })
  t.equal(wrong.status, 405)
  t.equal(wrong.headers.get('allow'), 'GET, POST')
  t.equal((await call('GET', '/metrics')).status, 404, 'the other admin paths are untouched (metrics off here)')
  t.equal((await call('GET', '/healthz')).status, 200)
})

t.test('state changes need an administrator; bodies are JSON objects', async (t) => {
  const { api, call, lines } = await serve(t, auth)
  api.route('POST', '/admin/api/thing', async (call) => reply(202, { by: call.user, body: await call.json() }))
  const post = (headers: Record<string, string>, body?: string) => call('POST', '/admin/api/thing', { headers, ...(body === undefined ? {} : { body }) })

  const none = await post({})
  t.equal(none.status, 401)
  t.match(none.headers.get('www-authenticate'), /^Basic realm="Portier admin"/)
  t.equal(none.json().code, 'ADMIN_UNAUTHORIZED')
  const wrongPassword = await post({ authorization: basic('root', 'nope') })
  t.equal(wrongPassword.status, 401)
  t.equal(wrongPassword.json().error, 'invalid username or password')
  const notAdmin = await post({ authorization: basic('alice', 'secret') })
  t.equal(notAdmin.status, 403)
  t.same(notAdmin.json(), { user: 'alice', error: 'this user is not an administrator (ui.admin_users)', code: 'ADMIN_DENIED' })
  t.ok(lines.some((line) => line.msg === 'admin API call refused' && line.path === '/admin/api/thing'), 'refusals are logged')

  const root = { authorization: basic('root', 'secret'), 'content-type': 'application/json' }
  const empty = await post(root)
  t.equal(empty.status, 202)
  t.same(empty.json(), { by: 'root', body: {} }, 'an empty body is {}')
  const given = await post(root, JSON.stringify({ dry_run: true }))
  t.same(given.json(), { by: 'root', body: { dry_run: true } })
  const array = await post(root, '[1,2]')
  t.equal(array.status, 400)
  t.equal(array.json().code, 'ADMIN_BAD_REQUEST')
  t.equal((await post(root, '{not json')).status, 400)
  const large = await post(root, JSON.stringify({ pad: 'x'.repeat(70 * 1024) }))
  t.equal(large.status, 400, 'a body over 64 KiB is refused')
  t.match(large.json().error, /larger than 65536 bytes/)
})

t.test('auth.mode none: everyone may; an external token issuer: nobody may', async (t) => {
  const open = await serve(t, createAdminAuth({ authMode: 'none', isAdmin: () => false }))
  open.api.route('PUT', '/admin/api/x', async (call) => ({ by: call.user }))
  t.same((await open.call('PUT', '/admin/api/x')).json(), { by: 'anonymous' })
  const closed = await serve(t, createAdminAuth({ authMode: 'token', isAdmin: () => true }))
  closed.api.route('PUT', '/admin/api/x', async (call) => ({ by: call.user }))
  const refused = await closed.call('PUT', '/admin/api/x', { headers: { authorization: basic('root', 'secret') } })
  t.equal(refused.status, 403)
  t.match(refused.json().error, /external token issuer/)
})

t.test('a handler that refuses with AdminError gets its status; one that fails gets a logged 500', async (t) => {
  const { api, call, lines } = await serve(t, auth)
  api.route('GET', '/admin/api/busy', async () => {
    throw new AdminError('ADMIN_CONFLICT', { message: 'a collection is running', detail: { started: 'now' } })
  })
  api.route('GET', '/admin/api/broken', async () => {
    throw new TypeError('a bug')
  })
  const busy = await call('GET', '/admin/api/busy')
  t.equal(busy.status, 409)
  t.same(busy.json(), { started: 'now', error: 'a collection is running', code: 'ADMIN_CONFLICT' })
  const broken = await call('GET', '/admin/api/broken')
  t.equal(broken.status, 500)
  t.equal(broken.json().code, 'ADMIN_INTERNAL')
  t.equal(lines.filter((line) => line.msg === 'internal error').length, 1, 'logged once')
})
