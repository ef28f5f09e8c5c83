// Mirrored writes: every push goes to all upstreams at once, and `routing.mirror.require` decides when it succeeded.
import { RegistryError } from '../registry/errors.js'
import type { Operation, RegistryRequest } from '../registry/classify.js'
import { clientResponseHeaders } from './headers.js'
import {
  hasBody, pathOf, RETRY_AFTER_SECONDS, tooLarge, upstreamFailure,
  type BodyKind, type Exchange, type ExchangeResult, type Forwarder, type RouteContext, type UpstreamResponse,
} from './forward.js'
import { LimitExceeded } from '../pipeline/limits.js'
import { sessionRequest, type UploadTokens } from '../uploads/token.js'
import { checkMirrored, rangeNotSatisfiable, type UploadOffsets } from '../uploads/offsets.js'
import { UploadSession, type SignedTarget, type UpstreamOutcome, type UploadTarget } from '../uploads/session.js'
import { isTagDelete, refusesTagDelete, tagDeleteUnsupported } from './tag-delete.js'
import { mayHaveSubject, MT_OCI_MANIFEST, referrerOf, type Referrers } from './referrers.js'
import type { Upstream } from '../upstreams/upstreams.js'
import { isRecord } from '../lib/is-record.js'
import { BodyIncomplete, readCapped, readPrefix } from '../lib/body.js'

export type { RouteContext } from './forward.js'

export interface MirrorRoute {
  kind: 'mirror'
  request: RegistryRequest
  /** Every configured upstream, in configuration order. */
  upstreams: Upstream[]
  /** The sessions of the upload the client continues (read from its signed URL). */
  sessions?: SignedTarget[]
  /** Who carries it out (the mirror strategy's). */
  writer: MirrorWriter
  /** The newest state of each session the gateway relayed (set by the router): an old upload URL goes on from there. */
  offsets?: UploadOffsets
  /** The referrers index kept in each mirror's fallback tag (set by the router). */
  referrers?: Referrers
}

/** Why one upstream did not do its part. */
export interface BranchFailure {
  upstream: string
  status?: number
  code?: string
  reason: string
}

export interface MirrorDeps {
  forwarder: Forwarder
  tokens: UploadTokens
  require: 'all' | 'quorum'
  isAvailable: (upstream: Upstream) => boolean
  /** Each upstream that failed its part of a mirrored write (for the log and metrics). */
  onBranchFailure: (operation: Operation, repository: string | undefined, failure: BranchFailure) => void
}

/** Upstreams that do not hold what a successful mirrored write stored (quorum mode, or skipped while down). */
export const MIRROR_MISSING_HEADER = 'portier-mirror-missing'

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One upstream's result: an answer, or the error that kept it from answering. */
interface Outcome {
  upstream: Upstream
  answer?: Answer
  error?: unknown
}

/** Upload and manifest answers are empty, error answers small JSON: more than this is cut. */
const MAX_ANSWER_BYTES = 64 * 1024
/** registry 2.8 refuses larger manifests: without manifest_max_bytes, more is not read into memory. */
const MANIFEST_CAP_WITHOUT_LIMIT = 4 * 1024 * 1024

async function collect(response: UpstreamResponse): Promise<Answer> {
  const { head } = await readPrefix(response.body, MAX_ANSWER_BYTES)
  return { status: response.statusCode, headers: response.headers, body: head }
}

/** The outcomes of one upload step, each upstream's answer read (small: upload answers are empty, errors short JSON). */
async function collectAll(steps: UpstreamOutcome[]): Promise<Outcome[]> {
  return await Promise.all(
    steps.map(async ({ upstream, response, error }): Promise<Outcome> => {
      if (!response) return { upstream, error }
      try {
        return { upstream, answer: await collect(response) }
      } catch (failure) {
        return { upstream, error: failure }
      }
    }),
  )
}

function errorCodeOf(answer: Answer): string | undefined {
  try {
    const code = (JSON.parse(answer.body.toString('utf8')) as { errors?: Array<{ code?: unknown }> }).errors?.[0]?.code
    return typeof code === 'string' ? code : undefined
  } catch {
    return undefined
  }
}

