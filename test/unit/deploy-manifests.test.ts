// deploy/kubernetes: every document of the base and the overlays against the Kubernetes API schemas (kubernetes-models), their cross-references, the drain wired to terminationGracePeriodSeconds, and the mounted config through `portier check-config` in a copy of the pod's file system.
import t, { type Test } from 'tap'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, posix, relative } from 'node:path'
import yaml from 'js-yaml'
import { run } from '../helpers/exec.js'
import { CLI, ROOT } from '../helpers/gateway.js'
import { resolveKustomization, applyOperations, type KubeDocument, type Resolved } from '../helpers/kustomize.js'
import { schemaProblems, typeProblems } from '../helpers/k8s-schema.js'
import { layOut, makeSecretFiles, secretFileReader, type Container, type PodTemplate } from '../helpers/pod-files.js'
import { loadConfig } from '../../src/app/config.js'
import { parseDuration } from '../../src/config/units.js'

const KUBERNETES = join(ROOT, 'deploy', 'kubernetes')
const BASE = join(KUBERNETES, 'base')
const OVERLAYS = existsSync(join(KUBERNETES, 'overlays')) ? readdirSync(join(KUBERNETES, 'overlays')).map((name) => join(KUBERNETES, 'overlays', name)) : []

type Tree = Record<string, unknown>

interface DeploymentSpec {
  replicas?: number
  selector: { matchLabels: Record<string, string> }
  template: PodTemplate
}

const spec = <T>(doc: KubeDocument): T => doc.spec as T
const clone = (resolved: Resolved): KubeDocument[] => resolved.docs.map((doc) => structuredClone(doc))
const find = (docs: KubeDocument[], kind: string, name: string): KubeDocument => {
  const doc = docs.find((d) => d.kind === kind && d.metadata.name === name)
  if (!doc) throw new Error(`no ${kind} ${name}`)
  return doc
}

const fixtures = mkdtempSync(join(tmpdir(), 'portier-k8s-secrets-'))
t.teardown(() => rmSync(fixtures, { recursive: true, force: true }))
const secretFiles = await makeSecretFiles(fixtures)
const readFile = secretFileReader(secretFiles)
const resolveDir = (dir: string): Resolved => resolveKustomization(dir, { readFile, root: ROOT })
const builds: Array<[string, Resolved]> = [[relative(ROOT, BASE), resolveDir(BASE)], ...OVERLAYS.map((dir): [string, Resolved] => [relative(ROOT, dir), resolveDir(dir)])]

/** selector ⊆ labels */
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels?.[key] === value)

