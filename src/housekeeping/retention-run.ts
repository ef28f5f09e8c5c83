// Applying retention: lists the governed repositories and their tags through the registry API, asks the engine, deletes by digest (routed like a client's delete), then collects garbage.
import { randomUUID } from 'node:crypto'
import { RegistryError } from '../registry/errors.js'
import type { Logger } from '../observe/log.js'
import type { FetchedManifest } from '../ui/registry-client.js'
import { RetentionPolicy, type ManifestDecision, type RepositoryPlan, type TagDecision, type UntaggedManifest } from './retention.js'
import type { RetentionConfig } from './retention-section.js'

/** The registry calls a run makes (the housekeeping RegistryClient: routed, gated by maintenance and immutable tags). */
export interface RetentionRegistry {
  catalog(last: string | undefined, n?: number): Promise<{ repositories: string[]; more: boolean }>
  tags(repository: string): Promise<string[]>
  digestOf(repository: string, tag: string): Promise<string | undefined>
  manifest(repository: string, reference: string): Promise<FetchedManifest>
  deleteManifest(repository: string, digest: string): Promise<void>
}

/** The push/pull times the store keeps (src/store/times.ts PushPullTimes). */
export interface RetentionTimes {
  /** Rejects when the store does not answer: a run never decides without the times. */
  tagTimes(repository: string): Promise<Array<{ tag: string; digest: string | undefined; firstSeenAt: number; pushedAt: number | undefined; pulledAt: number | undefined }>>
  manifestTimes(repository: string): Promise<Array<{ digest: string; firstSeenAt: number; pushedAt: number | undefined }>>
  /** Forgets a deleted manifest's times (the run's deletes do not pass the request recorder). */
  deleted(repository: string, reference: string): void
}

/** The collection after a run that deleted something (src/housekeeping/gc.ts); resolves with a short summary or throws why it did not run. */
export type CollectGarbage = (by: string | undefined) => Promise<{ id: string; result: string; bytesFreed: number }>

export type RetentionTrigger = 'api' | 'ui' | 'schedule'

export interface RetentionRequest {
  dryRun: boolean
  trigger: RetentionTrigger
  by?: string
}

export interface DeletionOutcome extends ManifestDecision {
  /** deleted, would_delete (dry run), already_gone, or failed (with the error). */
  outcome: 'deleted' | 'would_delete' | 'already_gone' | 'failed'
  error?: string
}

export interface RetentionReport {
  id: string
  trigger: RetentionTrigger
  by?: string
  dryRun: boolean
  startedAt: string
  finishedAt: string
  durationSeconds: number
  result: 'success' | 'failure'
  error?: string
  /** Repositories a rule governs, with every tag's decision. */
  repositories: Array<{ repository: string; rule: number; tags: TagDecision[]; skipped?: string }>
  /** One entry per manifest deleted (or that a dry run would delete). */
  deletions: DeletionOutcome[]
  /** Counts: tags kept, tags deleted (or that would be), manifests deleted (or that would be), failures. */
  totals: { repositories: number; tagsKept: number; tagsDeleted: number; manifestsDeleted: number; failed: number }
  /** The garbage collection that followed (not on a dry run, nor when nothing was deleted). */
  gc?: { id?: string; result: string; bytesFreed?: number; error?: string }
}

export class RetentionBusy extends Error {
  constructor(readonly runId: string) {
    super(`a retention run is already in progress (${runId})`)
  }
}

export interface RetentionRunnerDeps {
  config: RetentionConfig
  registry: RetentionRegistry
  times: RetentionTimes
  isImmutable: (repository: string, tag: string) => boolean
  collectGarbage?: CollectGarbage
  log: Logger
  /** Told of every finished run (metrics, the UI's last dry run). */
  onFinished?: (report: RetentionReport) => void
  now?: () => number
}

const CATALOG_PAGE = 1000
/** Finished reports kept for pollers. */
const RECENT_RUNS = 10
/** Registry calls in flight at once within a repository (HEADs of its tags, GETs of manifests). */
const CONCURRENCY = 4

async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index] as T)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return results
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function isGone(error: unknown): boolean {
  return error instanceof RegistryError && (error.code === 'MANIFEST_UNKNOWN' || error.code === 'NOT_FOUND' || error.code === 'NAME_UNKNOWN')
}

/** Digests a manifest names that must stay while it does: an index's children. */
function childrenOf(manifest: FetchedManifest): string[] {
  const body = manifest.body
  if (typeof body !== 'object' || body === null) return []
  const listed = (body as { manifests?: unknown }).manifests
  if (!Array.isArray(listed)) return []
  return listed.flatMap((entry: unknown) => {
    const digest = typeof entry === 'object' && entry !== null ? (entry as { digest?: unknown }).digest : undefined
    return typeof digest === 'string' ? [digest] : []
  })
}

