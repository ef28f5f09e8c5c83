// The operator's path: check-config loads what serve loads and names the key; an htpasswd written by another uid; a replaced self-signed certificate is announced.
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import yaml from 'js-yaml'
import { run, runOk } from '../helpers/exec.js'
import { CLI, startGateway } from '../helpers/gateway.js'
import { registryFixture } from '../helpers/registry.js'
import { freePort } from '../helpers/ports.js'

const dir = mkdtempSync(join(tmpdir(), 'portier-operators-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/** The environment without PORTIER_* variables and tap's process tracking. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('PORTIER_') && !['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS'].includes(name) && !name.startsWith('_TAPJS_')) env[name] = value
  }
  return env
}

function cli(args: string[], cwd = dir) {
  return run(process.execPath, [CLI, ...args], { cwd, env: cleanEnv(), timeoutMs: 30_000 })
}

async function selfSignedPair(name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'])
  return { cert, key }
}

function writeConfig(name: string, tree: Record<string, unknown>): string {
  const file = join(dir, name)
  writeFileSync(file, yaml.dump({ server: { listen: '127.0.0.1:0' }, admin: { listen: '' }, upstreams: [{ url: 'http://127.0.0.1:1' }], auth: { mode: 'none' }, ...tree }))
  return file
}

t.test('check-config and serve name a missing certificate file and a key that does not match, by key', async (t) => {
  const a = await selfSignedPair('a')
  const b = await selfSignedPair('b')
  const missing = writeConfig('missing-cert.yaml', { tls: { certificates: [{ cert: join(dir, 'nope.crt'), key: a.key }] } })
  const checked = await cli(['check-config', '--config', missing])
  t.equal(checked.code, 2, 'a missing certificate file makes the configuration invalid')
  t.match(checked.stderr, `${missing}: tls.certificates[0].cert: expected a readable PEM certificate, found "${join(dir, 'nope.crt')}": no such file`)
  t.notMatch(checked.stdout, /valid/, 'not "configuration is valid"')

  const mismatched = writeConfig('mismatch.yaml', { tls: { certificates: [{ cert: a.cert, key: b.key }] } })
  const check = await cli(['check-config', '--config', mismatched])
  t.equal(check.code, 2, 'a key of another certificate makes it invalid')
  const line = `${mismatched}: tls.certificates[0].key: expected the private key of tls.certificates[0].cert (${a.cert}), found "${b.key}": a key that does not match the certificate`
  t.match(check.stderr, line)
  const served = await cli(['serve', '--config', mismatched])
  t.equal(served.code, 2, 'serve refuses it before listening, with the configuration exit code')
  t.notOk(served.timedOut)
  t.match(served.stderr, line, 'serve prints the same line')

  const good = writeConfig('good-cert.yaml', { tls: { certificates: [{ cert: a.cert, key: a.key }] } })
  const ok = await cli(['check-config', '--config', good])
  t.equal(ok.code, 0, ok.stderr)
})

