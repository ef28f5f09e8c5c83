// The bench's settings: every knob is an environment variable, and the defaults are the benchmark issue's workload.

export const WORKLOADS = ['upload', 'chunked', 'download', 'skopeo', 'get', 'head', 'latency', 'concurrent'] as const
export type Workload = (typeof WORKLOADS)[number]

export const TARGETS = ['direct', 'nginx-recipe', 'nginx-tuned', 'nginx-open', 'portier', 'portier-storage', 'portier-workers', 'portier-storage-workers', 'undici', 'http-proxy', 'tls-memory'] as const
export type TargetId = (typeof TARGETS)[number]

export interface BenchOptions {
  rounds: number
  only: Workload[]
  targets: TargetId[]
  blobMiB: number
  chunkMiB: number
  layersMiB: number[]
  loadSeconds: number
  connections: number
  concurrentUploads: number
  concurrentMiB: number
  /** Blob size of the second concurrent run that shows whether memory grows with blob size (0: skip). */
  largeMiB: number
  largeConcurrency: number
  bcryptCost: number
  /** Run the slowest case once more with Portier under --cpu-prof and summarize the profile. */
  profile: boolean
  /** Extra node flags for every Portier target (BENCH_NODE_ARGS), e.g. --trace-gc. */
  nodeArgs: string[]
  keep: boolean
  out: string
}

function list<T extends string>(name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
  const raw = process.env[name]
  if (!raw) return [...fallback]
  const values = raw.split(',').map((value) => value.trim()).filter(Boolean)
  for (const value of values) {
    if (!allowed.includes(value as T)) throw new Error(`${name}: unknown value "${value}" (one of ${allowed.join(', ')})`)
  }
  return values as T[]
}

function number(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a number >= 0, not "${raw}"`)
  return value
}

function flag(name: string, fallback: boolean): boolean {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  return raw !== '0' && raw.toLowerCase() !== 'false'
}

export function readOptions(): BenchOptions {
  return {
    rounds: Math.max(1, number('BENCH_ROUNDS', 3)),
    only: list('BENCH_ONLY', WORKLOADS, WORKLOADS),
    targets: list('BENCH_TARGETS', TARGETS, TARGETS),
    blobMiB: number('BENCH_BLOB_MIB', 512),
    chunkMiB: number('BENCH_CHUNK_MIB', 16),
    layersMiB: (process.env.BENCH_LAYERS_MIB ?? '100,100,100').split(',').map(Number),
    loadSeconds: number('BENCH_SECONDS', 5),
    connections: number('BENCH_CONNECTIONS', 32),
    concurrentUploads: number('BENCH_CONCURRENT', 16),
    concurrentMiB: number('BENCH_CONCURRENT_MIB', 256),
    largeMiB: number('BENCH_LARGE_MIB', 1024),
    largeConcurrency: number('BENCH_LARGE_CONCURRENT', 2),
    bcryptCost: number('BENCH_BCRYPT_COST', 10),
    profile: flag('BENCH_PROFILE', true),
    nodeArgs: (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean),
    keep: flag('BENCH_KEEP', false),
    out: process.env.BENCH_OUT ?? 'bench/results/latest.md',
  }
}

export const HELP = `npm run bench — Portier vs nginx vs the registry directly, one workload, alternating rounds.
Environment (defaults in brackets):
  BENCH_ROUNDS [3]            rounds; each round runs every target once, in turn
  BENCH_ONLY [all]            ${WORKLOADS.join(',')}
  BENCH_TARGETS [all]         ${TARGETS.join(',')}
  BENCH_BLOB_MIB [512]        blob size for upload, chunked and download
  BENCH_CHUNK_MIB [16]        PATCH size of the chunked upload
  BENCH_LAYERS_MIB [100,100,100]  layers of the skopeo image
  BENCH_SECONDS [5]           duration of each wrk/ab run
  BENCH_CONNECTIONS [32]      connections of the wrk/ab runs
  BENCH_CONCURRENT [16]       concurrent uploads ...
  BENCH_CONCURRENT_MIB [256]  ... of this size (Portier's peak RSS is read during them)
  BENCH_LARGE_MIB [1024]      then BENCH_LARGE_CONCURRENT [2] uploads of this size and of BENCH_CONCURRENT_MIB (0: skip)
  BENCH_BCRYPT_COST [10]      bcrypt cost of the htpasswd file nginx and Portier share
  BENCH_PROFILE [1]           profile the slowest case with node --cpu-prof afterwards
  BENCH_NODE_ARGS []          extra node flags for the Portier targets, space-separated (e.g. --trace-gc)
  BENCH_KEEP [0]              keep the temp dir (configs, logs, profiles)
  BENCH_OUT [bench/results/latest.md]  where the markdown report goes`
