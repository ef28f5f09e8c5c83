// Runs the registry's own collector (`registry garbage-collect [--dry-run] [--delete-untagged] <config.yml>`) and tallies what it prints as it goes.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { emptyTally, parseCollectorLine, tallyEvent, type CollectorEvent, type CollectorTally } from './gc-output.js'

export interface CollectorOptions {
  binary: string
  configPath: string
  /** Overrides the config's storage.filesystem.rootdirectory: the storage as mounted where Portier runs. */
  storageRoot?: string
  dryRun: boolean
  deleteUntagged: boolean
  /** Told of every event as the collector prints it (progress). */
  onEvent?: (event: CollectorEvent, tally: CollectorTally) => void
  /** Kills the collector (SIGTERM, then SIGKILL after 5 s). */
  signal?: AbortSignal
}

export interface CollectorResult {
  code: number | null
  signal: NodeJS.Signals | null
  tally: CollectorTally
  /** The last lines of its output, for a failure's report. */
  tail: string[]
}

const TAIL_LINES = 20

export function collectorArgs(options: Pick<CollectorOptions, 'configPath' | 'dryRun' | 'deleteUntagged'>): string[] {
  return ['garbage-collect', ...(options.dryRun ? ['--dry-run'] : []), ...(options.deleteUntagged ? ['--delete-untagged'] : []), options.configPath]
}

export function runCollector(options: CollectorOptions): Promise<CollectorResult> {
  return new Promise((resolve, reject) => {
    // Info level so the collector logs each "Deleting blob: …" (the registry's configs often say warn).
    const env: NodeJS.ProcessEnv = { ...process.env, REGISTRY_LOG_LEVEL: 'info' }
    if (options.storageRoot) env.REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY = options.storageRoot
    const child = spawn(options.binary, collectorArgs(options), { stdio: ['ignore', 'pipe', 'pipe'], env })
    const tally = emptyTally()
    const tail: string[] = []
    let settled = false
    const onLine = (line: string): void => {
      tail.push(line)
      if (tail.length > TAIL_LINES) tail.shift()
      const event = parseCollectorLine(line)
      if (!event) return
      tallyEvent(tally, event)
      try {
        options.onEvent?.(event, tally)
      } catch {
        // A progress listener (a client that went away) must not stop the collector's output being read.
      }
    }
    let open = 0
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined
    const finish = (): void => {
      if (settled || !exit || open > 0) return
      settled = true
      options.signal?.removeEventListener('abort', abort)
      resolve({ ...exit, tally, tail })
    }
    for (const stream of [child.stdout, child.stderr]) {
      open += 1
      const lines = createInterface({ input: stream })
      lines.on('line', onLine)
      lines.on('close', () => {
        open -= 1
        finish()
      })
      stream.on('error', () => undefined)
    }
    let killer: NodeJS.Timeout | undefined
    const abort = (): void => {
      child.kill('SIGTERM')
      killer = setTimeout(() => child.kill('SIGKILL'), 5000)
      killer.unref()
    }
    if (options.signal?.aborted) abort()
    else options.signal?.addEventListener('abort', abort, { once: true })
    child.on('error', (error) => {
      if (settled) return
      settled = true
      clearTimeout(killer)
      options.signal?.removeEventListener('abort', abort)
      reject(new Error(`could not run ${options.binary} garbage-collect: ${error.message}`, { cause: error }))
    })
    child.on('close', (code, signal) => {
      clearTimeout(killer)
      exit = { code, signal }
      finish()
    })
  })
}