t.test('check-config loads token keys, the external bundle, admin.htpasswd and secret files', async (t) => {
  const a = await selfSignedPair('tok-a')
  const b = await selfSignedPair('tok-b')
  writeFileSync(join(dir, 'short-secret'), 'too short\n')
  const file = writeConfig('files.yaml', {
    auth: { mode: 'token', htpasswd: { path: join(dir, 'no-users'), generate_admin: false }, token: { key: b.key, cert: a.cert } },
    admin: { listen: '', htpasswd: join(dir, 'no-admin-users') },
    ui: { session_secret_file: join(dir, 'short-secret') },
  })
  const r = await cli(['check-config', '--config', file])
  t.equal(r.code, 2)
  t.match(r.stderr, '4 problems')
  t.match(r.stderr, `${file}: auth.htpasswd.path: expected an htpasswd file`)
  t.match(r.stderr, `${file}: auth.token.key: expected`)
  t.match(r.stderr, 'does not belong to', 'the token certificate is not the key\'s')
  t.match(r.stderr, `${file}: admin.htpasswd: expected`)
  t.match(r.stderr, `${file}: ui.session_secret_file: expected a random key of at least 32 characters`)

  const client = writeConfig('client-pair.yaml', { upstreams: [{ url: 'https://127.0.0.1:1', client_cert: a.cert, client_key: b.key }] })
  const pair = await cli(['check-config', '--config', client])
  t.equal(pair.code, 2)
  t.match(pair.stderr, `${client}: upstreams[0].client_key: expected the private key of upstreams[0].client_cert (${a.cert}), found "${b.key}": a key that does not match the certificate`)

  const external = writeConfig('external.yaml', {
    auth: { mode: 'token', token: { realm: 'https://auth.example/token', external: { enabled: true, issuer: 'x', rootcertbundle: join(dir, 'nope.pem') } } },
  })
  const e = await cli(['check-config', '--config', external])
  t.equal(e.code, 2)
  t.match(e.stderr, `${external}: auth.token.external.rootcertbundle: expected a readable PEM bundle`)
})

t.test('a self-signed certificate replaced for new hosts: the log and the banner give the old and the new fingerprint', async (t) => {
  const cwd = mkdtempSync(join(dir, 'selfsigned-'))
  const config = { upstreams: [{ url: 'http://127.0.0.1:1' }], health: { interval: '1h' } }
  const first = await startGateway({ cwd, config })
  const before = first.logs.find((line) => line.msg === 'generated a self-signed certificate')
  await first.stop()
  t.ok(before, 'the first start generated it')
  t.match(first.stderr(), /names: +localhost, .*127\.0\.0\.1.*tls\.self_signed\.hosts/, 'the banner lists the names and how to add one')
  t.notMatch(first.stderr(), /CHANGED/)

  const again = await startGateway({ cwd, config })
  await again.stop()
  t.notMatch(again.stderr(), /CHANGED/, 'the same hosts: reused, nothing to announce')
  t.equal(again.logs.find((line) => line.msg === 'using the self-signed certificate generated earlier')?.sha256, before?.sha256)

  const second = await startGateway({ cwd, config: { ...config, tls: { self_signed: { hosts: ['registry.lan'] } } } })
  await second.stop()
  const warned = second.logs.find((line) => line.msg.startsWith('replaced the self-signed certificate'))
  t.ok(warned, 'a warning is logged')
  t.equal(warned?.level, 40, 'at warn level')
  t.equal(warned?.previous_sha256, before?.sha256, 'with the fingerprint clients trusted')
  t.not(warned?.sha256, before?.sha256, 'and the new one')
  t.match(String(warned?.reason), 'registry.lan', 'and why: the new name')
  t.match(second.stderr(), `the fingerprint CHANGED: was ${String(before?.sha256)}`, 'the banner says it changed, from what')
  t.match(second.stderr(), `SHA-256 fingerprint: ${String(warned?.sha256)}`)
})

t.test('portier healthcheck asks the running gateway where its config says: /healthz on the admin listener, else /v2/', async (t) => {
  const cwd = mkdtempSync(join(dir, 'health-'))
  const adminPort = await freePort()
  const registry = await registryFixture(t)
  const gateway = await startGateway({ cwd, config: { upstreams: [{ url: registry.url }], admin: { listen: `127.0.0.1:${adminPort}` } } })
  const configFile = join(cwd, 'portier.yaml')
  const healthy = await cli(['healthcheck', '--config', configFile], cwd)
  t.equal(healthy.code, 0, healthy.stdout + healthy.stderr)
  t.equal(healthy.stdout, `healthy: http://127.0.0.1:${adminPort}/healthz answered 200\n`)
  // Without an admin listener: /v2/ on the main listener, where 401 (auth on) counts as alive.
  const mainOnly = writeConfig('health-main.yaml', { server: { listen: `127.0.0.1:${gateway.port}` }, admin: { listen: '' }, upstreams: [{ url: registry.url }] })
  const v2 = await cli(['healthcheck', '--config', mainOnly])
  t.equal(v2.code, 0, v2.stdout + v2.stderr)
  t.match(v2.stdout, `healthy: https://127.0.0.1:${gateway.port}/v2/ answered`)
  await gateway.stop()
  const down = await cli(['healthcheck', '--config', mainOnly])
  t.equal(down.code, 1, 'nothing listening: unhealthy')
  t.match(down.stdout, /^unhealthy: /)
})