function hasSubject(manifest: FetchedManifest): boolean {
  const body = manifest.body
  return typeof body === 'object' && body !== null && typeof (body as { subject?: unknown }).subject === 'object'
}

export class RetentionRunner {
  private running: string | undefined
  private readonly now: () => number
  /** The latest finished runs by id, for pollers (the newest RECENT_RUNS). */
  private readonly finished = new Map<string, RetentionReport>()

  constructor(private readonly deps: RetentionRunnerDeps) {
    this.now = deps.now ?? Date.now
  }

  get busy(): boolean {
    return this.running !== undefined
  }

  /** The run in progress, if any. */
  get current(): string | undefined {
    return this.running
  }

  /** A finished run's report, while it is among the newest kept. */
  report(id: string): RetentionReport | undefined {
    return this.finished.get(id)
  }

  /**
   * Starts a run in the background and answers its id at once (poll report(id)); throws RetentionBusy
   * while another runs. The run never rejects: a failure is its report's result.
   */
  start(request: RetentionRequest): string {
    if (this.running) throw new RetentionBusy(this.running)
    const id = randomUUID()
    this.run(request, id).catch((error: unknown) => this.deps.log.error({ err: errorText(error), retention_run: id }, 'retention run failed unexpectedly'))
    return id
  }

  /** One run: a dry run lists what would go and why; a real run deletes it and then collects garbage. Rejects with RetentionBusy while another runs. */
  async run(request: RetentionRequest, id: string = randomUUID()): Promise<RetentionReport> {
    if (this.running) throw new RetentionBusy(this.running)
    this.running = id
    const started = this.now()
    const log = this.deps.log.child({ component: 'retention', retention_run: id })
    log.info({ dry_run: request.dryRun, trigger: request.trigger, by: request.by }, 'retention run started')
    const report: RetentionReport = {
      id, trigger: request.trigger, dryRun: request.dryRun, startedAt: new Date(started).toISOString(), finishedAt: '', durationSeconds: 0, result: 'success',
      repositories: [], deletions: [], totals: { repositories: 0, tagsKept: 0, tagsDeleted: 0, manifestsDeleted: 0, failed: 0 },
      ...(request.by !== undefined ? { by: request.by } : {}),
    }
    try {
      const policy = new RetentionPolicy({ rules: this.deps.config.rules, now: started, isImmutable: this.deps.isImmutable })
      for (const repository of await this.governedRepositories(policy)) {
        const plan = await this.plan(policy, repository, report)
        if (!plan) continue
        for (const deletion of plan.deletions) report.deletions.push(await this.apply(deletion, request.dryRun, log))
      }
      this.count(report)
      if (!request.dryRun && report.totals.manifestsDeleted > 0) report.gc = await this.collect(request.by, log)
    } catch (error) {
      report.result = 'failure'
      report.error = errorText(error)
      this.count(report)
      log.error({ err: report.error }, 'retention run failed')
    } finally {
      this.running = undefined
      const finished = this.now()
      report.finishedAt = new Date(finished).toISOString()
      report.durationSeconds = (finished - started) / 1000
    }
    const { totals } = report
    log.info(
      { dry_run: request.dryRun, result: report.result, repositories: totals.repositories, tags_kept: totals.tagsKept, tags_deleted: totals.tagsDeleted, manifests_deleted: totals.manifestsDeleted, failed: totals.failed, gc: report.gc?.result, duration_s: report.durationSeconds },
      request.dryRun ? 'retention dry run finished' : 'retention run finished',
    )
    this.finished.set(id, report)
    for (const old of this.finished.keys()) {
      if (this.finished.size <= RECENT_RUNS) break
      this.finished.delete(old)
    }
    try {
      this.deps.onFinished?.(report)
    } catch (error) {
      log.warn({ err: errorText(error) }, 'a retention listener failed')
    }
    return report
  }

  /** Every repository of the catalog some rule's glob matches, page by page. */
  private async governedRepositories(policy: RetentionPolicy): Promise<string[]> {
    const governed: string[] = []
    let last: string | undefined
    for (;;) {
      const page = await this.deps.registry.catalog(last, CATALOG_PAGE)
      for (const repository of page.repositories) if (policy.ruleFor(repository)) governed.push(repository)
      const next = page.repositories.at(-1)
      if (!page.more || next === undefined || next === last) return governed
      last = next
    }
  }