function failureOf(outcome: Outcome): BranchFailure {
  if (outcome.answer) {
    const code = errorCodeOf(outcome.answer)
    return { upstream: outcome.upstream.name, status: outcome.answer.status, ...(code ? { code } : {}), reason: `answered ${outcome.answer.status}${code ? ` ${code}` : ''}` }
  }
  const failure = upstreamFailure(outcome.error, outcome.upstream)
  const reason = isRecord(failure.detail) && typeof failure.detail.reason === 'string' ? failure.detail.reason : failure.message
  return { upstream: outcome.upstream.name, reason }
}

function statusIs(outcome: Outcome, status: number): boolean {
  return outcome.answer?.status === status
}

export class MirrorWriter {
  constructor(private readonly deps: MirrorDeps) {}

  /** How many upstreams must succeed for a write to count. */
  needed(total: number): number {
    return this.deps.require === 'all' ? total : Math.floor(total / 2) + 1
  }

  async forward(given: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const route = this.newest(given, context)
    const { request } = route
    switch (request.op) {
      case 'manifest.put':
        return await this.putManifest(route, context)
      case 'manifest.delete':
      case 'blob.delete':
        return await this.deleteEverywhere(route, context)
      case 'upload.start':
      case 'upload.mount':
        return await this.startUpload(route, context)
      case 'upload.monolithic':
        return hasBody(context.req) ? await this.write(route, context) : await this.startUpload(route, context)
      case 'upload.chunk':
        return await this.write(route, context)
      case 'upload.finish':
        return hasBody(context.req) ? await this.write(route, context) : await this.finishOnly(route, context)
      case 'upload.cancel':
        return await this.cancelUpload(route, context)
      default:
        throw new Error(`${request.op} is not a mirrored write`)
    }
  }

  /** Starts a session on every upstream (or, for a cross-repository mount, mounts where the blob already is). */
  private async startUpload(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const { request } = route
    context.req.resume()
    const targets = this.targets(route, 'upload')
    let outcomes = await Promise.all(targets.map((upstream) => this.attempt(context, upstream, request, 'POST', pathOf(request), null, 'none')))
    const mounted = outcomes.filter((outcome) => statusIs(outcome, 201))
    const needed = this.needed(route.upstreams.length)
    if (mounted.length > 0) {
      if (mounted.length >= needed && !outcomes.some((outcome) => statusIs(outcome, 202))) {
        this.reportFailures(route, outcomes.filter((outcome) => !statusIs(outcome, 201)))
        return this.replay(context, mounted[0] as Outcome, { missing: this.missing(route, mounted) })
      }
      // Mounted on some upstreams only: start ordinary sessions there too, so that one upload reaches every upstream.
      outcomes = await Promise.all(
        outcomes.map(async (outcome) => (statusIs(outcome, 201) ? await this.attempt(context, outcome.upstream, request, 'POST', plainUploadPath(request), null, 'none') : outcome)),
      )
    }
    const upload = this.upload(context)
    const sessions = this.sessionsOf(upload, outcomes)
    if (sessions.length < needed) {
      await upload.cancel(sessions)
      return this.fail(route, context, 'upload start', outcomes, sessions.length)
    }
    this.reportFailures(route, outcomes.filter((outcome) => !sessions.some((ref) => ref.upstream === outcome.upstream)))
    const first = outcomes.find((outcome) => outcome.upstream === sessions[0]?.upstream) as Outcome
    return this.replay(context, first, { location: this.clientPath(request, sessions), missing: this.missing(route, sessions) })
  }