const isRoot = process.getuid?.() === 0

/**
 * setpriv arguments that run the rest as `uid` (group the same number, no supplementary groups).
 * tap's process tracking adds its loader to NODE_OPTIONS of every child, and that loader writes
 * into .tap/ as the new uid: `env -u` drops it.
 */
function switchTo(uid: number): string[] {
  return [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', 'env', '-u', 'NODE_OPTIONS']
}
t.test('compose step 1 as one uid, the gateway as another: a clear error for 0600, and --mode 0644 works', { skip: isRoot ? false : 'needs root to switch uids with setpriv (CI runs as root)' }, async (t) => {
  const registry = await registryFixture(t)
  const hostUid = 10001
  const portierUid = 10002
  // The host user's project directory (./auth is created by them) and the container user's working directory.
  const base = mkdtempSync(join(tmpdir(), 'portier-uids-'))
  t.teardown(() => rmSync(base, { recursive: true, force: true }))
  chmodSync(base, 0o755)
  const host = join(base, 'host')
  const work = join(base, 'portier')
  mkdirSync(host)
  mkdirSync(work)
  chownSync(host, hostUid, hostUid)
  chownSync(work, portierUid, portierUid)
  const htpasswd = join(host, 'auth', 'htpasswd')
  const config = join(base, 'portier.yaml')
  writeFileSync(config, yaml.dump({
    server: { listen: '127.0.0.1:0' },
    admin: { listen: '' },
    upstreams: [{ url: registry.url }],
    auth: { mode: 'htpasswd', htpasswd: { path: htpasswd, generate_admin: false } },
  }))
  chmodSync(config, 0o644)
  const as = (uid: number, args: string[], input?: string) =>
    run('setpriv', [...switchTo(uid), process.execPath, CLI, ...args], {
      cwd: uid === portierUid ? work : host,
      env: cleanEnv(),
      timeoutMs: 30_000,
      ...(input !== undefined ? { input } : {}),
    })

  const made = await as(hostUid, ['passwd', 'add', '--file', htpasswd, 'admin'], 'admin-password-1\n')
  t.equal(made.code, 0, made.stderr)
  t.equal(statSync(htpasswd).mode & 0o777, 0o600, 'passwd writes a new file 0600 by default')
  t.equal(statSync(htpasswd).uid, hostUid, 'owned by the user who ran it')

  const denied = await as(portierUid, ['check-config', '--config', config])
  t.equal(denied.code, 2, 'check-config as the gateway user: invalid')
  const explanation = `${config}: auth.htpasswd.path: expected an htpasswd file Portier can read, found "${htpasswd}": permission denied (owned by uid ${hostUid}, mode 0600) for uid ${portierUid}, the user Portier runs as`
  t.match(denied.stderr, explanation, 'names the file, its owner and mode, and the uid Portier runs as')
  t.match(denied.stderr, `chmod 0644 ${htpasswd}`, 'and what to run')
  t.match(denied.stderr, '"portier passwd add --mode 0644"')
  const served = await as(portierUid, ['serve', '--config', config])
  t.equal(served.code, 2, 'serve exits with the configuration code instead of a stack trace (no crash loop of EACCES)')
  t.notOk(served.timedOut)
  t.match(served.stderr, explanation, 'with the same explanation')
  t.notMatch(served.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace')

  // A closed directory on the way: not "no such file" (which is all existsSync would say), but what to open.
  chmodSync(join(host, 'auth'), 0o700)
  const closed = await as(portierUid, ['check-config', '--config', config])
  chmodSync(join(host, 'auth'), 0o755)
  t.equal(closed.code, 2)
  t.match(closed.stderr, `auth.htpasswd.path: expected an htpasswd file Portier can read, found "${htpasswd}": permission denied for uid ${portierUid}`)
  t.match(closed.stderr, `chmod a+rx ${join(host, 'auth')}`)
  t.notMatch(closed.stderr, 'no such file')

  const documented = await as(hostUid, ['passwd', 'add', '--mode', '0644', '--file', htpasswd, 'admin'], 'admin-password-1\n')
  t.equal(documented.code, 0, documented.stderr)
  t.match(documented.stdout, 'mode 0644')
  t.equal(statSync(htpasswd).mode & 0o777, 0o644, '--mode 0644')
  const another = await as(hostUid, ['passwd', 'add', '--file', htpasswd, 'bob'], 'bob-password-22\n')
  t.equal(another.code, 0, another.stderr)
  t.equal(statSync(htpasswd).mode & 0o777, 0o644, 'a later change without --mode keeps 0644')
  const valid = await as(portierUid, ['check-config', '--config', config])
  t.equal(valid.code, 0, valid.stderr)

  // serve as the gateway user: it starts, and the users from the other uid's file log in.
  const child = spawn('setpriv', [...switchTo(portierUid), process.execPath, CLI, 'serve', '--config', config], {
    cwd: work,
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      await exited
    }
  })
  let stderr = ''
  const logLines: string[] = []
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the gateway did not get ready within 30 s; stderr: ${stderr}`)), 30_000)
    void exited.then((code) => reject(new Error(`the gateway exited (${code}); stderr: ${stderr}`)))
    createInterface({ input: child.stdout }).on('line', (text) => {
      logLines.push(text)
      try {
        const line = JSON.parse(text) as { msg?: string; listen?: string }
        if (line.msg === 'portier ready') {
          clearTimeout(timer)
          resolve(Number(String(line.listen).split(':').pop()))
        }
      } catch {
        // not a log line
      }
    })
  })
  const ca = readFileSync(join(work, 'certs', 'self-signed', 'cert.pem'))
  const get = (authorization?: string): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/v2/', ca, agent: false, headers: authorization ? { authorization } : {} }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
  const login = async (user: string, password: string, message: string): Promise<void> => {
    const status = await get(`Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`)
    t.equal(status, 200, message, status === 200 ? {} : { log: logLines.slice(-5) })
  }
  t.equal(await get(), 401, 'anonymous: asked for credentials')
  await login('admin', 'admin-password-1', 'admin from the file made by the other uid logs in')
  await login('bob', 'bob-password-22', 'and bob')

  // The file made unreadable while the gateway runs (e.g. rewritten by a tool that writes 0600):
  // the reload failure explains itself the same way, and the users loaded before keep working.
  const logged = logLines.length
  chmodSync(htpasswd, 0o600)
  const reloadFailed = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reload failure logged within 10 s; log: ${logLines.slice(logged).join('\n')}`)), 10_000)
    const look = setInterval(() => {
      for (const text of logLines.slice(logged)) {
        const line = JSON.parse(text) as Record<string, unknown>
        if (line.msg === 'htpasswd reload failed; keeping the users loaded before') {
          clearTimeout(timer)
          clearInterval(look)
          resolve(line)
        }
      }
    }, 50)
  })
  t.equal(reloadFailed.level, 50, 'logged as an error')
  t.match(String(reloadFailed.err), `permission denied (owned by uid ${hostUid}, mode 0600) for uid ${portierUid}`, 'naming owner, mode and uid')
  t.match(String(reloadFailed.err), `chmod 0644 ${htpasswd}`, 'and the fix')
  await login('admin', 'admin-password-1', 'the users loaded before still log in')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'stops cleanly')
})
