// Starts what the bench measures against: the registry itself, nginx (recipe and tuned), Portier and the two
// minimal forwarders; each is described the same way so every workload can run against any of them.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { ROOT } from '../../test/helpers/gateway.js'
import { freePort } from '../../test/helpers/ports.js'
import type { RegistryHandle } from '../../test/helpers/registry.js'
import type { Credentials, Tls } from './fixtures.js'
import { nginxConfig, type NginxVariant } from './nginx.js'
import type { TargetId } from './options.js'
import { childPids, type Processes, type Started, waitForHttp } from './procs.js'

export interface Target {
  id: TargetId
  label: string
  /** Base URL without a trailing slash. */
  base: string
  tls: boolean
  /** Whether requests carry Basic credentials (the proxies check them; the registry has no auth). */
  auth: boolean
  /** Processes whose CPU time is the proxy's (nginx's worker, Portier); empty for direct. */
  proxyPids: number[]
  /** The process whose peak RSS is reported. */
  mainPid?: number
  started?: Started
}

export const LABELS: Record<TargetId, string> = {
  direct: 'direct (HTTP, no auth)',
  'nginx-recipe': 'nginx recipe',
  'nginx-tuned': 'nginx tuned',
  'nginx-open': 'nginx tuned, no auth',
  portier: 'Portier',
  'portier-storage': 'Portier, blobs to and from storage',
  'portier-workers': 'Portier, 2 workers',
  'portier-storage-workers': 'Portier, blobs to and from storage, 2 workers',
  undici: 'undici forwarder',
  'http-proxy': 'http-proxy forwarder',
  'tls-memory': 'TLS from memory (ceiling)',
}

export interface Shared {
  dir: string
  tls: Tls
  htpasswd: string
  credentials: Credentials
  registry: RegistryHandle
  processes: Processes
}

export function directTarget(registry: RegistryHandle): Target {
  return { id: 'direct', label: LABELS.direct, base: registry.url, tls: false, auth: false, proxyPids: [], mainPid: registry.child.pid as number }
}

const NGINX_TARGETS: Record<NginxVariant, TargetId> = { recipe: 'nginx-recipe', tuned: 'nginx-tuned', open: 'nginx-open' }

export async function startNginx(shared: Shared, variant: NginxVariant): Promise<Target> {
  const id = NGINX_TARGETS[variant]
  const dir = join(shared.dir, id)
  await mkdir(dir, { recursive: true })
  const port = await freePort()
  const config = join(dir, 'nginx.conf')
  await writeFile(config, nginxConfig({
    variant,
    port,
    registryPort: shared.registry.port,
    dir,
    cert: shared.tls.cert,
    key: shared.tls.key,
    htpasswd: shared.htpasswd,
    // nginx started by root runs its worker as nobody, who cannot read the temp dir: keep root.
    ...(process.getuid?.() === 0 ? { user: 'root' } : {}),
  }))
  const started = shared.processes.start(id, 'nginx', ['-p', dir, '-e', join(dir, 'error.log'), '-c', config], join(dir, 'stderr.log'))
  const base = `https://127.0.0.1:${port}`
  await waitForHttp(`${base}/v2/`, started)
  const workers = await childPids(started.pid)
  if (workers.length !== 1) throw new Error(`${id}: expected one worker process, found ${workers.length}`)
  return { id, label: LABELS[id], base, tls: true, auth: variant !== 'open', proxyPids: workers, mainPid: workers[0] as number, started }
}

export interface PortierOptions {
  /** Extra node flags, e.g. BENCH_NODE_ARGS or --cpu-prof. */
  nodeArgs?: string[]
  name?: string
  /** The portier-storage target: upstreams[].storage names the bench registry's storage, so blob GETs are read from it and uploads written into it (storage_uploads). */
  storage?: boolean
  /** server.workers (the -workers targets: 2). */
  workers?: number
}

