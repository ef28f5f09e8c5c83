// Garbage collection without downtime: maintenance on → wait for writes in flight → the registry's own collector on its storage → maintenance off (always) → a report of what was freed.
import { randomUUID } from 'node:crypto'
import type { Logger } from '../observe/log.js'
import { diskUsage } from './disk-usage.js'
import { runCollector, type CollectorResult } from './gc-collector.js'
import { emptyTally, type CollectorEvent, type CollectorTally } from './gc-output.js'
import { ACTIVE_UPLOAD_MS, untilStorageQuiet } from './gc-quiet.js'
import { protectIndexChildren, protectRecentUploads, releaseKept, releaseUploads, type KeptManifest, type KeptUploads } from './gc-protect.js'
import { RegistryStorage } from './registry-storage.js'
import type { GcTarget } from './gc-target.js'

/** What GC needs of maintenance mode (src/housekeeping/maintenance.ts). */
export interface MaintenanceSwitch {
  readonly isOn: boolean
  enter(options?: { message?: string; by?: string; retryAfterMs?: number; drainTimeoutMs?: number }): unknown
  leave(by?: string): unknown
  drain(timeoutMs?: number): Promise<{ finished: number; remaining: number }>
  inFlight(): { uploads: number; writes: number }
  /** Why it is on (the message): tells maintenance left on by a collection that never finished. */
  status?(): { on: boolean; message: string }
  /** Ends the window for writes begun before, here and (announced) at the other instances. */
  closeDrain?(): unknown
}

export type GcTrigger = 'api' | 'ui' | 'schedule' | 'retention'

export interface GcRequest {
  dryRun: boolean
  deleteUntagged: boolean
  trigger: GcTrigger
  /** Who asked (an admin user), for the log and the history. */
  by?: string
}

export type GcPhase = 'starting' | 'maintenance' | 'draining' | 'protecting' | 'measuring' | 'collecting' | 'releasing' | 'leaving' | 'done' | 'failed'

/** One progress line: the phase and what is known so far. */
export interface GcProgress {
  runId: string
  phase: GcPhase
  message: string
  at: string
  inFlight?: { uploads: number; writes: number }
  collector?: { repositories: number; manifestsMarked: number; blobsMarked: number; blobsDeleted: number; manifestsDeleted: number }
  /** The finished run's report (phase done or failed). */
  run?: GcRun
}

export interface GcRun {
  id: string
  trigger: GcTrigger
  by?: string
  dryRun: boolean
  deleteUntagged: boolean
  startedAt: string
  finishedAt: string
  durationSeconds: number
  result: 'success' | 'failure'
  error?: string
  /** Disk usage of the storage root before and after (allocated bytes, as du counts them). */
  bytesBefore: number
  bytesAfter: number
  bytesFreed: number
  blobsMarked: number
  /** Eligible: what the collector found unreferenced; deleted: what it removed (0 on a dry run). */
  blobsEligible: number
  manifestsEligible: number
  blobsDeleted: number
  manifestsDeleted: number
  /** Child manifests of tagged indexes kept by a temporary tag (with --delete-untagged). */
  protectedManifests: number
  /** Writes in flight when the run began that finished while it waited, and those it stopped waiting for. */
  drain?: { finished: number; remaining: number }
  /** How long writes were refused. */
  maintenanceSeconds: number
}

export class GcBusy extends Error {
  override name = 'GcBusy'
  constructor(readonly current: GcProgress) {
    super(`a garbage collection is already running (${current.runId}, ${current.phase})`)
  }
}

export interface GarbageCollectorDeps {
  /** Where to collect; throws (GcUnavailable) with the reason when GC cannot run here. */
  target: () => GcTarget
  maintenance: MaintenanceSwitch
  drainTimeoutMs: number
  log: Logger
  /** Told of every finished run (metrics, store). */
  onFinished?: (run: GcRun) => void
  /** Runs kept for the history (newest first). */
  historySize?: number
  /** Resolves once the maintenance switch is stored and announced to the other instances (shared.redis); awaited before draining. */
  announced?: () => Promise<void>
  /** Where finished runs are kept across restarts (the store's gc_history); read once at construction. */
  store?: { record(run: GcRun): Promise<void>; list(limit: number): Promise<GcRun[]> }
  now?: () => number
}