/** Every reference between documents that kubectl would not catch but the cluster would (a Service selecting no pod, a probe on a port the container does not have, a Secret that does not exist). */
function crossReferenceProblems(docs: KubeDocument[]): string[] {
  const problems: string[] = []
  const named = (kind: string, name: string): KubeDocument | undefined => docs.find((d) => d.kind === kind && d.metadata.name === name)
  const deployments = docs.filter((d) => d.kind === 'Deployment')
  const templates = deployments.map((d) => spec<DeploymentSpec>(d).template)
  const dataKeys = (doc: KubeDocument | undefined): string[] => Object.keys((doc?.data ?? {}) as Tree)

  for (const deployment of deployments) {
    const at = `Deployment ${deployment.metadata.name}`
    const { selector, template } = spec<DeploymentSpec>(deployment)
    if (!selects(selector.matchLabels, template.metadata.labels)) problems.push(`${at}: spec.selector does not select its own pod template's labels`)
    const volumes = template.spec.volumes ?? []
    for (const volume of volumes) {
      if (volume.configMap && !named('ConfigMap', volume.configMap.name)) problems.push(`${at}: volume ${volume.name}: no ConfigMap ${volume.configMap.name}`)
      if (volume.secret && !named('Secret', volume.secret.secretName)) problems.push(`${at}: volume ${volume.name}: no Secret ${volume.secret.secretName}`)
      if (volume.persistentVolumeClaim && !named('PersistentVolumeClaim', volume.persistentVolumeClaim.claimName)) problems.push(`${at}: volume ${volume.name}: no PersistentVolumeClaim ${volume.persistentVolumeClaim.claimName}`)
      if (!template.spec.containers.some((c) => (c.volumeMounts ?? []).some((m) => m.name === volume.name))) problems.push(`${at}: volume ${volume.name} is mounted by no container`)
    }
    for (const container of template.spec.containers) {
      const ports = container.ports ?? []
      const hasPort = (port: number | string): boolean => ports.some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port))
      for (const kind of ['startupProbe', 'livenessProbe', 'readinessProbe'] as const) {
        const port = container[kind]?.httpGet?.port
        if (port !== undefined && !hasPort(port)) problems.push(`${at}: container ${container.name}: ${kind} port ${port} is not a container port`)
      }
      for (const mount of container.volumeMounts ?? []) {
        const volume = volumes.find((v) => v.name === mount.name)
        if (!volume) {
          problems.push(`${at}: container ${container.name}: volumeMount ${mount.name} names no volume`)
          continue
        }
        const source = volume.configMap ? named('ConfigMap', volume.configMap.name) : volume.secret ? named('Secret', volume.secret.secretName) : undefined
        if (mount.subPath !== undefined && source && !dataKeys(source).includes(mount.subPath)) problems.push(`${at}: container ${container.name}: subPath ${mount.subPath} is no key of ${source.kind} ${source.metadata.name}`)
      }
      for (const variable of container.env ?? []) {
        const ref = variable.valueFrom?.secretKeyRef ?? variable.valueFrom?.configMapKeyRef
        if (!ref) continue
        const kind = variable.valueFrom?.secretKeyRef ? 'Secret' : 'ConfigMap'
        const source = named(kind, ref.name)
        if (!source) problems.push(`${at}: env ${variable.name}: no ${kind} ${ref.name}`)
        else if (!dataKeys(source).includes(ref.key)) problems.push(`${at}: env ${variable.name}: ${kind} ${ref.name} has no key ${ref.key}`)
      }
    }
  }
  for (const service of docs.filter((d) => d.kind === 'Service')) {
    const { selector, ports } = spec<{ selector: Record<string, string>; ports: Array<{ name?: string; targetPort?: number | string; port: number }> }>(service)
    const pods = templates.filter((template) => selects(selector, template.metadata.labels))
    if (pods.length === 0) problems.push(`Service ${service.metadata.name}: its selector matches no Deployment's pods`)
    for (const port of ports) {
      const target = port.targetPort ?? port.port
      for (const pod of pods) {
        const found = pod.spec.containers.some((c) => (c.ports ?? []).some((p) => (typeof target === 'number' ? p.containerPort === target : p.name === target)))
        if (!found) problems.push(`Service ${service.metadata.name}: targetPort ${target} is no container port of the pods it selects`)
      }
    }
  }
  for (const pdb of docs.filter((d) => d.kind === 'PodDisruptionBudget')) {
    const { selector } = spec<{ selector: { matchLabels: Record<string, string> } }>(pdb)
    if (!templates.some((template) => selects(selector.matchLabels, template.metadata.labels))) problems.push(`PodDisruptionBudget ${pdb.metadata.name}: its selector matches no Deployment's pods`)
  }
  for (const hpa of docs.filter((d) => d.kind === 'HorizontalPodAutoscaler')) {
    const { scaleTargetRef: ref, metrics } = spec<{ scaleTargetRef: { apiVersion: string; kind: string; name: string }; metrics: Array<{ type: string; resource?: { name: string } }> }>(hpa)
    const target = docs.find((d) => d.kind === ref.kind && d.apiVersion === ref.apiVersion && d.metadata.name === ref.name)
    if (!target) {
      problems.push(`HorizontalPodAutoscaler ${hpa.metadata.name}: no ${ref.apiVersion} ${ref.kind} ${ref.name} to scale`)
      continue
    }
    for (const metric of metrics) {
      const resource = metric.resource?.name
      if (metric.type !== 'Resource' || !resource) continue
      for (const container of spec<DeploymentSpec>(target).template.spec.containers) {
        if (container.resources?.requests?.[resource] === undefined) problems.push(`HorizontalPodAutoscaler ${hpa.metadata.name}: container ${container.name} of ${ref.name} requests no ${resource}, which utilisation is measured against`)
      }
    }
  }
  for (const policy of docs.filter((d) => d.kind === 'NetworkPolicy')) {
    const { podSelector, ingress } = spec<{ podSelector: { matchLabels: Record<string, string> }; ingress?: Array<{ from?: Array<{ podSelector?: { matchLabels: Record<string, string> } }>; ports?: Array<{ port: number | string }> }> }>(policy)
    const pods = templates.filter((template) => selects(podSelector.matchLabels, template.metadata.labels))
    if (pods.length === 0) problems.push(`NetworkPolicy ${policy.metadata.name}: its podSelector matches no Deployment's pods`)
    for (const rule of ingress ?? []) {
      for (const from of rule.from ?? []) {
        if (from.podSelector && !templates.some((template) => selects(from.podSelector?.matchLabels, template.metadata.labels))) problems.push(`NetworkPolicy ${policy.metadata.name}: an ingress podSelector matches no Deployment's pods`)
      }
      for (const { port } of rule.ports ?? []) {
        if (!pods.every((pod) => pod.spec.containers.some((c) => (c.ports ?? []).some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port))))) problems.push(`NetworkPolicy ${policy.metadata.name}: port ${port} is no container port of the pods it selects`)
      }
    }
  }
  return problems
}