export async function startPortier(shared: Shared, options: PortierOptions = {}): Promise<Target> {
  const workers = options.workers ?? 1
  const id: TargetId = `${options.storage ? 'portier-storage' : 'portier'}${workers > 1 ? '-workers' : ''}` as TargetId
  const name = options.name ?? id
  const dir = join(shared.dir, name)
  await mkdir(dir, { recursive: true })
  const port = await freePort()
  const config = {
    server: { listen: `127.0.0.1:${port}`, ...(workers > 1 ? { workers } : {}) },
    tls: { certificates: [{ cert: shared.tls.cert, key: shared.tls.key }] },
    upstreams: [{ url: shared.registry.url, ...(options.storage ? { storage: shared.registry.storageDir, storage_uploads: true } : {}) }],
    auth: { mode: 'htpasswd', htpasswd: { path: shared.htpasswd } },
    // Its own store in the bench's temp dir: the default (data/portier.db under the working directory, the
    // repository) was shared by every target at once and kept growing from run to run (one audit row per
    // authenticated GET /v2/: 3.5 million rows, 529 MB after a week of runs, whose start-up check took 1.3 s).
    store: { path: join(dir, 'portier.db') },
    // The admin listener's fixed default port could collide with tests running meanwhile; metrics stay on.
    admin: { listen: '' },
  }
  const configFile = join(dir, 'portier.yaml')
  await writeFile(configFile, yaml.dump(config))
  // The V8 flags the image runs with (Dockerfile ENTRYPOINT), then the benchmark's own (a later flag wins).
  const args = ['--max-semi-space-size=1', '--liftoff-only', '--no-concurrent-recompilation', ...(options.nodeArgs ?? []), join(ROOT, 'dist', 'cli.js'), 'serve', '--config', configFile]
  // Default log level (info): one access-log line per request, like nginx's default access_log. Into a file.
  const started = shared.processes.start(name, process.execPath, args, join(dir, 'portier.log'), withoutPortierVariables(process.env))
  const base = `https://127.0.0.1:${port}`
  await waitForHttp(`${base}/v2/`, started, 30_000)
  if (workers === 1) return { id, label: LABELS[id], base, tls: true, auth: true, proxyPids: [started.pid], mainPid: started.pid, started }
  // Every worker serves before the measuring starts; their CPU counts with the primary's.
  await waitForLogLine(join(dir, 'portier.log'), 'portier ready: every worker serves', 90_000)
  const children = await childPids(started.pid)
  return { id, label: LABELS[id], base, tls: true, auth: true, proxyPids: [started.pid, ...children], mainPid: started.pid, started }
}

async function waitForLogLine(file: string, text: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if ((await readFile(file, 'utf8').catch(() => '')).includes(text)) return
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`${file}: no "${text}" within ${timeoutMs} ms`)
}

export async function startForwarder(shared: Shared, engine: 'undici' | 'http-proxy'): Promise<Target> {
  const port = await freePort()
  const env = {
    ...process.env,
    FORWARDER_PORT: String(port),
    FORWARDER_UPSTREAM: shared.registry.url,
    FORWARDER_CERT: shared.tls.cert,
    FORWARDER_KEY: shared.tls.key,
  }
  const script = join(ROOT, 'bench', 'forwarders', `${engine}.ts`)
  const started = shared.processes.start(engine, process.execPath, [`--import=${TS_LOADER}`, script], join(shared.dir, `${engine}.log`), env)
  const base = `https://127.0.0.1:${port}`
  await waitForHttp(`${base}/v2/`, started, 30_000)
  return { id: engine, label: LABELS[engine], base, tls: true, auth: false, proxyPids: [started.pid], mainPid: started.pid, started }
}

/** The download ceiling (`bench/ceiling/tls-source.ts`, also in `npm run bench:ceiling`): an HTTPS server with Portier's
 * cipher order that answers every request with sizeMiB bytes from memory. No upstream, no auth: Node's own TLS send limit. */
export async function startTlsSource(shared: Shared, sizeMiB: number): Promise<Target> {
  const port = await freePort()
  const script = join(ROOT, 'bench', 'ceiling', 'tls-source.ts')
  const args = [`--import=${TS_LOADER}`, script, shared.tls.cert, shared.tls.key, String(port), '256', String(sizeMiB)]
  const started = shared.processes.start('tls-memory', process.execPath, args, join(shared.dir, 'tls-memory.log'))
  const base = `https://127.0.0.1:${port}`
  await waitForHttp(`${base}/v2/`, started, 30_000)
  return { id: 'tls-memory', label: LABELS['tls-memory'], base, tls: true, auth: false, proxyPids: [started.pid], mainPid: started.pid, started }
}

/** The TypeScript loader (tsx) that `npm run bench` and the tests also run under, as a file URL. */
export const TS_LOADER = import.meta.resolve('tsx')

function withoutPortierVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('PORTIER_')))
}