  /** The engine's plan for one repository, from the registry's tags (each HEADed for its digest) and the store's times. */
  private async plan(policy: RetentionPolicy, repository: string, report: RetentionReport): Promise<RepositoryPlan | undefined> {
    const { registry, times, config } = this.deps
    const rule = policy.ruleFor(repository)
    if (!rule) return undefined
    const tags = await registry.tags(repository)
    if (tags.length > config.max_tags_per_repository) {
      // Deciding on part of the tags would misjudge keep_last: the repository is left alone and said so.
      report.repositories.push({ repository, rule: rule.index, tags: [], skipped: `${tags.length} tags, more than retention.max_tags_per_repository (${config.max_tags_per_repository})` })
      return undefined
    }
    const known = new Map((await times.tagTimes(repository)).map((entry) => [entry.tag, entry]))
    const digests = await mapLimit(tags, CONCURRENCY, (tag) => registry.digestOf(repository, tag))
    const states = tags.flatMap((tag, index) => {
      const digest = digests[index]
      if (digest === undefined) return [] // deleted meanwhile
      const entry = known.get(tag)
      return [{
        tag, digest,
        ...(entry?.pushedAt !== undefined ? { pushedAt: entry.pushedAt } : {}),
        ...(entry?.pulledAt !== undefined ? { pulledAt: entry.pulledAt } : {}),
        ...(entry ? { firstSeenAt: entry.firstSeenAt } : {}),
      }]
    })
    const untagged = rule.rule.delete_untagged ? await this.untagged(repository, new Set(states.map((state) => state.digest))) : []
    const plan = policy.planFor({ repository, tags: states, untagged })
    report.repositories.push({ repository, rule: rule.index, tags: plan.tags })
    return plan
  }

  /**
   * Manifests the store saw in the repository that no tag points to now (the registry API cannot list
   * them). Children of a tagged index and referrers (a manifest with a subject) are marked referenced:
   * registry 2.8 would break the index, and a signature goes with its image. Costs one GET per tagged
   * digest and per candidate.
   */
  private async untagged(repository: string, tagged: Set<string>): Promise<UntaggedManifest[]> {
    const { registry, times } = this.deps
    const candidates = (await times.manifestTimes(repository)).filter((entry) => !tagged.has(entry.digest))
    if (candidates.length === 0) return []
    const referenced = new Set<string>()
    await mapLimit([...tagged], CONCURRENCY, async (digest) => {
      const manifest = await registry.manifest(repository, digest).catch(() => undefined)
      if (manifest) for (const child of childrenOf(manifest)) referenced.add(child)
    })
    const found = await mapLimit(candidates, CONCURRENCY, async (entry): Promise<UntaggedManifest | undefined> => {
      const manifest = await registry.manifest(repository, entry.digest).catch((error: unknown) => {
        if (isGone(error)) return undefined
        throw error
      })
      if (!manifest) return undefined // already gone from the registry
      return { digest: entry.digest, pushedAt: entry.pushedAt ?? entry.firstSeenAt, referenced: referenced.has(entry.digest) || hasSubject(manifest) }
    })
    return found.filter((entry): entry is UntaggedManifest => entry !== undefined)
  }

  private async apply(deletion: ManifestDecision, dryRun: boolean, log: Logger): Promise<DeletionOutcome> {
    if (dryRun) return { ...deletion, outcome: 'would_delete' }
    try {
      await this.deps.registry.deleteManifest(deletion.repository, deletion.digest)
      this.deps.times.deleted(deletion.repository, deletion.digest)
      log.info({ repository: deletion.repository, digest: deletion.digest, tags: deletion.tags, reason: deletion.reason }, 'retention deleted a manifest')
      return { ...deletion, outcome: 'deleted' }
    } catch (error) {
      if (isGone(error)) {
        this.deps.times.deleted(deletion.repository, deletion.digest)
        return { ...deletion, outcome: 'already_gone' }
      }
      log.warn({ repository: deletion.repository, digest: deletion.digest, tags: deletion.tags, err: errorText(error) }, 'retention could not delete a manifest')
      return { ...deletion, outcome: 'failed', error: errorText(error) }
    }
  }

  private count(report: RetentionReport): void {
    const tags = report.repositories.flatMap((entry) => entry.tags)
    report.totals = {
      repositories: report.repositories.length,
      tagsKept: tags.filter((tag) => tag.verdict === 'keep').length,
      tagsDeleted: report.deletions.filter((entry) => entry.outcome === 'deleted' || entry.outcome === 'would_delete').reduce((sum, entry) => sum + entry.tags.length, 0),
      manifestsDeleted: report.deletions.filter((entry) => entry.outcome === 'deleted' || entry.outcome === 'would_delete').length,
      failed: report.deletions.filter((entry) => entry.outcome === 'failed').length,
    }
  }

  private async collect(by: string | undefined, log: Logger): Promise<NonNullable<RetentionReport['gc']>> {
    if (!this.deps.collectGarbage) return { result: 'skipped', error: 'garbage collection is not available here' }
    try {
      const run = await this.deps.collectGarbage(by)
      return { id: run.id, result: run.result, bytesFreed: run.bytesFreed }
    } catch (error) {
      // The deletes stand; the space comes back with the next collection.
      log.warn({ err: errorText(error) }, 'garbage collection after retention did not run')
      return { result: 'skipped', error: errorText(error) }
    }
  }
}