/** The Portier container, its pod and its config (the ConfigMap key mounted at the CMD's --config path). */
function portier(docs: KubeDocument[]): { pod: PodTemplate; container: Container; configPath: string; configText: string } {
  const pod = spec<DeploymentSpec>(find(docs, 'Deployment', 'portier')).template
  const container = pod.spec.containers.find((c) => c.name === 'portier') as Container
  const args = container.args ?? []
  const configPath = args[args.indexOf('--config') + 1] as string
  const mount = (container.volumeMounts ?? []).find((m) => m.mountPath === configPath)
  if (!mount?.subPath) throw new Error(`nothing is mounted at the --config path ${configPath} (as a subPath of a ConfigMap)`)
  const volume = (pod.spec.volumes ?? []).find((v) => v.name === mount.name)
  const configMap = find(docs, 'ConfigMap', volume?.configMap?.name ?? '')
  return { pod, container, configPath, configText: (configMap.data as Record<string, string>)[mount.subPath] as string }
}

/** Seconds of a preStop hook's sleep (exec sleep N, or the sleep action). */
function preStopSeconds(container: Container): number {
  const preStop = container.lifecycle?.preStop
  if (preStop?.sleep) return preStop.sleep.seconds
  const command = preStop?.exec?.command ?? []
  return command[0] === 'sleep' ? Number(command[1]) : 0
}

/** Problems with the drain: the kubelet must not kill Portier while it still drains (preStop sleep + server.drain_timeout). */
function drainProblems(docs: KubeDocument[]): string[] {
  const { pod, container, configText } = portier(docs)
  const drain = (parseDuration((yaml.load(configText) as { server?: { drain_timeout?: unknown } }).server?.drain_timeout ?? '30s') ?? Number.NaN) / 1000
  const grace = pod.spec.terminationGracePeriodSeconds ?? 30
  const sleep = preStopSeconds(container)
  return grace > sleep + drain ? [] : [`terminationGracePeriodSeconds ${grace} is not above the preStop sleep (${sleep}s) plus server.drain_timeout (${drain}s)`]
}

/**
 * Lays out the Portier container's file system as the pod sees it (ConfigMap and Secret files at their mount
 * paths, emptyDirs as directories, WORKDIR /app) under a temporary root, and runs check-config there with
 * the config's absolute paths moved under that root.
 */
async function checkConfigInPod(t: Test, docs: KubeDocument[]): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const { pod, container, configPath, configText } = portier(docs)
  const root = mkdtempSync(join(tmpdir(), 'portier-k8s-pod-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const { move } = layOut(root, docs, pod, container)
  mkdirSync(join(root, 'app'), { recursive: true })
  const config = join(root, configPath)
  writeFileSync(config, yaml.dump(move(yaml.load(configText))))
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH }
  for (const variable of container.env ?? []) if (variable.value !== undefined) env[variable.name] = variable.value
  return run(process.execPath, [CLI, 'check-config', '--config', config], { env, cwd: join(root, 'app') })
}

