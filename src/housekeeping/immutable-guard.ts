// The immutable-tag pipeline step (after authorize, before route): refuses a manifest PUT that would move an immutable tag and a DELETE that would remove one.
import { createHash } from 'node:crypto'
import { IncomingMessage } from 'node:http'
import { Socket } from 'node:net'
import type { RegistryRequest } from '../registry/classify.js'
import { RegistryError } from '../registry/errors.js'
import { BodyIncomplete, readCapped } from '../lib/body.js'
import { LimitExceeded, type SizeLimit } from '../pipeline/limits.js'
import { tooLarge } from '../uploads/session.js'
import { describeRule, type ImmutableTags, type MatchedRule } from './immutable-tags.js'

/** The registry reads the guard needs, routed like a client's (the web UI's RegistryClient provides them). */
export interface TagReader {
  tags(repository: string): Promise<string[]>
  digestOf(repository: string, tag: string): Promise<string | undefined>
}

export interface GuardOptions {
  /**
   * Tags the store last saw pointing to a digest (PushPullTimes): checked first, so a refusal usually
   * costs one HEAD. Only an order: a delete is allowed after every immutable tag was checked anyway.
   */
  likelyTags?: (repository: string, digest: string) => Promise<string[]>
  /**
   * A delete by digest HEADs every immutable tag of the repository: at most this many. A repository
   * with more immutable tags refuses deletes by digest (the check could not be finished, so the
   * delete is not allowed) rather than making thousands of registry calls for one request.
   */
  maxCheckedTags?: number
  /** HEADs in flight at once during that check. */
  concurrency?: number
}

/** Registry 2.8 refuses manifests above 4 MiB; without a configured limit the guard reads no more. */
const MANIFEST_CAP = 4 * 1024 * 1024
const DEFAULT_MAX_CHECKED = 1000
const DEFAULT_CONCURRENCY = 8

function isDigest(reference: string): boolean {
  return reference.includes(':')
}

function refused(message: string, detail: Record<string, unknown>): RegistryError {
  return new RegistryError('TAG_IMMUTABLE', detail, {}, message)
}

/** A request carrying `body` (already read from the client) instead of the client's stream: what routing forwards after the check. */
export function replayRequest(original: IncomingMessage, body: Buffer): IncomingMessage {
  const copy = new IncomingMessage(new Socket())
  copy.method = original.method ?? 'PUT'
  copy.url = original.url ?? '/'
  copy.httpVersionMajor = original.httpVersionMajor
  copy.httpVersionMinor = original.httpVersionMinor
  copy.httpVersion = original.httpVersion
  const headers = { ...original.headers, 'content-length': String(body.length) }
  delete headers['transfer-encoding']
  copy.headers = headers
  copy.push(body)
  copy.push(null)
  copy.complete = true
  return copy
}

export class ImmutableTagGuard {
  private readonly maxChecked: number
  private readonly likelyTags: ((repository: string, digest: string) => Promise<string[]>) | undefined
  private readonly concurrency: number
  /** PUTs to one immutable repository:tag, one at a time on this gateway: two first pushes cannot both see "no tag yet". */
  private readonly busy = new Map<string, Promise<void>>()

  constructor(
    readonly rules: ImmutableTags,
    private readonly registry: TagReader,
    options: GuardOptions = {},
  ) {
    this.maxChecked = options.maxCheckedTags ?? DEFAULT_MAX_CHECKED
    this.concurrency = options.concurrency ?? DEFAULT_CONCURRENCY
    this.likelyTags = options.likelyTags
  }

  /**
   * Runs `serve` for the request, after the check when an immutable tag is concerned: a manifest PUT
   * over an immutable tag is let through only when the tag does not exist yet or the body's sha256
   * is the digest it already points to (its body then travels on as a replayed request); a DELETE
   * is refused when it names an immutable tag, or a digest an immutable tag points to.
   */
  async guard<T>(request: RegistryRequest, req: IncomingMessage, limit: SizeLimit | undefined, serve: (req: IncomingMessage) => Promise<T>): Promise<T> {
    const { repository, reference } = request
    if (repository === undefined || reference === undefined) return await serve(req)
    if (request.op === 'manifest.delete') {
      await this.checkDelete(repository, reference)
      return await serve(req)
    }
    if (request.op !== 'manifest.put' || isDigest(reference)) return await serve(req)
    const rule = this.rules.ruleFor(repository, reference)
    if (!rule) return await serve(req)
    return await this.exclusive(`${repository}:${reference}`, async () => {
      const current = await this.registry.digestOf(repository, reference)
      if (current === undefined) return await serve(req)
      const body = await readManifest(req, limit)
      const pushed = `sha256:${createHash('sha256').update(body).digest('hex')}`
      if (pushed !== current) {
        throw refused(`tag ${repository}:${reference} is immutable (${describeRule(rule)}) and points to ${current}; push this manifest under a new tag`, {
          repository, tag: reference, rule: rule.index, current, pushed,
        })
      }
      return await serve(replayRequest(req, body))
    })
  }

