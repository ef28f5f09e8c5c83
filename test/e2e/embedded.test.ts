// With no upstreams the gateway runs its own docker-registry: push/pull through it, restart after a crash, no orphan on stop, a clear error without the binary.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { run } from '../helpers/exec.js'
import { CLI, gatewayFixture, type GatewayHandle, type LogLine } from '../helpers/gateway.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'
import { freePort } from '../helpers/ports.js'
import { GatewayClient } from '../helpers/gwclient.js'
import { skopeoCopy } from '../helpers/skopeo.js'

const work = mkdtempSync(join(tmpdir(), 'portier-embedded-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
// tap's process tracking (NODE_OPTIONS) and the system CA bundle (NODE_EXTRA_CA_CERTS) only slow the
// gateway's start-up: its upstreams here are plain HTTP.
const env = { NODE_OPTIONS: '', NODE_EXTRA_CA_CERTS: '' }

/** Pids of processes whose command line contains `text`. */
async function pidsMatching(text: string): Promise<number[]> {
  const r = await run('pgrep', ['-f', text])
  return r.stdout.split('\n').filter(Boolean).map(Number)
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`)
}

/** The first log line matching that is logged from now on (lines already logged do not count). */
function nextLog(gateway: GatewayHandle, match: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
  const mark = gateway.logs.length
  return gateway.waitForLog((line) => gateway.logs.indexOf(line) >= mark && match(line), timeoutMs)
}

async function pushAndPull(t: Test, gateway: GatewayHandle, name: string): Promise<void> {
  const image = await makeOciLayout(join(work, `${name}-src`), { layers: [1024 * 1024, 300 * 1024], tag: 'v1' })
  const ref = `docker://${gateway.host}/embedded/${name}:v1`
  await skopeoCopy(`oci:${image.dir}:v1`, ref, { destCertDir: gateway.certDir })
  await skopeoCopy(ref, `oci:${join(work, `${name}-back`)}:v1`, { srcCertDir: gateway.certDir })
  const back = await readOciLayout(join(work, `${name}-back`), 'v1')
  t.equal(back.manifestDigest, image.manifestDigest, `${name}: manifest digest`)
  t.equal(back.configDigest, image.configDigest, `${name}: config digest`)
  t.same(back.layerDigests, image.layerDigests, `${name}: layer digests`)
}

t.test('no upstreams: the embedded registry serves pushes and pulls, restarts when killed, and stops with the gateway', async (t) => {
  const cwd = mkdtempSync(join(work, 'gw-'))
  // Left over from a registry:2 container's settings: must not move the embedded registry elsewhere.
  const strayAddr = `127.0.0.1:${await freePort()}`
  const gateway = await gatewayFixture(t, { env: { ...env, REGISTRY_HTTP_ADDR: strayAddr, REGISTRY_HTTP_SECRET: 'stray' }, cwd })
  const started = await gateway.waitForLog((line) => line.msg === 'embedded registry started')
  const ignored = await gateway.waitForLog((line) => Array.isArray(line.ignored))
  t.same([...(ignored.ignored as string[])].sort(), ['REGISTRY_HTTP_ADDR', 'REGISTRY_HTTP_SECRET'], 'stray REGISTRY_HTTP_* variables are named and ignored')
  t.not(String(started.url), `http://${strayAddr}`)
  const registryUrl = String(started.url)
  t.match(registryUrl, /^http:\/\/127\.0\.0\.1:\d+$/, 'bound to loopback only')
  t.match(gateway.stderr(), /upstream: embedded registry/, 'the banner says which registry is behind')
  const ready = await gateway.waitForLog((line) => line.msg === 'portier ready')
  t.same(ready.upstreams, [{ name: 'embedded', url: registryUrl }])

  const configPath = join(cwd, 'data', 'registry', 'config.yml')
  t.equal(started.config, configPath, 'its config is generated under data/registry in the working directory')
  t.match(readFileSync(configPath, 'utf8'), /addr: 127\.0\.0\.1:/)
  const pids = await pidsMatching(configPath)
  t.same(pids, [started.pid], 'exactly one registry process, the one logged')
  const pid = pids[0] as number

  await pushAndPull(t, gateway, 'first')
  t.ok(existsSync(join(cwd, 'data', 'registry', 'storage', 'docker', 'registry', 'v2', 'repositories', 'embedded', 'first')), 'blobs land in data/registry/storage')

  // A crash: the supervisor restarts it after 1 s on the same port, with the same storage.
  const exitedLog = nextLog(gateway, (line) => line.msg === 'embedded registry exited; restarting')
  const backLog = nextLog(gateway, (line) => line.msg === 'embedded registry is back')
  process.kill(pid, 'SIGKILL')
  const exited = await exitedLog
  t.equal(exited.signal, 'SIGKILL')
  t.equal(exited.pid, pid)
  t.equal(exited.restartInMs, 1000, 'the first restart waits 1 s')
  // Requests while it is down fail (and mark it down: failure_threshold refused connections).
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const whileDown = []
  for (let i = 0; i < 3; i++) whileDown.push((await client.send('GET', '/v2/')).status)
  t.same(whileDown, [503, 503, 503], 'the gateway answers 503 while the registry is down')
  const back = await backLog
  // The health checks saw it down; once 'is back' is logged the gateway must serve at once, not answer 503 until its next check.
  t.equal((await client.send('GET', '/v2/')).status, 200, 'the gateway serves as soon as the registry is back')
  const [newPid, ...extra] = await pidsMatching(configPath)
  t.ok(newPid && newPid !== pid, `a new registry process (${pid} → ${newPid})`)
  t.equal(back.pid, newPid)
  t.same(extra, [])
  const tags = await fetch(`${registryUrl}/v2/embedded/first/tags/list`)
  t.same(await tags.json(), { name: 'embedded/first', tags: ['v1'] }, 'same port and storage after the restart')
  await pushAndPull(t, gateway, 'second')

  // Crashing again soon after a restart backs off further.
  const againLog = nextLog(gateway, (line) => line.msg === 'embedded registry exited; restarting')
  const backAgainLog = nextLog(gateway, (line) => line.msg === 'embedded registry is back')
  process.kill(newPid as number, 'SIGKILL')
  t.equal((await againLog).restartInMs, 2000, 'a second crash soon after the first waits 2 s')
  const lastPid = (await backAgainLog).pid as number
  t.equal((await client.send('GET', '/v2/')).status, 200, 'and again after the second restart')
  t.same(await pidsMatching(configPath), [lastPid], 'running again')

  const result = await gateway.stop()
  t.equal(result.code, 0, 'the gateway exits cleanly on SIGTERM')
  t.notOk(alive(lastPid), 'the registry process is gone once the gateway has exited')
  t.same(await pidsMatching(configPath), [], 'no registry process is left behind')
})

t.test('a registry that keeps crashing backs off up to restart_max_backoff; one that stayed up starts over at 1 s', async (t) => {
  const cwd = mkdtempSync(join(work, 'gw-'))
  const gateway = await gatewayFixture(t, { env, cwd, config: { embedded_registry: { restart_max_backoff: '1500ms' } } })
  const configPath = join(cwd, 'data', 'registry', 'config.yml')
  /** Kills the registry process as soon as there is one; resolves with the supervisor's log line about it. */
  const killAndRead = async (): Promise<LogLine> => {
    let pid: number | undefined
    await waitFor('a registry process exists', async () => {
      pid = (await pidsMatching(configPath))[0]
      return pid !== undefined
    }, 8000)
    const exited = nextLog(gateway, (l) => l.msg === 'embedded registry exited; restarting', 8000)
    process.kill(pid as number, 'SIGKILL')
    const line = await exited
    t.equal(line.pid, pid, `the log names the killed process ${pid}`)
    return line
  }
  const delays: unknown[] = []
  for (let i = 0; i < 3; i++) delays.push((await killAndRead()).restartInMs)
  t.same(delays, [1000, 1500, 1500], 'doubling from 1 s, capped by restart_max_backoff')

  const back = await nextLog(gateway, (line) => line.msg === 'embedded registry is back')
  await new Promise((r) => setTimeout(r, 1700))
  const stable = await killAndRead()
  t.equal(stable.pid, back.pid, 'the process that came back is the one killed')
  t.ok(Number(stable.ranMs) >= 1500, `it ran ${Number(stable.ranMs)} ms`)
  t.equal(stable.restartInMs, 1000, 'after running longer than the longest delay the backoff starts over')
  const again = await nextLog(gateway, (line) => line.msg === 'embedded registry is back')
  const response = await fetch(`${String(again.url)}/v2/`)
  await response.arrayBuffer()
  t.equal(response.status, 200, 'and it serves again')
})

t.test('SIGTERM while the embedded registry is still starting leaves no registry behind', async (t) => {
  const cwd = mkdtempSync(join(work, 'early-'))
  // A registry that is slow to start (as on a busy host), so the signal surely lands during start-up.
  const slow = join(cwd, 'slow-registry')
  writeFileSync(slow, '#!/bin/sh\n[ "$1" = serve ] && sleep 1\nexec docker-registry "$@"\n', { mode: 0o755 })
  writeFileSync(join(cwd, 'portier.yaml'), `server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nembedded_registry:\n  binary: ${slow}\n`)
  const configPath = join(cwd, 'data', 'registry', 'config.yml')
  const child = spawn(process.execPath, [CLI, 'serve', '--config', join(cwd, 'portier.yaml')], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.resume()
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  await waitFor('the registry process exists', async () => (await pidsMatching(configPath)).length > 0, 10_000)
  t.notOk(stdout.includes('embedded registry started'), 'the registry is still starting')
  child.kill('SIGTERM')
  t.equal(await exited, 0, 'the gateway still stops cleanly (not killed by the signal mid-start)')
  t.same(await pidsMatching(configPath), [], 'the registry it started is gone')
})

t.test("the registry's 404s to existence probes are logged at debug, its real errors still at error", async (t) => {
  const cwd = mkdtempSync(join(work, 'gw-'))
  const gateway = await gatewayFixture(t, { env, cwd, config: { log: { level: 'debug' } } })
  const client = new GatewayClient(gateway)
  t.teardown(() => client.close())
  const digest = `sha256:${'0'.repeat(63)}1`
  const head = await client.send('HEAD', `/v2/probe/app/blobs/${digest}`)
  t.equal(head.status, 404, 'the blob is unknown')
  const probe = await gateway.waitForLog((line) => line.msg === 'registry output' && String(line.line).includes('err.code="blob unknown"'))
  t.equal(probe.level, 20, '"blob unknown" (a client checking before it pushes) is debug, not error')
  const manifest = await client.send('HEAD', '/v2/probe/app/manifests/latest')
  t.equal(manifest.status, 404)
  const tag = await gateway.waitForLog((line) => line.msg === 'registry output' && String(line.line).includes('err.code="manifest unknown"'))
  t.equal(tag.level, 20, '"manifest unknown" likewise')
  // With the registry's own `_state` in the URL the session is the registry's (uploads without it are held in storage by Portier).
  const bogus = await client.send('PUT', `/v2/probe/app/blobs/uploads/not-a-session?_state=bogus&digest=${digest}`)
  t.equal(bogus.status, 404)
  const real = await gateway.waitForLog((line) => line.msg === 'registry output' && String(line.line).includes('err.code="blob upload'))
  t.equal(real.level, 50, 'other registry errors stay at error')
})

t.test('without docker-registry on PATH and no embedded_registry.binary, start-up fails and says what to do', async (t) => {
  const cwd = mkdtempSync(join(work, 'missing-'))
  writeFileSync(join(cwd, 'portier.yaml'), 'server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n')
  const r = await run(process.execPath, [CLI, 'serve', '--config', join(cwd, 'portier.yaml')], {
    cwd,
    env: { PATH: join(cwd, 'empty-bin'), HOME: cwd },
    timeoutMs: 20_000,
  })
  t.not(r.code, 0, `non-zero exit (${r.code})`)
  t.notOk(r.timedOut, 'exits by itself')
  t.match(r.stderr, /apt-get install docker-registry/, 'says how to install it')
  t.match(r.stderr, /upstreams/, 'or how to use an existing registry')
  t.match(r.stderr, /embedded_registry\.binary/, 'or how to point at the binary')
  t.notOk(existsSync(join(cwd, 'certs')), 'nothing was set up before failing')

  const wrong = await run(process.execPath, [CLI, 'serve', '--config', join(cwd, 'portier.yaml')], {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd, PORTIER_EMBEDDED_REGISTRY_BINARY: join(cwd, 'no-such-registry') },
    timeoutMs: 20_000,
  })
  t.not(wrong.code, 0, 'a configured binary that does not exist fails too')
  t.match(wrong.stderr, /embedded_registry\.binary/)
  t.match(wrong.stderr, /no-such-registry/)
})
