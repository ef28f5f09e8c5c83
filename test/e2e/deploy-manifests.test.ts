// deploy/kubernetes/base run as its pods would run: the registry with the ConfigMap's config.yml and the Secret's http.secret, Portier with the ConfigMap's portier.yaml and the Secrets' files at their mount paths, both as uid 999 with only their emptyDirs and claim writable (as root); the kubelet's probes, a token-auth push and pull with skopeo, then SIGTERM: Portier drains and exits 0 by itself.
import t from 'tap'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import yaml from 'js-yaml'
import { ROOT, gatewayFixture } from '../helpers/gateway.js'
import { resolveKustomization } from '../helpers/kustomize.js'
import { ADMIN_PASSWORD, layOut, makeSecretFiles, podOf, secretFileReader } from '../helpers/pod-files.js'
import { freePort } from '../helpers/ports.js'
import { REGISTRY_BIN } from '../helpers/registry.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { makeOciLayout, readOciLayout } from '../helpers/oci.js'

const isRoot = process.getuid?.() === 0
const work = mkdtempSync(join(tmpdir(), 'portier-k8s-e2e-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
// Walkable by the pods' uid; what lies inside is laid out by layOut with the pods' permissions.
chmodSync(work, 0o755)
const secrets = join(work, 'secrets')
mkdirSync(secrets)
const docs = resolveKustomization(join(ROOT, 'deploy', 'kubernetes', 'base'), { readFile: secretFileReader(await makeSecretFiles(secrets)), root: ROOT }).docs

/** The uid/gid of the pods' securityContext, and setpriv arguments that run a command as it (tap's loader in NODE_OPTIONS would write into .tap/ as that uid: dropped). */
function runAs(securityContext: Record<string, unknown> | undefined): { uid: number | undefined; wrapper: string[] } {
  const uid = securityContext?.runAsUser as number | undefined
  const gid = securityContext?.runAsGroup as number | undefined
  if (!isRoot || uid === undefined) return { uid: undefined, wrapper: [] }
  return { uid, wrapper: ['setpriv', `--reuid=${uid}`, `--regid=${gid ?? uid}`, '--clear-groups', 'env', '-u', 'NODE_OPTIONS'] }
}

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

/** Polls `url` until it answers `status` (at most `tries` times, 250 ms apart); the last answer. */
async function until(url: string, status: number, tries: number): Promise<{ status: number; body: string }> {
  let last = { status: 0, body: '' }
  for (let i = 0; i < tries; i++) {
    last = await get(url).catch((error: Error) => ({ status: 0, body: error.message }))
    if (last.status === status) return last
    await new Promise((r) => setTimeout(r, 250))
  }
  return last
}

t.test('the base manifests run: registry and Portier from their ConfigMaps and Secrets, probes, push and pull, drain', async (t) => {
  // The registry pod: config.yml from the ConfigMap, its claim and /tmp writable, http.secret from the Secret.
  const registry = podOf(docs, 'registry')
  const registryRoot = join(work, 'registry-pod')
  mkdirSync(registryRoot)
  const registryUser = runAs(registry.pod.spec.securityContext)
  const registryFs = layOut(registryRoot, docs, registry.pod, registry.container, registryUser.uid)
  const configPath = registry.container.args?.[0] as string
  const registryConfig = yaml.load(readFileSync(join(registryRoot, configPath), 'utf8')) as { storage: { filesystem: { rootdirectory: string } } }
  const storageRoot = registryFs.move(registryConfig.storage.filesystem.rootdirectory)
  t.ok(existsSync(storageRoot), 'storage.filesystem.rootdirectory is the claim mounted in the pod')
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, REGISTRY_HTTP_ADDR: `127.0.0.1:${port}`, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: storageRoot }
  const httpSecret = registry.container.env?.find((e) => e.name === 'REGISTRY_HTTP_SECRET')?.valueFrom?.secretKeyRef
  const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === httpSecret?.name)?.data as Record<string, string> | undefined
  env.REGISTRY_HTTP_SECRET = Buffer.from(secret?.[httpSecret?.key ?? ''] ?? '', 'base64').toString('utf8')
  t.ok((env.REGISTRY_HTTP_SECRET ?? '').length >= 32, 'REGISTRY_HTTP_SECRET from the Secret')
  // registry:2's entrypoint turns the args [config.yml] into `registry serve config.yml`.
  const argv = [...registryUser.wrapper, REGISTRY_BIN, 'serve', join(registryRoot, configPath)]
  const child = spawn(argv[0] as string, argv.slice(1), { env, cwd: registryRoot, stdio: ['ignore', 'ignore', 'pipe'] })
  let registryLog = ''
  child.stderr.on('data', (chunk: Buffer) => (registryLog = (registryLog + chunk.toString()).slice(-8000)))
  const registryExited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await registryExited
  })
  const registryProbe = registry.container.readinessProbe?.httpGet?.path as string
  const ready = await until(`http://127.0.0.1:${port}${registryProbe}`, 200, 80)
  t.equal(ready.status, 200, `the registry's readiness probe ${registryProbe} answers 200`)
  if (ready.status !== 200) t.comment(registryLog)
  const registryLiveness = registry.container.livenessProbe?.httpGet?.path as string
  t.equal((await get(`http://127.0.0.1:${port}${registryLiveness}`)).status, 200, `the registry's liveness probe ${registryLiveness} answers 200`)

  // The Portier pod: portier.yaml from the ConfigMap, the Secrets' files at their mount paths, WORKDIR /app.
  const portier = podOf(docs, 'portier', 'portier')
  const podRoot = join(work, 'portier-pod')
  mkdirSync(podRoot)
  const user = runAs(portier.pod.spec.securityContext)
  const fs = layOut(podRoot, docs, portier.pod, portier.container, user.uid)
  const portierArgs = portier.container.args ?? []
  const config = fs.move(yaml.load(readFileSync(join(podRoot, portierArgs[portierArgs.indexOf('--config') + 1] as string), 'utf8')) as Record<string, Record<string, unknown>>)
  const upstreams = config.upstreams as unknown as Array<Record<string, unknown>>
  t.equal(upstreams[0]?.url, 'http://registry:5000', 'Portier forwards to the registry Service')
  // Only the addresses change: the Service name and the pod's ports become 127.0.0.1 and free ports.
  config.upstreams = [{ ...upstreams[0], url: `http://127.0.0.1:${port}` }] as unknown as Record<string, unknown>
  config.server = { ...config.server, listen: '127.0.0.1:0' }
  config.admin = { ...config.admin, listen: '127.0.0.1:0' }
  mkdirSync(join(podRoot, 'app'), { recursive: true })
  const gateway = await gatewayFixture(t, { config, cwd: join(podRoot, 'app'), wrapper: user.wrapper })
  if (user.uid !== undefined) t.equal(statSync(`/proc/${gateway.child.pid}`).uid, user.uid, `Portier runs as uid ${user.uid}, writing only to its emptyDirs`)
  else t.comment('not root: Portier runs as this user (the uid switch and the read-only root need root)')

  // The kubelet's probes, at the paths the manifest names.
  const startup = portier.container.startupProbe?.httpGet?.path as string
  const liveness = portier.container.livenessProbe?.httpGet?.path as string
  const readiness = portier.container.readinessProbe?.httpGet?.path as string
  t.equal((await get(`${gateway.adminUrl}${startup}`)).status, 200, `startup ${startup}`)
  t.equal((await get(`${gateway.adminUrl}${liveness}`)).status, 200, `liveness ${liveness}`)
  const readyz = await until(`${gateway.adminUrl}${readiness}`, 200, 80)
  t.equal(readyz.status, 200, `readiness ${readiness}: ${readyz.body}`)
  t.equal((await get(`${gateway.adminUrl}/metrics`)).status, 200, '/metrics for a scraper on an allowed address')

  // docker login-style token auth with the htpasswd Secret's user, TLS verified against the TLS Secret's certificate.
  const image = await makeOciLayout(join(work, 'src'), { layers: [2 * 1024 * 1024, 64 * 1024] })
  const ref = `docker://${gateway.host}/team/app:1`
  const creds = { username: 'admin', password: ADMIN_PASSWORD }
  await skopeoCopy(`oci:${image.dir}:latest`, ref, { destCertDir: gateway.certDir, destCreds: creds })
  await skopeoCopy(ref, `oci:${join(work, 'back')}:latest`, { srcCertDir: gateway.certDir, srcCreds: creds })
  const back = await readOciLayout(join(work, 'back'))
  t.equal(back.manifestDigest, image.manifestDigest, 'the pulled manifest is the pushed one')
  t.same(back.layerDigests, image.layerDigests, 'every layer digest matches')
  t.equal(back.configDigest, image.configDigest)
  const repositories = join(storageRoot, 'docker', 'registry', 'v2', 'repositories', 'team', 'app')
  t.ok(existsSync(repositories), 'the image is in the registry claim')
  const denied = await skopeoCopy(`oci:${image.dir}:latest`, `docker://${gateway.host}/team/app:2`, { destCertDir: gateway.certDir, destCreds: { username: 'admin', password: 'wrong' }, allowFailure: true })
  t.not(denied.code, 0, 'a wrong password is refused')

  const store = fs.move(join('/app', String((config.store as { path?: string } | undefined)?.path ?? 'data/portier.db')))
  t.ok(existsSync(store), `the store is in the data emptyDir (${readdirSync(join(store, '..')).join(', ')})`)

  await gateway.logsSettled()
  t.same(gateway.logs.filter((line) => line.level >= 50).map((line) => line.msg), [], 'no errors logged (a write outside its emptyDirs would be one)')

  // SIGTERM (after preStop): Portier drains and exits 0 by itself, long before terminationGracePeriodSeconds.
  const stopped = await gateway.stop()
  t.same(stopped, { code: 0, signal: null }, 'exit 0 on SIGTERM, not killed')
})