  /**
   * A request carrying blob bytes: one read of the client's body, streamed as a PATCH to every
   * session at once (the slowest sets the pace), then `PUT ?digest=` on each when the client finishes.
   */
  private async write(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const { request } = route
    const upload = this.upload(context)
    const shape = upload.shape
    let stored = 0
    if (request.op === 'upload.monolithic') {
      upload.admitNew()
      const opened = await this.openSessions(route, context, upload)
      if ('result' in opened) return opened.result
      upload.targets = opened.sessions
    } else {
      upload.targets = await this.liveSessions(route, upload)
      stored = await upload.admit()
    }
    const branches = upload.targets
    const body = upload.body(stored)
    const outcomes = await collectAll(await upload.chunk(body, shape.finishing))
    body.release()
    const next = outcomes.map((outcome) => upload.signed(outcome.upstream, outcome.answer?.status, outcome.answer?.headers.location))

    if (body.stopped) {
      await upload.cancel(branches.map((branch, index) => next[index] ?? branch))
      if (body.stopped === 'limit' && body.exceeded) throw tooLarge(body.exceeded)
      return { status: 499 }
    }

    const survivors: SignedTarget[] = []
    const failed: Outcome[] = []
    let range: string | string[] | undefined
    for (const [index, outcome] of outcomes.entries()) {
      const session = next[index]
      const branch = branches[index] as UploadTarget
      // Every upstream took the same bytes, so every one must report the same stored range.
      if (session && (survivors.length === 0 || outcome.answer?.headers.range === range)) {
        if (survivors.length === 0) range = outcome.answer?.headers.range
        survivors.push(session)
        continue
      }
      failed.push(session ? { upstream: outcome.upstream, error: new Error(`stored range ${String(outcome.answer?.headers.range)} differs from ${String(range)}`) } : outcome)
      await upload.cancel([session ?? branch])
    }
    if (survivors.length < this.needed(route.upstreams.length)) {
      await upload.cancel(survivors)
      return this.fail(route, context, shape.finishing ? 'blob upload' : 'upload chunk', outcomes, survivors.length)
    }
    this.reportFailures(route, failed)
    if (!shape.finishing) {
      for (const session of survivors) route.offsets?.note(session.upstream.name, session.path)
      const first = outcomes.find((outcome) => outcome.upstream === survivors[0]?.upstream) as Outcome
      return this.replay(context, first, { location: this.clientPath(request, survivors), missing: this.missing(route, survivors) })
    }
    return await this.finish(route, context, upload, survivors, shape.digest as string)
  }

  /** `PUT ?digest=` with no body: every session commits what it holds. */
  private async finishOnly(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const upload = this.upload(context)
    const shape = upload.shape
    context.req.resume()
    const branches = await this.liveSessions(route, upload)
    return await this.finish(route, context, upload, branches, shape.digest as string)
  }

  private async finish(route: MirrorRoute, context: RouteContext, upload: UploadSession, branches: UploadTarget[], digest: string): Promise<ExchangeResult> {
    const outcomes = await collectAll(await upload.finish(branches, digest))
    const stored = outcomes.filter((outcome) => statusIs(outcome, 201))
    for (const [index, outcome] of outcomes.entries()) if (statusIs(outcome, 201)) this.forget(route, branches[index])
    // A session whose commit failed (digest mismatch, upstream error) is cancelled while its state is fresh.
    await upload.cancel(branches.filter((_, index) => !statusIs(outcomes[index] as Outcome, 201)))
    return this.conclude(route, context, 'blob upload', outcomes, stored, this.needed(route.upstreams.length))
  }

  private async cancelUpload(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const { request } = route
    context.req.resume()
    const sessions = this.sessionsFromRoute(route)
    const outcomes = await Promise.all(sessions.map((target) => this.attempt(context, target.upstream, request, 'DELETE', target.path, null, 'none')))
    for (const target of sessions) this.forget(route, target)
    // Cancelling is best effort everywhere: one upstream that let go of the session is enough to answer.
    return this.conclude(route, context, 'upload cancel', outcomes, outcomes.filter((outcome) => statusIs(outcome, 204)), 1, false)
  }

  private async putManifest(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    const { request } = route
    const manifest = await readBody(context)
    if (manifest === undefined) return { status: 499 }
    const targets = this.targets(route, 'manifest')
    const outcomes = await Promise.all(
      targets.map((upstream) => this.attempt(context, upstream, request, 'PUT', pathOf(request), manifest, 'stream', { 'content-length': String(manifest.length) })),
    )
    const stored = outcomes.filter((outcome) => statusIs(outcome, 201))
    const needed = this.needed(route.upstreams.length)
    const contentType = context.req.headers['content-type']
    const referrer = route.referrers && stored.length >= needed && mayHaveSubject(request, contentType)
      ? referrerOf(manifest, contentType?.split(';')[0]?.trim() ?? MT_OCI_MANIFEST)
      : undefined
    if (route.referrers && referrer) {
      // Every mirror that stored the referrer lists it under its own fallback tag, so any of them answers alike.
      const referrers = route.referrers
      await Promise.all(stored.map((outcome) => referrers.add(this.exchangeFor(context, outcome.upstream, request), referrer)))
      context.res.setHeader('OCI-Subject', referrer.subject)
    }
    return this.conclude(route, context, 'manifest push', outcomes, stored, needed)
  }

