// Reads the output of registry 2.8's `garbage-collect`: progress as it marks and sweeps, and the totals it reports.

/** What the collector has said so far; counts grow while it runs. */
export interface CollectorTally {
  /** Repositories it walked (it prints each name on a line of its own before marking it). */
  repositories: number
  /** "marking manifest" / "marking blob" lines: the mark phase's progress. */
  manifestsMarked: number
  blobsMarked: number
  /** From the summary line "N blobs marked, M blobs and K manifests eligible for deletion". */
  summary?: { blobsMarked: number; blobsEligible: number; manifestsEligible: number }
  /** Digests listed as "blob eligible for deletion: …" and "manifest eligible for deletion: …". */
  blobsEligible: string[]
  manifestsEligible: string[]
  /** Paths of the "Deleting blob: …" / "deleting manifest: …" log lines (info level, on stderr). */
  blobsDeleted: number
  manifestsDeleted: number
  /** Log lines at level error/fatal/panic: why a run failed. */
  errors: string[]
}

export type CollectorEvent =
  | { kind: 'repository'; repository: string }
  | { kind: 'marked'; what: 'manifest' | 'blob' }
  | { kind: 'summary'; blobsMarked: number; blobsEligible: number; manifestsEligible: number }
  | { kind: 'eligible'; what: 'manifest' | 'blob'; digest: string }
  | { kind: 'deleted'; what: 'manifest' | 'blob'; path: string }
  | { kind: 'error'; message: string }

const SUMMARY = /^(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion$/
const MARKING = /^(\S+): marking (manifest|blob) (sha256:[0-9a-f]{64})\s*$/
const ELIGIBLE = /^(manifest|blob) eligible for deletion: (\S+)$/
/** logrus text format: time="…" level=info msg="Deleting blob: /docker/registry/v2/blobs/…" */
const LOGRUS_LEVEL = /\blevel=(\w+)/
const LOGRUS_MSG = /\bmsg="((?:[^"\\]|\\.)*)"/
const DELETING = /^(Deleting blob|deleting manifest): (\S+)$/i
/** A repository name as distribution's grammar has it (lower-case path components). */
const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/

export function emptyTally(): CollectorTally {
  return { repositories: 0, manifestsMarked: 0, blobsMarked: 0, blobsEligible: [], manifestsEligible: [], blobsDeleted: 0, manifestsDeleted: 0, errors: [] }
}

/** One line of the collector's stdout or stderr as an event, or undefined for lines that say nothing we count. */
export function parseCollectorLine(raw: string): CollectorEvent | undefined {
  const line = raw.trim()
  if (line === '') return undefined
  const level = LOGRUS_LEVEL.exec(line)?.[1]
  if (level !== undefined && line.includes('msg=')) {
    const message = (LOGRUS_MSG.exec(line)?.[1] ?? '').replace(/\\(.)/g, '$1')
    const deleting = DELETING.exec(message)
    if (deleting) return { kind: 'deleted', what: (deleting[1] ?? '').toLowerCase().endsWith('blob') ? 'blob' : 'manifest', path: deleting[2] ?? '' }
    if (level === 'error' || level === 'fatal' || level === 'panic') return { kind: 'error', message: message || line }
    return undefined
  }
  const summary = SUMMARY.exec(line)
  if (summary) return { kind: 'summary', blobsMarked: Number(summary[1]), blobsEligible: Number(summary[2]), manifestsEligible: Number(summary[3]) }
  const marking = MARKING.exec(line)
  if (marking) return { kind: 'marked', what: marking[2] === 'manifest' ? 'manifest' : 'blob' }
  const eligible = ELIGIBLE.exec(line)
  if (eligible) return { kind: 'eligible', what: eligible[1] === 'manifest' ? 'manifest' : 'blob', digest: eligible[2] ?? '' }
  // cobra prints a failed command's error as "Error: …" (or the collector "failed to …") on stderr.
  if (/^(?:Error:|failed to )/i.test(line)) return { kind: 'error', message: line }
  if (REPOSITORY.test(line)) return { kind: 'repository', repository: line }
  return undefined
}

/** Adds one event to the tally (mutates it: the collector's output is read line by line). */
export function tallyEvent(tally: CollectorTally, event: CollectorEvent): void {
  switch (event.kind) {
    case 'repository':
      tally.repositories += 1
      return
    case 'marked':
      if (event.what === 'manifest') tally.manifestsMarked += 1
      else tally.blobsMarked += 1
      return
    case 'summary':
      tally.summary = { blobsMarked: event.blobsMarked, blobsEligible: event.blobsEligible, manifestsEligible: event.manifestsEligible }
      return
    case 'eligible':
      if (event.what === 'manifest') tally.manifestsEligible.push(event.digest)
      else tally.blobsEligible.push(event.digest)
      return
    case 'deleted':
      if (event.what === 'manifest') tally.manifestsDeleted += 1
      else tally.blobsDeleted += 1
      return
    case 'error':
      // Bounded: a collector failing on every blob must not grow the report without end.
      if (tally.errors.length < 20) tally.errors.push(event.message)
      return
  }
}

/** The whole output at once (tests, and a finished run's text). */
export function tallyOutput(text: string): CollectorTally {
  const tally = emptyTally()
  for (const line of text.split('\n')) {
    const event = parseCollectorLine(line)
    if (event) tallyEvent(tally, event)
  }
  return tally
}