const MAINTENANCE_MESSAGE = 'garbage collection: pushes and deletes are paused, pulls work'
/** Progress lines while the collector prints: at most one per this many ms (its output is one line per blob). */
const PROGRESS_EVERY_MS = 250

const STOPPED = 'stopped: the gateway is shutting down'

/** After every instance has closed its window: requests admitted just before (a commit) finish within this. */
const CUT_OFF_GRACE_MS = 1_000

/** The promise's value, or a rejection as soon as `signal` aborts (a drain can wait minutes; shutdown cannot). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new Error(STOPPED))
  return new Promise<T>((resolve, reject) => {
    const stop = (): void => reject(new Error(STOPPED))
    signal.addEventListener('abort', stop, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', stop)
        resolve(value)
      },
      (error: unknown) => {
        signal.removeEventListener('abort', stop)
        reject(error instanceof Error ? error : new Error(String(error)))
      },
    )
  })
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

export class GarbageCollector {
  private running: GcProgress | undefined
  private readonly runs: GcRun[]
  /** The run in progress: stopped (collector killed, temporary tags removed, maintenance left) by close(). */
  private active: { abort: AbortController; finished: Promise<GcRun> } | undefined
  private readonly now: () => number

  constructor(private readonly deps: GarbageCollectorDeps) {
    this.now = deps.now ?? Date.now
    this.runs = []
    // The stored history arrives a moment after start; runs finished meanwhile stay first.
    deps.store
      ?.list(deps.historySize ?? 20)
      .then((stored) => {
        const known = new Set(this.runs.map((run) => run.id))
        this.runs.push(...stored.filter((run) => !known.has(run.id)))
        this.runs.length = Math.min(this.runs.length, deps.historySize ?? 20)
      })
      .catch(() => undefined)
  }

  /** The run in progress (its latest progress), if any. */
  current(): GcProgress | undefined {
    return this.running
  }

  /** Finished runs, newest first. */
  history(): GcRun[] {
    return [...this.runs]
  }

  /**
   * Runs one collection; rejects with GcBusy while another runs, and with the target's error when GC
   * cannot run here. A failed collection resolves with result 'failure' (and maintenance left).
   */
  async run(request: GcRequest, onProgress?: (progress: GcProgress) => void): Promise<GcRun> {
    return await this.start(request, onProgress).finished
  }

  /**
   * Starts a run and returns at once: throws GcBusy while another runs and the target's error
   * (GcUnavailable) when GC cannot run here, before anything has changed.
   */
  start(request: GcRequest, onProgress?: (progress: GcProgress) => void): { runId: string; finished: Promise<GcRun> } {
    if (this.running) throw new GcBusy(this.running)
    const target = this.deps.target()
    const id = randomUUID()
    this.running = { runId: id, phase: 'starting', message: 'starting', at: new Date(this.now()).toISOString() }
    const abort = new AbortController()
    const finished = this.execute(id, target, request, onProgress, abort.signal)
    this.active = { abort, finished }
    void finished.finally(() => {
      if (this.active?.finished === finished) this.active = undefined
    }).catch(() => undefined)
    return { runId: id, finished }
  }

  /** At shutdown: kills the collector of a run in progress and waits for it to clean up (the run fails). */
  async close(): Promise<void> {
    const active = this.active
    if (!active) return
    active.abort.abort()
    await active.finished.catch(() => undefined)
  }

  private async execute(id: string, target: GcTarget, request: GcRequest, onProgress: ((progress: GcProgress) => void) | undefined, signal: AbortSignal): Promise<GcRun> {
    const started = this.now()
    const log = this.deps.log.child({ component: 'gc', gc_run: id })
    const tell = (phase: GcPhase, message: string, extra: Partial<GcProgress> = {}): void => {
      const progress: GcProgress = { runId: id, phase, message, at: new Date(this.now()).toISOString(), ...extra }
      this.running = progress
      try {
        onProgress?.(progress)
      } catch {
        // A caller that stopped listening does not stop the run.
      }
    }
    log.info({ dry_run: request.dryRun, delete_untagged: request.deleteUntagged, trigger: request.trigger, by: request.by, storage: target.storageRoot }, 'garbage collection started')

    const storage = new RegistryStorage(target.storageRoot)
    const { maintenance } = this.deps
    // A dry run deletes nothing, so writes go on during it; a real run needs the registry to not write.
    // Maintenance on with a collection's message, while none runs (this one holds the lock across instances): a collection
    // whose instance died left it on; this run takes it over and leaves it, or writes would stay refused for ever.
    const leftByDeadRun = !request.dryRun && maintenance.isOn && maintenance.status?.().message === MAINTENANCE_MESSAGE
    if (leftByDeadRun) log.warn({}, 'garbage collection: maintenance was left on by a collection that did not finish (its instance stopped); this run leaves it when done')
    const ownsMaintenance = !request.dryRun && (!maintenance.isOn || leftByDeadRun)
    let maintenanceFrom: number | undefined
    let kept: KeptManifest[] = []
    let uploads: KeptUploads[] = []
    let drain: { finished: number; remaining: number } | undefined
    let before = 0
    let after = 0
    let collected: CollectorResult | undefined
    let failure: string | undefined
    try {
      if (!request.dryRun) {
        // Taken before the switch: a blob committed from here on may belong to a push GC let finish.
        maintenanceFrom = this.now()
        if (ownsMaintenance) {
          tell('maintenance', 'entering maintenance: new pushes and deletes are refused')
          maintenance.enter({ message: MAINTENANCE_MESSAGE, drainTimeoutMs: this.deps.drainTimeoutMs, ...(request.by ? { by: request.by } : { by: `gc (${request.trigger})` }) })
        } else {
          tell('maintenance', 'maintenance is already on: leaving it on afterwards')
        }
        // The other instances refuse writes once they hear of the switch: only then are the writes to wait for all begun.
        if (this.deps.announced) await untilAborted(this.deps.announced(), signal)
        const inFlight = maintenance.inFlight()
        tell('draining', `waiting for ${inFlight.uploads} upload(s) and ${inFlight.writes} write(s) in flight`, { inFlight })
        drain = await untilAborted(maintenance.drain(this.deps.drainTimeoutMs), signal)
        if (drain.remaining > 0) log.warn({ remaining: drain.remaining, timeout_ms: this.deps.drainTimeoutMs }, 'garbage collection: stopped waiting for writes in flight; their uploads are refused from now on')
        // Writes this instance does not see: uploads and pushes another instance (or worker) began before
        // it heard of the switch, or a client's straight to the registry. They are in the storage.
        let waitedElsewhere = false
        const quiet = await untilStorageQuiet(storage, {
          sinceMs: maintenanceFrom - ACTIVE_UPLOAD_MS,
          deadline: maintenanceFrom + this.deps.drainTimeoutMs,
          aborted: () => signal.aborted,
          now: this.now,
          onWaiting: (pending) => {
            waitedElsewhere = true
            tell('draining', `waiting for ${pending.uploads.length} upload(s) and ${pending.pushes.length} push(es) being written into the storage elsewhere (another instance or a client of the registry)`, { inFlight: { uploads: pending.uploads.length, writes: pending.pushes.length } })
          },
        })
        if (signal.aborted) throw new Error(STOPPED)
        const left = quiet.remaining.uploads.length + quiet.remaining.pushes.length
        if (left > 0) log.warn({ uploads: quiet.remaining.uploads.slice(0, 20), pushes: quiet.remaining.pushes.slice(0, 20), waited_ms: quiet.waitedMs, timeout_ms: this.deps.drainTimeoutMs }, 'garbage collection: stopped waiting for writes into the storage elsewhere (gc.drain_timeout); their commits are refused from now on')
        else if (waitedElsewhere) log.info({ waited_ms: quiet.waitedMs }, 'garbage collection: writes into the storage elsewhere have finished')
        // Every instance stops admitting what was begun before (until now, a push in flight could still
        // commit blobs, which the collector would delete), then a moment for commits already admitted.
        if (maintenance.closeDrain) {
          maintenance.closeDrain()
          // Alone (nothing shared), this instance's own drain has already waited for what it admitted.
          if (this.deps.announced) {
            await untilAborted(this.deps.announced(), signal)
            await untilAborted(new Promise((resolve) => setTimeout(resolve, CUT_OFF_GRACE_MS)), signal)
          }
        }
      }
      if (request.deleteUntagged) {
        tell('protecting', 'keeping the manifests of tagged multi-arch indexes (temporary tags)')
        kept = await protectIndexChildren(storage)
        if (kept.length > 0) log.info({ kept: kept.length }, 'garbage collection: child manifests of tagged indexes kept for this run')
      }
      if (maintenanceFrom !== undefined) {
        // Blobs committed while the run waited belong to pushes whose manifests have not come yet.
        uploads = await protectRecentUploads(storage, maintenanceFrom, id)
        if (uploads.length > 0) {
          tell('protecting', `keeping ${uploads.reduce((sum, entry) => sum + entry.blobs, 0)} blob(s) uploaded during the wait`)
          log.info({ repositories: uploads.map((entry) => entry.repository) }, 'garbage collection: blobs uploaded while it waited kept for this run')
        }
      }
      if (signal.aborted) throw new Error(STOPPED)
      tell('measuring', 'measuring the storage')
      before = (await diskUsage(target.storageRoot)).bytes
      if (await storage.neverPushedTo()) {
        // Nothing was ever pushed: registry 2.8's collector fails on a storage without blobs/ ("Path not found").
        // (A storage root without docker/registry/v2 at all, a volume not mounted, still fails the run.)
        tell('collecting', 'the storage holds no blobs yet: nothing to collect')
        collected = { code: 0, signal: null, tally: emptyTally(), tail: [] }
      } else {
        tell('collecting', `running ${target.binary} garbage-collect${request.dryRun ? ' --dry-run' : ''}${request.deleteUntagged ? ' --delete-untagged' : ''}`)
        let lastTold = 0
        const collectorProgress = (tally: CollectorTally) => ({
          repositories: tally.repositories,
          manifestsMarked: tally.manifestsMarked,
          blobsMarked: tally.blobsMarked,
          blobsDeleted: tally.blobsDeleted,
          manifestsDeleted: tally.manifestsDeleted,
        })
        collected = await runCollector({
          binary: target.binary,
          configPath: target.configPath,
          storageRoot: target.storageRoot,
          dryRun: request.dryRun,
          deleteUntagged: request.deleteUntagged,
          signal,
          onEvent: (event: CollectorEvent, tally) => {
            if (event.kind === 'error') log.warn({ line: event.message }, 'garbage collector output')
            const time = this.now()
            if (event.kind !== 'summary' && time - lastTold < PROGRESS_EVERY_MS) return
            lastTold = time
            const message = event.kind === 'summary'
              ? `${event.blobsMarked} blobs marked, ${event.blobsEligible} blobs and ${event.manifestsEligible} manifests eligible for deletion`
              : `marked ${tally.manifestsMarked} manifests and ${tally.blobsMarked} blobs in ${tally.repositories} repositories; deleted ${tally.blobsDeleted} blobs`
            tell('collecting', message, { collector: collectorProgress(tally) })
          },
        })
      }
      if (collected.code !== 0) {
        failure = `the collector exited with ${collected.code === null ? `signal ${collected.signal}` : `code ${collected.code}`}: ${collected.tally.errors[0] ?? collected.tail.slice(-3).join(' | ')}`
      }
    } catch (error) {
      failure = errorText(error)
    } finally {
      if (kept.length > 0) {
        tell('releasing', `removing ${kept.length} temporary tag(s)`)
        await releaseKept(storage, kept).catch((error: unknown) => {
          log.error({ err: errorText(error), tags: kept.map((k) => `${k.repository}:${k.tag}`) }, 'garbage collection: could not remove temporary tags; the next run removes them')
        })
      }
      if (uploads.length > 0) {
        await releaseUploads(storage, uploads).catch((error: unknown) => {
          log.error({ err: errorText(error), repositories: uploads.map((entry) => entry.repository) }, 'garbage collection: could not remove the manifest keeping recent uploads; the next run removes it')
        })
      }
      try {
        after = (await diskUsage(target.storageRoot)).bytes
      } catch (error) {
        after = before
        log.warn({ err: errorText(error) }, 'garbage collection: could not measure the storage afterwards')
      }
      if (ownsMaintenance) {
        tell('leaving', 'leaving maintenance')
        try {
          maintenance.leave(request.by ?? `gc (${request.trigger})`)
        } catch (error) {
          log.error({ err: errorText(error) }, 'garbage collection: could not leave maintenance')
        }
      }
    }
    const finished = this.now()
    const tally = collected?.tally
    const succeeded = failure === undefined
    const deletedBlobs = request.dryRun ? 0 : tally && tally.blobsDeleted > 0 ? tally.blobsDeleted : succeeded ? tally?.summary?.blobsEligible ?? 0 : 0
    const deletedManifests = request.dryRun ? 0 : tally && tally.manifestsDeleted > 0 ? tally.manifestsDeleted : succeeded ? tally?.summary?.manifestsEligible ?? 0 : 0
    const run: GcRun = {
      id,
      trigger: request.trigger,
      ...(request.by ? { by: request.by } : {}),
      dryRun: request.dryRun,
      deleteUntagged: request.deleteUntagged,
      startedAt: new Date(started).toISOString(),
      finishedAt: new Date(finished).toISOString(),
      durationSeconds: (finished - started) / 1000,
      result: succeeded ? 'success' : 'failure',
      ...(failure ? { error: failure } : {}),
      bytesBefore: before,
      bytesAfter: after,
      bytesFreed: Math.max(0, before - after),
      blobsMarked: tally?.summary?.blobsMarked ?? tally?.blobsMarked ?? 0,
      blobsEligible: tally?.summary?.blobsEligible ?? tally?.blobsEligible.length ?? 0,
      manifestsEligible: tally?.summary?.manifestsEligible ?? tally?.manifestsEligible.length ?? 0,
      blobsDeleted: deletedBlobs,
      manifestsDeleted: deletedManifests,
      protectedManifests: kept.length,
      ...(drain ? { drain } : {}),
      maintenanceSeconds: maintenanceFrom === undefined ? 0 : (finished - maintenanceFrom) / 1000,
    }
    this.runs.unshift(run)
    this.runs.length = Math.min(this.runs.length, this.deps.historySize ?? 20)
    try {
      await this.deps.store?.record(run)
    } catch (error) {
      log.error({ err: errorText(error) }, 'garbage collection: could not keep the run in the store; it is in the history until the gateway restarts')
    }
    const line = { ...run, id: undefined }
    if (succeeded) log.info(line, 'garbage collection finished')
    else log.error(line, 'garbage collection failed')
    try {
      this.deps.onFinished?.(run)
    } catch (error) {
      log.warn({ err: errorText(error) }, 'garbage collection: a listener of finished runs failed')
    }
    tell(succeeded ? 'done' : 'failed', succeeded ? `done: ${run.bytesFreed} bytes freed` : `failed: ${failure}`, { run })
    this.running = undefined
    return run
  }
}