for (const [name, resolved] of builds) {
  t.test(`${name}: every document passes the Kubernetes API schema of its kind, unknown fields included`, async (t) => {
    const kinds = resolved.docs.map((d) => `${d.kind}/${d.metadata.name}`)
    t.ok(kinds.length >= 10, `${kinds.length} documents: ${kinds.join(', ')}`)
    for (const doc of resolved.docs) t.same(await schemaProblems(doc), [], `${resolved.sources.get(doc)}: ${doc.kind} ${doc.metadata.name} (ajv, kubernetes-models)`)
    const typed = typeProblems(resolved.docs, ROOT)
    resolved.docs.forEach((doc, index) => t.same(typed[index], [], `${resolved.sources.get(doc)}: ${doc.kind} ${doc.metadata.name} has only fields its type knows`))
    const names = resolved.docs.map((d) => `${d.kind}/${d.metadata.name}`)
    t.equal(new Set(names).size, names.length, 'no kind and name twice')
  })

  t.test(`${name}: references between documents resolve`, async (t) => {
    t.same(crossReferenceProblems(resolved.docs), [])
    t.same(drainProblems(resolved.docs), [])
  })

  t.test(`${name}: the config the Portier pod mounts passes check-config with the Secrets' files in place`, async (t) => {
    const r = await checkConfigInPod(t, resolved.docs)
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, /valid/)
  })
}

const base = (builds[0] as [string, Resolved])[1]

t.test('the schema check fails on a wrong type, an unknown field, a missing required key and an unknown kind', async (t) => {
  const docs = clone(base)
  const deployment = find(docs, 'Deployment', 'portier')
  applyOperations(deployment, [{ op: 'replace', path: '/spec/replicas', value: '2' }], 'test')
  t.match((await schemaProblems(deployment)).join('\n'), /spec\/replicas must be integer/, 'replicas "2" (a string)')
  const service = find(docs, 'Service', 'portier')
  applyOperations(service, [{ op: 'add', path: '/spec/ports/0/targetPorts', value: 'registry' }], 'test')
  const container = spec<DeploymentSpec>(find(docs, 'Deployment', 'registry')).template.spec.containers[0] as unknown as Tree
  container.readinessProbes = container.readinessProbe
  const typed = typeProblems([service, find(docs, 'Deployment', 'registry')], ROOT)
  t.match(typed[0]?.join('\n'), /'"targetPorts"' does not exist in type 'IServicePort'/, 'a misspelt Service port field')
  t.match(typed[1]?.join('\n'), /'"readinessProbes"' does not exist in type 'IContainer'/, 'a misspelt container field')
  t.same(await schemaProblems(find(docs, 'Service', 'portier')), [], '(which the JSON schemas of kubernetes-models allow: the reason for the type check)')
  const hpa = find(docs, 'HorizontalPodAutoscaler', 'portier')
  delete (hpa.spec as Tree).maxReplicas
  t.match((await schemaProblems(hpa)).join('\n'), /maxReplicas/, 'an HPA without maxReplicas')
  t.match((await schemaProblems({ ...hpa, apiVersion: 'autoscaling/v3' })).join('\n'), /no Kubernetes API schema/, 'an apiVersion that does not exist')
  t.match((await schemaProblems({ ...hpa, kind: 'HorizontalPodScaler' })).join('\n'), /no Kubernetes API schema/, 'a kind that does not exist')
})