  /** The check alone, for deletes the gateway makes itself (the web UI, retention): throws TAG_IMMUTABLE. */
  async checkRequest(request: RegistryRequest): Promise<void> {
    if (request.op === 'manifest.delete' && request.repository !== undefined && request.reference !== undefined) await this.checkDelete(request.repository, request.reference)
  }

  /**
   * Throws TAG_IMMUTABLE when deleting `reference` in `repository` would remove an immutable tag. By
   * tag: refused when the tag matches a rule. By digest: one tag list plus one HEAD per tag of the
   * repository that matches a rule (at most maxCheckedTags, `concurrency` at once).
   */
  async checkDelete(repository: string, reference: string): Promise<void> {
    if (!isDigest(reference)) {
      const rule = this.rules.ruleFor(repository, reference)
      if (rule) throw refused(`tag ${repository}:${reference} is immutable (${describeRule(rule)}) and cannot be deleted`, { repository, tag: reference, rule: rule.index })
      return
    }
    if (!this.rules.coversRepository(repository)) return
    const protectedTags: Array<{ tag: string; rule: MatchedRule }> = []
    for (const tag of await this.registry.tags(repository)) {
      const rule = this.rules.ruleFor(repository, tag)
      if (rule) protectedTags.push({ tag, rule })
    }
    if (protectedTags.length > this.maxChecked) {
      throw refused(`${repository} has ${protectedTags.length} immutable tags, more than the ${this.maxChecked} a delete by digest checks; the delete is refused`, {
        repository, digest: reference, immutable_tags: protectedTags.length, checked_at_most: this.maxChecked,
      })
    }
    // Only an ordering hint: a store that does not answer leaves the order as it is.
    const likely = new Set(await (this.likelyTags?.(repository, reference) ?? Promise.resolve([])).catch(() => []))
    if (likely.size > 0) protectedTags.sort((a, b) => Number(likely.has(b.tag)) - Number(likely.has(a.tag)))
    const hit = await this.firstPointingAt(repository, reference, protectedTags)
    if (hit) {
      throw refused(`${reference} is what immutable tag ${repository}:${hit.tag} points to (${describeRule(hit.rule)}); it cannot be deleted`, {
        repository, digest: reference, tag: hit.tag, rule: hit.rule.index,
      })
    }
  }

  private async firstPointingAt<E extends { tag: string }>(repository: string, digest: string, entries: E[]): Promise<E | undefined> {
    let next = 0
    let found: E | undefined
    const worker = async (): Promise<void> => {
      while (found === undefined && next < entries.length) {
        const entry = entries[next++] as E
        if ((await this.registry.digestOf(repository, entry.tag)) === digest) found ??= entry
      }
    }
    await Promise.all(Array.from({ length: Math.min(this.concurrency, entries.length) }, worker))
    return found
  }

  private async exclusive<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.busy.get(key)
    let release = (): void => {}
    const mine = new Promise<void>((resolve) => {
      release = resolve
    })
    const chained = (before ?? Promise.resolve()).then(() => mine)
    this.busy.set(key, chained)
    try {
      await before
      return await work()
    } finally {
      release()
      if (this.busy.get(key) === chained) this.busy.delete(key)
    }
  }
}

/** The client's manifest body, within the manifest limit (413 beyond it). The rest of an overlong body is discarded so the 413 gets through. */
async function readManifest(req: IncomingMessage, limit: SizeLimit | undefined): Promise<Buffer> {
  const cap = limit?.maxBytes ?? MANIFEST_CAP
  const declared = req.headers['content-length']
  if (limit && declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit.maxBytes) throw tooLarge(new LimitExceeded(limit, Number(declared), true))
  const overCap = (size: number): Error => (limit ? tooLarge(new LimitExceeded(limit, size, false)) : new RegistryError('MANIFEST_INVALID', { max_bytes: cap }, {}, 'manifest too large'))
  try {
    return await readCapped(req, { maxBytes: cap, tooLarge: overCap, rest: 'discard' })
  } catch (error) {
    throw error instanceof BodyIncomplete ? new Error('client closed the connection before sending the whole manifest', { cause: error }) : error
  }
}

/** The guard for `immutable_tags`, or undefined when there are no rules (the step is then left out). */
export function createImmutableTagGuard(rules: ImmutableTags, registry: TagReader, options: GuardOptions = {}): ImmutableTagGuard | undefined {
  return rules.empty ? undefined : new ImmutableTagGuard(rules, registry, options)
}
