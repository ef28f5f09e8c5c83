// Runs a real redis-server (Debian's) on 127.0.0.1, a free port and a temp dir with persistence off, and stops it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort } from './ports.js'

export const REDIS_BIN = process.env.PORTIER_REDIS_BIN ?? '/usr/bin/redis-server'

export interface RedisHandle {
  /** redis://127.0.0.1:PORT */
  url: string
  port: number
  dir: string
  child: ChildProcess
  /** SIGKILL now (the "Redis died" case); resolves when it has exited. */
  kill(): Promise<void>
  /** Starts it again on the same port (after kill), empty. */
  restart(): Promise<void>
  /** One command over a plain RESP connection; resolves with the raw reply text. */
  command(...args: string[]): Promise<string>
  /** SIGTERM and wait; removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

const live = new Set<ChildProcess>()
process.on('exit', () => {
  for (const child of live) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})

function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((arg) => `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`).join('')}`
}

function sendCommand(port: number, args: string[], timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    let reply = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`redis ${args[0] ?? ''}: no reply within ${timeoutMs} ms`))
    }, timeoutMs)
    socket.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8')
      // Enough for the simple replies tests read (+OK, :n, $n, -ERR); the connection is closed after the first line(s).
      if (/\r\n$/.test(reply) && !/^\$\d+\r\n$/.test(reply)) {
        clearTimeout(timer)
        socket.end()
        resolve(reply)
      }
    })
    socket.write(resp(args))
  })
}

async function waitForPing(port: number, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastError = ''
  for (let attempt = 0; Date.now() < deadline && attempt < 500; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited during start-up (${child.exitCode ?? child.signalCode ?? ''})`)
    try {
      if ((await sendCommand(port, ['PING'], 500)).startsWith('+PONG')) return
    } catch (error) {
      lastError = (error as Error).message
    }
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  throw new Error(`redis-server on 127.0.0.1:${port} did not answer PING within ${timeoutMs} ms (${lastError})`)
}

export async function startRedis(): Promise<RedisHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'portier-redis-'))
  const port = await freePort()
  let child: ChildProcess
  let output = ''
  const launch = async (): Promise<void> => {
    output = ''
    child = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    live.add(child)
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.once('exit', () => live.delete(child))
    try {
      await waitForPing(port, child, 10_000)
    } catch (error) {
      child.kill('SIGKILL')
      throw new Error(`${(error as Error).message}\n${output.slice(-2000)}`)
    }
  }
  const exited = (): Promise<void> =>
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()))
  await launch()
  let stopped: Promise<void> | undefined
  const handle: RedisHandle = {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get child() {
      return child
    },
    async kill() {
      const done = exited()
      child.kill('SIGKILL')
      await done
    },
    restart: launch,
    command: (...args) => sendCommand(port, args),
    stop() {
      stopped ??= (async () => {
        const done = exited()
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await done
        clearTimeout(killer)
        await rm(dir, { recursive: true, force: true })
      })()
      return stopped
    },
  }
  return handle
}

/** A redis-server bound to the test's lifetime: stopped in t.teardown even when the test fails. */
export async function redisFixture(t: Test): Promise<RedisHandle> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  return redis
}