  private async deleteEverywhere(route: MirrorRoute, context: RouteContext): Promise<ExchangeResult> {
    context.req.resume()
    const { request } = route
    const referrers = request.op === 'manifest.delete' && !isTagDelete(request) ? route.referrers : undefined
    // A referrer leaves its subject's index on every mirror that deleted it (the subject read from the first that has the manifest).
    let subject: string | undefined
    for (const upstream of referrers ? route.upstreams.filter((one) => this.deps.isAvailable(one)) : []) {
      subject = await referrers?.subjectOf(this.exchangeFor(context, upstream, request)).catch(() => undefined)
      if (subject !== undefined) break
    }
    const { answer, upstream, deleted } = await this.remove(route, context)
    if (referrers && subject !== undefined && answer.status === 202) {
      const from = subject
      await Promise.all(deleted.map((one) => referrers.drop(this.exchangeFor(context, one, request), from, request.reference as string)))
    }
    return this.replay(context, { upstream, answer }, {})
  }

  /**
   * Deletes a manifest or blob on every mirror; routing.mirror.require decides whether it counts.
   * Answers with the first upstream's acceptance, or with the refusal all of them gave (404, 405);
   * throws 503 when too few succeeded; and the upstreams that deleted it. The web UI's deletes go
   * through here as clients' do.
   */
  async remove(route: MirrorRoute, context: RouteContext): Promise<{ upstream: Upstream; answer: Answer; deleted: Upstream[] }> {
    const { request } = route
    const targets = this.targets(route, 'delete')
    const outcomes = await Promise.all(targets.map((upstream) => this.attempt(context, upstream, request, 'DELETE', pathOf(request), null, 'none')))
    const deleted = outcomes.filter((outcome) => statusIs(outcome, 202))
    // An upstream that never had it (quorum pushes) is as good as one that deleted it.
    const gone = outcomes.filter((outcome) => statusIs(outcome, 202) || statusIs(outcome, 404))
    // Upstreams that cannot delete tags (registry 2.8) all refuse alike: say so as the spec does.
    if (deleted.length === 0 && isTagDelete(request) && outcomes.some((outcome) => outcome.answer && refusesTagDelete(outcome.answer.status, outcome.answer.body))) {
      throw tagDeleteUnsupported(request)
    }
    const chosen = deleted.length === 0 || gone.length < this.needed(route.upstreams.length)
      ? this.refusalOrFailure(route, 'delete', outcomes, deleted.length)
      : deleted[0]
    if (chosen === deleted[0]) this.reportFailures(route, outcomes.filter((outcome) => !gone.includes(outcome)))
    if (!chosen?.answer) throw this.failure(route, 'delete', [], outcomes.map(failureOf))
    return { upstream: chosen.upstream, answer: chosen.answer, deleted: deleted.map((outcome) => outcome.upstream) }
  }

  /** New sessions for a monolithic upload, or the answer to give when they could not be started. */
  private async openSessions(route: MirrorRoute, context: RouteContext, upload: UploadSession): Promise<{ sessions: SignedTarget[] } | { result: ExchangeResult }> {
    const targets = this.targets(route, 'upload')
    const outcomes = await collectAll(await upload.open(targets))
    const sessions = this.sessionsOf(upload, outcomes)
    if (sessions.length >= this.needed(route.upstreams.length)) {
      this.reportFailures(route, outcomes.filter((outcome) => !sessions.some((ref) => ref.upstream === outcome.upstream)))
      return { sessions }
    }
    await upload.cancel(sessions)
    return { result: this.fail(route, context, 'upload start', outcomes, sessions.length) }
  }

  /** The sessions of the client's upload whose upstreams are not known to be down; too few fails the request. */
  private async liveSessions(route: MirrorRoute, upload: UploadSession): Promise<SignedTarget[]> {
    const sessions = this.sessionsFromRoute(route)
    const live = sessions.filter((ref) => this.deps.isAvailable(ref.upstream))
    const down = sessions.filter((ref) => !live.includes(ref))
    const failures = down.map((ref) => ({ upstream: ref.upstream.name, reason: 'marked down by health checks' }))
    if (live.length < this.needed(route.upstreams.length)) {
      await upload.cancel(live)
      throw this.failure(route, 'upload', live.map((ref) => ref.upstream.name), failures)
    }
    for (const failure of failures) this.deps.onBranchFailure(route.request.op, route.request.repository, failure)
    return live
  }

