// A real PostgreSQL (Debian's postgresql package) for tests: initdb in a temp dir, `postgres` on a free 127.0.0.1 port (its unix socket in the temp dir), one database; can be killed like a crash and started again on the same port and data.
import { spawn, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { freePort } from './ports.js'
import { run } from './exec.js'

/** Where Debian puts the server's binaries (not on PATH): the newest /usr/lib/postgresql/N/bin. */
export function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter((name) => /^\d+$/.test(name) && existsSync(join(root, name, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a))
  return versions[0] === undefined ? undefined : join(root, versions[0], 'bin')
}

export interface Postgres {
  host: string
  port: number
  user: string
  password: string
  database: string
  /** postgres://portier:PASSWORD@127.0.0.1:PORT/DATABASE */
  url: string
  /** The same URL without the password (for store.password_file). */
  urlWithoutPassword: string
  /** A file holding the password. */
  passwordFile: string
  /** Another empty database on the same server, for a test that needs its own. */
  createDatabase(name: string): Promise<string>
  /** SIGKILL to the server and all its backends at once (a crash); start() again recovers from the WAL. */
  kill(): Promise<void>
  start(): Promise<void>
  /** Stops the server and removes the temp dir. Idempotent. */
  stop(): Promise<void>
}

/**
 * postgres refuses to run as root: as root (CI), initdb and the server run as `nobody` (the temp dir is
 * theirs); as anyone else, as that user.
 */
function unprivileged(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  return { uid: 65534, gid: 65534 }
}

const live = new Set<ChildProcess>()
function killAll(): void {
  for (const child of live) if (child.pid !== undefined && child.exitCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
}
process.on('exit', killAll)
// A test or bench ended by a signal (tap's timeout, Ctrl-C) takes its servers along, then dies of that signal as it would have.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    killAll()
    process.kill(process.pid, signal)
  })
}

export async function startPostgres(options: { database?: string } = {}): Promise<Postgres> {
  const bin = postgresBin()
  if (!bin) throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: apt-get install postgresql')
  const dir = mkdtempSync(join(tmpdir(), 'portier-pg-'))
  const data = join(dir, 'data')
  const sockets = join(dir, 'run')
  mkdirSync(sockets)
  const password = randomBytes(12).toString('hex')
  const passwordFile = join(dir, 'password')
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o644 })
  const user = 'portier'
  const as = unprivileged()
  if (as) {
    chownSync(dir, as.uid, as.gid)
    chownSync(sockets, as.uid, as.gid)
    chownSync(passwordFile, as.uid, as.gid)
  }
  const spawnAs = as ? { uid: as.uid, gid: as.gid } : {}
  const init = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(join(bin, 'initdb'), ['-D', data, '-U', user, `--pwfile=${passwordFile}`, '--auth-host=scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--no-locale', '--no-sync'], {
      ...spawnAs,
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, output }))
  })
  if (init.code !== 0) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`initdb failed (${String(init.code)}): ${init.output}`)
  }
  const port = await freePort()
  const host = '127.0.0.1'
  let server: ChildProcess | undefined
  let log = ''

  const ready = async (): Promise<void> => {
    const deadline = Date.now() + 30_000
    for (let attempt = 0; Date.now() < deadline && attempt < 300; attempt++) {
      const probe = await run(join(bin, 'pg_isready'), ['-h', host, '-p', String(port), '-U', user, '-d', 'postgres', '-t', '1'], { timeoutMs: 5000 })
      if (probe.code === 0) return
      if (server?.exitCode !== null && server?.exitCode !== undefined) throw new Error(`postgres exited (${server.exitCode}): ${log}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    throw new Error(`postgres did not accept connections within 30 s: ${log}`)
  }

  const start = async (): Promise<void> => {
    if (server && server.exitCode === null && server.signalCode === null) return
    log = ''
    // detached: its own process group, so kill() reaches every backend at once, like a crash of the machine's database.
    const child = spawn(join(bin, 'postgres'), [
      '-D', data, '-h', host, '-p', String(port), '-k', sockets,
      '-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200', '-c', 'shared_buffers=32MB', '-c', 'log_min_messages=warning',
    ], { ...spawnAs, cwd: dir, detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr.on('data', (chunk: Buffer) => {
      if (log.length < 20_000) log += chunk.toString()
    })
    child.on('error', () => undefined)
    live.add(child)
    child.on('exit', () => live.delete(child))
    server = child
    await ready()
  }

  const exited = (child: ChildProcess): Promise<void> =>
    child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()))

  const kill = async (): Promise<void> => {
    const child = server
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // Gone already.
    }
    // The whole group dies at once: no backend is left holding shared memory, so start() can recover at once.
    await exited(child)
  }

  await start()
  const admin = (database: string): pg.Client => new pg.Client({ host, port, user, password, database })
  const createDatabase = async (name: string): Promise<string> => {
    const client = admin('postgres')
    await client.connect()
    try {
      await client.query(`CREATE DATABASE "${name.replace(/"/g, '')}"`)
    } finally {
      await client.end()
    }
    return `postgres://${user}:${password}@${host}:${port}/${name}`
  }
  const database = options.database ?? 'portier'
  await createDatabase(database)

  let stopped = false
  return {
    host, port, user, password, database, passwordFile,
    url: `postgres://${user}:${password}@${host}:${port}/${database}`,
    urlWithoutPassword: `postgres://${user}@${host}:${port}/${database}`,
    createDatabase,
    kill,
    start,
    async stop() {
      if (stopped) return
      stopped = true
      const child = server
      if (child?.pid && child.exitCode === null && child.signalCode === null) {
        // SIGINT: fast shutdown (disconnects clients); SIGKILL to the group if it hangs.
        child.kill('SIGINT')
        const timer = setTimeout(() => {
          try {
            process.kill(-(child.pid as number), 'SIGKILL')
          } catch {
            // Gone.
          }
        }, 10_000)
        await exited(child)
        clearTimeout(timer)
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