t.test('the cross-reference checks fail on a selector, port or name that points nowhere', async (t) => {
  const broken = (ops: (docs: KubeDocument[]) => void): string => {
    const docs = clone(base)
    ops(docs)
    return crossReferenceProblems(docs).join('\n')
  }
  t.match(broken((d) => applyOperations(find(d, 'Service', 'portier'), [{ op: 'replace', path: '/spec/selector', value: { 'app.kubernetes.io/name': 'portier-gateway' } }], 't')), /Service portier: its selector matches no Deployment's pods/)
  t.match(broken((d) => applyOperations(find(d, 'Service', 'portier'), [{ op: 'replace', path: '/spec/ports/0/targetPort', value: 'https' }], 't')), /targetPort https is no container port/)
  t.match(broken((d) => applyOperations(find(d, 'Deployment', 'portier'), [{ op: 'replace', path: '/spec/template/spec/containers/0/readinessProbe/httpGet/port', value: 'metrics' }], 't')), /readinessProbe port metrics is not a container port/)
  t.match(broken((d) => applyOperations(find(d, 'Deployment', 'portier'), [{ op: 'replace', path: '/spec/template/spec/containers/0/livenessProbe/httpGet/port', value: 9114 }], 't')), /livenessProbe port 9114/)
  t.match(broken((d) => applyOperations(find(d, 'PodDisruptionBudget', 'portier'), [{ op: 'replace', path: '/spec/selector/matchLabels', value: { app: 'portier' } }], 't')), /PodDisruptionBudget portier: its selector matches no/)
  t.match(broken((d) => applyOperations(find(d, 'HorizontalPodAutoscaler', 'portier'), [{ op: 'replace', path: '/spec/scaleTargetRef/name', value: 'gateway' }], 't')), /no apps\/v1 Deployment gateway to scale/)
  t.match(broken((d) => { delete spec<DeploymentSpec>(find(d, 'Deployment', 'portier')).template.spec.containers[0]?.resources?.requests?.cpu }), /requests no cpu/)
  t.match(broken((d) => { d.splice(d.indexOf(find(d, 'Secret', 'portier-htpasswd')), 1) }), /volume htpasswd: no Secret portier-htpasswd/)
  t.match(broken((d) => { find(d, 'ConfigMap', 'portier-config').data = { 'config.yaml': '' } }), /subPath portier\.yaml is no key of ConfigMap portier-config/)
  t.match(broken((d) => { find(d, 'Secret', 'registry-secret').data = {} }), /env REGISTRY_HTTP_SECRET: Secret registry-secret has no key http-secret/)
  t.match(broken((d) => { d.splice(d.indexOf(find(d, 'PersistentVolumeClaim', 'registry-data')), 1) }), /no PersistentVolumeClaim registry-data/)
  t.match(broken((d) => applyOperations(find(d, 'NetworkPolicy', 'registry'), [{ op: 'replace', path: '/spec/ingress/0/ports/0/port', value: 5443 }], 't')), /port 5443 is no container port/)
  t.match(broken((d) => applyOperations(find(d, 'Deployment', 'portier'), [{ op: 'replace', path: '/spec/template/metadata/labels/app.kubernetes.io~1name', value: 'gateway' }], 't')), /Deployment portier: spec.selector does not select/)
  t.match(drainProblems((() => {
    const d = clone(base)
    applyOperations(find(d, 'Deployment', 'portier'), [{ op: 'replace', path: '/spec/template/spec/terminationGracePeriodSeconds', value: 30 }], 't')
    return d
  })()).join('\n'), /terminationGracePeriodSeconds 30 is not above the preStop sleep \(5s\) plus server\.drain_timeout \(30s\)/, 'a grace period the drain does not fit in')
})

t.test('check-config in the pod fails without a Secret file the config names, and with a broken config', async (t) => {
  const withoutHtpasswd = clone(base)
  find(withoutHtpasswd, 'Secret', 'portier-htpasswd').data = {}
  const missing = await checkConfigInPod(t, withoutHtpasswd)
  t.equal(missing.code, 2, 'exit 2')
  t.match(missing.stderr, /auth\.htpasswd\.path/)
  const badKey = clone(base)
  const configMap = find(badKey, 'ConfigMap', 'portier-config')
  const data = configMap.data as Record<string, string>
  data['portier.yaml'] = `${data['portier.yaml']}\nlimts:\n  blob_max_bytes: 1GiB\n`
  const broken = await checkConfigInPod(t, badKey)
  t.equal(broken.code, 2, 'exit 2')
  t.match(broken.stderr, /limts/)
})

t.test('the Portier pod: the image user, a read-only root with a writable /tmp and store, probes on the admin listener, drain, resources', async (t) => {
  const { pod, container, configText } = portier(base.docs)
  const file = join(fixtures, 'portier.yaml')
  writeFileSync(file, configText)
  const { config } = loadConfig({ file, env: {} })
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
  const uid = Number(/useradd[^\n]*--uid (\d+)/.exec(dockerfile)?.[1])
  const gid = Number(/groupadd[^\n]*--gid (\d+)/.exec(dockerfile)?.[1])
  t.ok(uid > 0, `the Dockerfile's uid ${uid}`)
  t.match(pod.spec.securityContext, { runAsNonRoot: true, runAsUser: uid, runAsGroup: gid, fsGroup: gid }, 'runs as the image user, not root')
  t.match(container.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  const mounts = container.volumeMounts ?? []
  const emptyDir = (path: string): boolean => mounts.some((m) => (path === m.mountPath || path.startsWith(`${m.mountPath}/`)) && (pod.spec.volumes ?? []).find((v) => v.name === m.name)?.emptyDir !== undefined)
  t.ok(emptyDir('/tmp'), '/tmp is an emptyDir')
  const workdir = /^WORKDIR\s+(\S+)/m.exec(dockerfile.split(/^FROM /m).pop() ?? '')?.[1] as string
  t.equal(workdir, '/app')
  t.ok(emptyDir(posix.join(workdir, config.store.path)), `store.path ${config.store.path} lies in a writable emptyDir`)

  const port = (listen: string): number => Number(/:(\d+)$/.exec(listen)?.[1])
  const containerPort = (name: string | number | undefined): number | undefined => (typeof name === 'number' ? name : container.ports?.find((p) => p.name === name)?.containerPort)
  t.equal(containerPort(container.livenessProbe?.httpGet?.port), port(config.admin.listen), 'liveness on admin.listen')
  t.equal(container.livenessProbe?.httpGet?.path, '/healthz')
  t.equal(container.startupProbe?.httpGet?.path, '/healthz')
  t.equal(containerPort(container.readinessProbe?.httpGet?.port), port(config.admin.listen), 'readiness on admin.listen')
  t.equal(container.readinessProbe?.httpGet?.path, '/readyz')
  t.match(config.admin.listen, /^0\.0\.0\.0:/, 'the kubelet reaches the admin listener on the pod IP')
  const service = spec<{ ports: Array<{ port: number; targetPort: string }> }>(find(base.docs, 'Service', 'portier'))
  t.equal(containerPort(service.ports[0]?.targetPort), port(config.server.listen), 'the Service sends clients to server.listen')
  t.equal(pod.metadata.annotations?.['prometheus.io/port'], String(port(config.admin.listen)), 'Prometheus scrapes the admin listener')
  t.ok(config.server.drain_timeout > 0, 'Portier drains on SIGTERM')

  for (const doc of base.docs.filter((d) => d.kind === 'Deployment')) {
    for (const c of spec<DeploymentSpec>(doc).template.spec.containers) {
      t.ok(c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory, `${doc.metadata.name}/${c.name}: cpu and memory requests, a memory limit`)
      t.match(c.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false }, `${doc.metadata.name}/${c.name}: read-only root`)
    }
  }
  const cmd = JSON.parse(/^CMD\s+(\[.*\])\s*$/m.exec(dockerfile.split(/^FROM /m).pop() ?? '')?.[1] ?? '[]') as string[]
  t.same(container.args, cmd, 'args are the image CMD')
  t.notOk('command' in container, 'no command: the image ENTRYPOINT (node with its V8 flags) stays')
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  t.equal(container.image, `portier:${version}`, 'the image tag is the package version')
  const registry = spec<DeploymentSpec>(find(base.docs, 'Deployment', 'registry')).template.spec.containers[0] as Container
  t.equal(registry.image, 'registry:2.8.3', 'the registry release compose.yaml runs')
  t.same(registry.args, ['/etc/docker/registry/config.yml'], 'with the config path registry 2 reads')
  t.ok((registry.volumeMounts ?? []).some((m) => m.mountPath === '/etc/docker/registry/config.yml'), 'where the registry config is mounted')
  const upstream = new URL(config.upstreams[0]?.url ?? '')
  const registryService = find(base.docs, 'Service', upstream.hostname)
  t.ok(spec<{ ports: Array<{ port: number }> }>(registryService).ports.some((p) => p.port === Number(upstream.port)), `the upstream ${upstream.href} is the registry Service's port`)
})

t.test('the Secret files are made on the operator\'s machine and never committed', async (t) => {
  const ignore = readFileSync(join(BASE, 'secrets', '.gitignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
  t.ok(ignore.includes('*'), 'secrets/ ignores everything')
  const tree = yaml.load(readFileSync(join(BASE, 'kustomization.yaml'), 'utf8')) as { secretGenerator: Array<{ files: string[] }> }
  for (const entry of tree.secretGenerator.flatMap((g) => g.files)) t.match(entry.split('=').pop(), /^secrets\//, `${entry} comes from secrets/`)
  const howTo = readFileSync(join(BASE, 'secrets', 'README.md'), 'utf8')
  for (const entry of tree.secretGenerator.flatMap((g) => g.files)) {
    const file = (entry.split('=').pop() as string).replace(/^secrets\//, '')
    t.ok(howTo.includes(file), `secrets/README.md says how to make ${file}`)
  }
})

t.test('the resolver refuses what it does not understand, and patch paths that do not exist', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'portier-kustomize-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'kustomization.yaml'), 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nimages:\n  - name: portier\n    newTag: "1"\n')
  t.throws(() => resolveKustomization(dir), /images: a kustomization key this resolver does not know/)
  t.throws(() => applyOperations(structuredClone(find(base.docs, 'Service', 'portier')), [{ op: 'replace', path: '/spec/nope/port', value: 1 }], 'x'), /no such path/)
})

/** The registry's config (the ConfigMap key mounted at the path its args name) and its container. */
function registry(docs: KubeDocument[]): { container: Container; pod: PodTemplate; replicas: number | undefined; config: { storage: Tree; http: { addr: string } } } {
  const deployment = spec<DeploymentSpec>(find(docs, 'Deployment', 'registry'))
  const container = deployment.template.spec.containers[0] as Container
  const mount = (container.volumeMounts ?? []).find((m) => m.mountPath === container.args?.[0])
  const volume = (deployment.template.spec.volumes ?? []).find((v) => v.name === mount?.name)
  const configMap = find(docs, 'ConfigMap', volume?.configMap?.name ?? '')
  const config = yaml.load((configMap.data as Record<string, string>)[mount?.subPath ?? ''] ?? '') as { storage: Tree; http: { addr: string } }
  return { container, pod: deployment.template, replicas: deployment.replicas, config }
}

t.test('base: the registry stores on its PVC, listens on its container port, and has no blob descriptor cache', async (t) => {
  const { container, pod, replicas, config } = registry(base.docs)
  const filesystem = config.storage.filesystem as { rootdirectory: string }
  const storageMount = (container.volumeMounts ?? []).find((m) => m.mountPath === filesystem.rootdirectory)
  t.ok(storageMount, `a volume is mounted at storage.filesystem.rootdirectory ${filesystem.rootdirectory}`)
  t.ok((pod.spec.volumes ?? []).find((v) => v.name === storageMount?.name)?.persistentVolumeClaim, 'a PersistentVolumeClaim')
  t.equal(replicas, 1, 'one registry on a ReadWriteOnce volume')
  t.equal((find(base.docs, 'Deployment', 'registry').spec as { strategy: { type: string } }).strategy.type, 'Recreate', 'Recreate: the old pod lets go of the volume first')
  t.same(spec<{ accessModes: string[] }>(find(base.docs, 'PersistentVolumeClaim', 'registry-data')).accessModes, ['ReadWriteOnce'])
  t.equal(Number(/:(\d+)$/.exec(config.http.addr)?.[1]), container.ports?.[0]?.containerPort, 'http.addr is the container port')
  t.equal(config.storage.cache, undefined, 'no storage.cache (distribution #2270, see config/compose.registry.yml)')
  t.match(config.storage, { delete: { enabled: true } }, 'deletes through Portier work')
  t.ok((container.env ?? []).some((e) => e.name === 'REGISTRY_HTTP_SECRET' && e.valueFrom?.secretKeyRef), 'http.secret from a Secret')
})

const s3 = builds.find(([name]) => name.endsWith('overlays/s3'))?.[1]
t.test('overlays/s3: two registries on one bucket and one http.secret, no volume claim', { skip: s3 ? false : 'no overlays/s3' }, async (t) => {
  const docs = (s3 as Resolved).docs
  const { container, pod, replicas, config } = registry(docs)
  t.same(Object.keys(config.storage).filter((k) => !['delete', 'redirect', 'maintenance', 'cache'].includes(k)), ['s3'], 'storage is s3 only (a filesystem section too would be two drivers)')
  t.equal(config.storage.cache, undefined, 'no storage.cache')
  t.equal(replicas, 2)
  t.notOk(docs.some((d) => d.kind === 'PersistentVolumeClaim'), 'no PersistentVolumeClaim')
  t.notOk((pod.spec.volumes ?? []).some((v) => v.persistentVolumeClaim), 'no volume claims')
  const env = (container.env ?? []).map((e) => e.name)
  for (const name of ['REGISTRY_HTTP_SECRET', 'REGISTRY_STORAGE_S3_ACCESSKEY', 'REGISTRY_STORAGE_S3_SECRETKEY']) t.ok(env.includes(name), `${name} from a Secret`)
  t.ok(docs.some((d) => d.kind === 'PodDisruptionBudget' && d.metadata.name === 'registry'), 'a PodDisruptionBudget for the two registries')
})