  private sessionsFromRoute(route: MirrorRoute): SignedTarget[] {
    if (!route.sessions || route.sessions.length === 0) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { reason: 'no upload session in the URL' })
    return route.sessions
  }

  /**
   * The route on the newest state of each of its sessions (registry 2.8 cancels a session asked
   * with an older `_state`); a chunk that does not start where they end is 416 with the URL to go on from.
   */
  private newest(route: MirrorRoute, context: RouteContext): MirrorRoute {
    if (!route.offsets || !route.sessions || route.sessions.length === 0) return route
    const checked = checkMirrored(route.offsets, route.request, route.sessions, context.req)
    if (checked.kind === 'refused') {
      const range = context.req.headers['content-range']
      const location = `${context.client.publicOrigin}${this.clientPath(route.request, checked.sessions)}`
      throw rangeNotSatisfiable(route.request, checked.latest, location, typeof range === 'string' ? range : undefined)
    }
    return { ...route, sessions: checked.sessions }
  }

  /** A session that was committed or cancelled: its state need not be remembered. */
  private forget(route: MirrorRoute, target: UploadTarget | undefined): void {
    if (target?.session) route.offsets?.forget(target.upstream.name, sessionRequest(route.request, target.session))
  }

  /** Upstreams to write to: all that are not known to be down, or a failure when that is fewer than required. */
  private targets(route: MirrorRoute, what: string): Upstream[] {
    const up = route.upstreams.filter((upstream) => this.deps.isAvailable(upstream))
    const failures = route.upstreams.filter((upstream) => !up.includes(upstream)).map((upstream) => ({ upstream: upstream.name, reason: 'marked down by health checks' }))
    if (up.length < this.needed(route.upstreams.length)) throw this.failure(route, what, [], failures)
    for (const failure of failures) this.deps.onBranchFailure(route.request.op, route.request.repository, failure)
    return up
  }

  private sessionsOf(upload: UploadSession, outcomes: Outcome[]): SignedTarget[] {
    return outcomes.flatMap((outcome) => upload.signed(outcome.upstream, outcome.answer?.status, outcome.answer?.headers.location) ?? [])
  }

  private clientPath(request: RegistryRequest, sessions: SignedTarget[]): string {
    return this.deps.tokens.clientPath(repositoryOf(request), sessions.map((ref) => ref.session))
  }

  /** Configured upstreams that are not among those that succeeded. */
  private missing(route: MirrorRoute, succeeded: Array<{ upstream: Upstream }>): string[] {
    return route.upstreams.filter((upstream) => !succeeded.some((entry) => entry.upstream === upstream)).map((upstream) => upstream.name)
  }

  /**
   * Answers with the first success when at least `needed` upstreams succeeded (reporting the
   * others; for what was stored, naming the upstreams that lack it), else fails.
   */
  private conclude(route: MirrorRoute, context: RouteContext, what: string, outcomes: Outcome[], succeeded: Outcome[], needed: number, stored = true): ExchangeResult {
    if (succeeded.length < needed) return this.fail(route, context, what, outcomes, succeeded.length)
    this.reportFailures(route, outcomes.filter((outcome) => !succeeded.includes(outcome)))
    return this.replay(context, succeeded[0] as Outcome, stored ? { missing: this.missing(route, succeeded) } : {})
  }

  /**
   * Too few upstreams succeeded. When none did and every one answered with the same kind of
   * refusal (a 4xx: bad digest, unknown session, denied), that answer is the client's; otherwise
   * the client gets 503 naming what failed where.
   */
  private fail(route: MirrorRoute, context: RouteContext, what: string, outcomes: Outcome[], succeeded: number): ExchangeResult {
    return this.replay(context, this.refusalOrFailure(route, what, outcomes, succeeded), {})
  }

  /** The refusal every upstream gave (the client's answer), else throws the 503 that names what failed where. */
  private refusalOrFailure(route: MirrorRoute, what: string, outcomes: Outcome[], succeeded: number): Outcome {
    const refused = outcomes.length > 0 && outcomes.every((outcome) => outcome.answer !== undefined && outcome.answer.status >= 400 && outcome.answer.status < 500)
    if (succeeded === 0 && refused) return outcomes[0] as Outcome
    const ok = outcomes.filter((outcome) => outcome.answer !== undefined && outcome.answer.status < 300).map((outcome) => outcome.upstream.name)
    throw this.failure(route, what, ok, outcomes.filter((outcome) => !ok.includes(outcome.upstream.name)).map(failureOf))
  }

  private failure(route: MirrorRoute, what: string, succeeded: string[], failures: BranchFailure[]): RegistryError {
    const total = route.upstreams.length
    const needed = this.needed(total)
    for (const failure of failures) this.deps.onBranchFailure(route.request.op, route.request.repository, failure)
    return new RegistryError(
      'UNAVAILABLE',
      { mirror: { require: this.deps.require, needed, succeeded, failed: failures } },
      { 'Retry-After': RETRY_AFTER_SECONDS },
      `mirrored ${what} failed on ${failures.map((failure) => failure.upstream).join(', ') || 'no upstream'}: ${needed} of ${total} upstreams must succeed, ${succeeded.length} did`,
    )
  }

  private reportFailures(route: MirrorRoute, outcomes: Outcome[]): void {
    for (const outcome of outcomes) this.deps.onBranchFailure(route.request.op, route.request.repository, failureOf(outcome))
  }

  /** Writes one upstream's (buffered) answer to the client, with the gateway's Location and the mirror's state. */
  private replay(context: RouteContext, outcome: Outcome, options: { location?: string; missing?: string[] }): ExchangeResult {
    const answer = outcome.answer as Answer
    const { res, client } = context
    const headers = clientResponseHeaders(answer.headers, answer.status, outcome.upstream.origin, client)
    if (options.location !== undefined) headers.location = `${client.publicOrigin}${options.location}`
    if (options.missing && options.missing.length > 0) headers[MIRROR_MISSING_HEADER] = options.missing.join(', ')
    headers['content-length'] = String(answer.body.length)
    res.writeHead(answer.status, headers)
    if (context.request.method === 'HEAD') {
      res.end()
    } else {
      context.bytes.sent += answer.body.length
      res.end(answer.body)
    }
    return { status: answer.status }
  }

  private async attempt(
    context: RouteContext,
    upstream: Upstream,
    request: RegistryRequest,
    method: string,
    path: string,
    body: Buffer | null,
    kind: BodyKind,
    headers: Record<string, string> = {},
  ): Promise<Outcome> {
    try {
      const response = await this.deps.forwarder.send(this.exchangeFor(context, upstream, request), method, path, body, kind, undefined, headers)
      return { upstream, answer: await collect(response) }
    } catch (error) {
      return { upstream, error }
    }
  }

  /** The client's upload over the sessions it continues (set by the caller once known). */
  private upload(context: RouteContext): UploadSession {
    return new UploadSession(this.deps.forwarder, context, [])
  }

  private exchangeFor(context: RouteContext, upstream: Upstream, request: RegistryRequest): Exchange {
    return { ...context, request, upstream }
  }
}

