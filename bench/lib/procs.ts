// Every process the bench starts goes through here, so all of them are stopped at the end (and on Ctrl-C),
// and their CPU time and peak memory can be read from /proc.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'

export interface Started {
  child: ChildProcess
  pid: number
  name: string
}

export class Processes {
  private readonly live = new Set<ChildProcess>()

  /** Starts `command args` with stdout and stderr appended to logFile. */
  start(name: string, command: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Started {
    const fd = openSync(logFile, 'a')
    let child: ChildProcess
    try {
      child = spawn(command, args, { stdio: ['ignore', fd, fd], env })
    } finally {
      closeSync(fd)
    }
    if (child.pid === undefined) throw new Error(`${name}: could not start ${command}`)
    this.live.add(child)
    child.once('exit', () => this.live.delete(child))
    return { child, pid: child.pid, name }
  }

  /** SIGTERM to everything still running, SIGKILL after 5 s; resolves when all have exited. */
  async stopAll(): Promise<void> {
    await Promise.all([...this.live].map((child) => stop(child)))
  }

  /** Last resort when the bench process itself is about to exit. */
  killAllNow(): void {
    for (const child of this.live) child.kill('SIGKILL')
  }
}

export function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** user + system CPU seconds a process has used so far (0 when it is gone). */
export async function cpuSeconds(pid: number): Promise<number> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may contain spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return 0
  }
}

/** Resets the peak resident set size (VmHWM) of a process, so the next reading covers one workload only. */
export async function resetPeakRss(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, '5')
    return true
  } catch {
    return false
  }
}

/** Peak resident set size in bytes since start or the last reset. */
export async function peakRss(pid: number): Promise<number> {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/** Direct children of a process (nginx's workers), from /proc. */
export async function childPids(parent: number): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === parent) found.push(Number(entry))
    } catch {
      // The process ended while we looked.
    }
  }
  return found
}

function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest
    const req = request(url, { method: 'GET', rejectUnauthorized: false, agent: false, timeout: 1000 }, (res) => {
      // The status is all it asks for: a download ceiling answers every request with the whole blob.
      res.destroy()
      resolve(res.statusCode ?? 0)
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
    req.end()
  })
}

/** Waits until url answers at all (any status), or throws after timeoutMs. */
export async function waitForHttp(url: string, started: Started, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (started.child.exitCode !== null || started.child.signalCode !== null) throw new Error(`${started.name} exited before it answered on ${url}`)
    try {
      await statusOf(url)
      return
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${started.name} did not answer on ${url} within ${timeoutMs} ms: ${(error as Error).message}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
