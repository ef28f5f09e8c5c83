// A container's file system as its pod sees it, laid out under a temporary root: ConfigMap and Secret keys at their mount paths, emptyDirs and claims as directories; plus stand-ins for the Secret files deploy/kubernetes makes its Secrets from.
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { runOk } from './exec.js'
import { CLI } from './gateway.js'
import type { KubeDocument } from './kustomize.js'

export interface Mount {
  name: string
  mountPath: string
  subPath?: string
  readOnly?: boolean
}

export interface Probe {
  httpGet?: { path?: string; port: number | string }
}

export interface Container {
  name: string
  image: string
  args?: string[]
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; configMapKeyRef?: { name: string; key: string } } }>
  ports?: Array<{ name?: string; containerPort: number }>
  startupProbe?: Probe
  livenessProbe?: Probe
  readinessProbe?: Probe
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } }
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
  securityContext?: Record<string, unknown>
  volumeMounts?: Mount[]
}

export interface Volume {
  name: string
  configMap?: { name: string }
  secret?: { secretName: string }
  persistentVolumeClaim?: { claimName: string }
  emptyDir?: Record<string, unknown>
}

export interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> }
  spec: { containers: Container[]; volumes?: Volume[]; securityContext?: Record<string, unknown>; terminationGracePeriodSeconds?: number }
}

/** The password of the user "admin" in the stand-in htpasswd file. */
export const ADMIN_PASSWORD = 'a-long-password'

/**
 * Makes the files deploy/kubernetes/base/secrets/README.md asks for, the same way (portier passwd, portier
 * token-key, openssl), into `dir`; the TLS certificate names registry.example.com, localhost and 127.0.0.1.
 */
export async function makeSecretFiles(dir: string): Promise<Map<string, Buffer>> {
  const env = { PATH: process.env.PATH }
  await runOk(process.execPath, [CLI, 'passwd', 'add', '--mode', '0644', '--file', join(dir, 'htpasswd'), 'admin'], { input: `${ADMIN_PASSWORD}\n`, env })
  await runOk(process.execPath, [CLI, 'token-key', '--out', dir], { env })
  await runOk('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', join(dir, 'tls.key'), '-out', join(dir, 'tls.crt'), '-days', '1', '-subj', '/CN=registry.example.com',
    '-addext', 'subjectAltName=DNS:registry.example.com,DNS:localhost,IP:127.0.0.1',
  ])
  for (const name of ['routing-secret', 'ui-session-secret', 'registry-http-secret']) writeFileSync(join(dir, name), `${'ab'.repeat(32)}\n`)
  for (const name of ['s3-access-key', 's3-secret-key']) writeFileSync(join(dir, name), 'AKIAEXAMPLE\n')
  return new Map(readdirSync(dir).map((name) => [name, readFileSync(join(dir, name))]))
}

/** A readFile for resolveKustomization: files in a secrets/ directory come from `stand-ins`, the rest from disk. */
export function secretFileReader(standIns: Map<string, Buffer>): (path: string) => Buffer {
  return (path) => {
    if (basename(dirname(path)) !== 'secrets') return readFileSync(path)
    const found = standIns.get(basename(path))
    if (!found) throw new Error(`no test stand-in for the Secret file ${path}`)
    return found
  }
}

/** The pod template of Deployment `name`, and its container `container` (default: the first). */
export function podOf(docs: KubeDocument[], name: string, container?: string): { pod: PodTemplate; container: Container } {
  const deployment = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === name)
  if (!deployment) throw new Error(`no Deployment ${name}`)
  const pod = (deployment.spec as { template: PodTemplate }).template
  const found = container === undefined ? pod.spec.containers[0] : pod.spec.containers.find((c) => c.name === container)
  if (!found) throw new Error(`Deployment ${name} has no container ${container ?? ''}`)
  return { pod, container: found }
}

/** The data of the ConfigMap or Secret a volume names, as files (Secret data decoded); undefined for other volumes. */
function volumeFiles(docs: KubeDocument[], volume: Volume): Array<[string, Buffer]> | undefined {
  const kind = volume.configMap ? 'ConfigMap' : volume.secret ? 'Secret' : undefined
  if (!kind) return undefined
  const name = volume.configMap?.name ?? volume.secret?.secretName
  const source = docs.find((d) => d.kind === kind && d.metadata.name === name)
  return Object.entries((source?.data ?? {}) as Record<string, string>).map(([key, value]): [string, Buffer] => [key, kind === 'Secret' ? Buffer.from(value, 'base64') : Buffer.from(value)])
}

export interface LaidOut {
  /** Every volume mount of the container. */
  mounts: Mount[]
  /** `value` with every absolute path under a mount moved under the root, at any depth of a config tree. */
  move: <T>(value: T) => T
}

/**
 * Writes the container's mounts under `root` (made 0755 so that another uid may walk it). Volumes the
 * container may write (emptyDir, claims) are owned by `writer` when given, as fsGroup makes them in the pod;
 * everything else stays root's, like a read-only root file system and read-only Secret mounts.
 */
export function layOut(root: string, docs: KubeDocument[], pod: PodTemplate, container: Container, writer?: number): LaidOut {
  chmodSync(root, 0o755)
  const mounts = container.volumeMounts ?? []
  for (const mount of mounts) {
    const volume = (pod.spec.volumes ?? []).find((v) => v.name === mount.name)
    if (!volume) throw new Error(`volumeMount ${mount.name} names no volume`)
    const target = join(root, mount.mountPath)
    const files = volumeFiles(docs, volume)
    mkdirSync(mount.subPath !== undefined ? dirname(target) : target, { recursive: true, mode: 0o755 })
    if (mount.subPath !== undefined) {
      const file = files?.find(([key]) => key === mount.subPath)
      if (file) writeFileSync(target, file[1], { mode: 0o644 })
      continue
    }
    for (const [key, bytes] of files ?? []) writeFileSync(join(target, key), bytes, { mode: 0o644 })
    if (writer !== undefined && (volume.emptyDir !== undefined || volume.persistentVolumeClaim !== undefined)) chownSync(target, writer, writer)
  }
  const under = (value: string): boolean => mounts.some((m) => value === m.mountPath || value.startsWith(`${m.mountPath}/`))
  const move = <T>(value: T): T => {
    if (typeof value === 'string') return (under(value) ? join(root, value) : value) as T
    if (Array.isArray(value)) return value.map(move) as T
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, move(v)])) as T
    return value
  }
  return { mounts, move }
}