function repositoryOf(request: RegistryRequest): string {
  return request.repository ?? ''
}

/** `POST /v2/<name>/blobs/uploads/` with no query: a fresh session. */
function plainUploadPath(request: RegistryRequest): string {
  return `/v2/${repositoryOf(request)}/blobs/uploads/`
}

/**
 * A manifest body, read whole (within manifest_max_bytes, or registry 2.8's own 4 MiB without one) so
 * it can be sent to every upstream; undefined when the client left. The rest of an overlong body is
 * discarded so the client reads the 413.
 */
async function readBody(context: RouteContext): Promise<Buffer | undefined> {
  const { req, limit } = context
  const declared = req.headers['content-length']
  if (limit && declared !== undefined && /^\d+$/.test(declared) && Number(declared) > limit.maxBytes) {
    throw tooLarge(new LimitExceeded(limit, Number(declared), true))
  }
  const cap = limit?.maxBytes ?? MANIFEST_CAP_WITHOUT_LIMIT
  const overCap = (size: number): Error => (limit ? tooLarge(new LimitExceeded(limit, size, false)) : new RegistryError('MANIFEST_INVALID', { max_bytes: cap }, {}, 'manifest too large'))
  try {
    const body = await readCapped(req, { maxBytes: cap, tooLarge: overCap, rest: 'discard' })
    context.bytes.received += body.length
    return body
  } catch (error) {
    // A reset or a close mid-body: the client left, there is no one to answer.
    if (error instanceof BodyIncomplete || req.destroyed) return undefined
    throw error
  }
}
