// Referrers pushed by real clients through Portier in front of registry 2.8.2, without auth and in token mode (anonymous pulls): skopeo (an artifact with artifactType and subject), curl (OCI-Subject), podman; the referrers API and the fallback tag read from the registry directly agree.
import t, { type Test } from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { registryFixture } from '../helpers/registry.js'
import { gatewayFixture } from '../helpers/gateway.js'
import { skopeoCopy } from '../helpers/skopeo.js'
import { run } from '../helpers/exec.js'
import { buildArtifactLayout, buildLayout } from '../helpers/oci-build.js'
import { hashPassword } from '../../src/auth/hashes.js'
import { MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_LAYER_TAR, MT_OCI_MANIFEST } from '../helpers/oci.js'

const SIGNATURE_TYPE = 'application/vnd.example.signature.v1'
const SIGNATURE_BLOB = 'application/vnd.example.signature.v1+json'
const modes = ['none', 'token'] as const
type Mode = (typeof modes)[number]

interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
}

interface Index {
  schemaVersion: number
  mediaType: string
  manifests: Descriptor[]
}

const byDigest = (a: Descriptor, b: Descriptor): number => a.digest.localeCompare(b.digest)

for (const mode of modes) {
  t.test(`auth ${mode}: skopeo, curl and podman push referrers through Portier; /referrers/ and the fallback tag list them alike`, async (t) => {
    await referrersByClients(t, mode)
  })
}

async function referrersByClients(t: Test, mode: Mode): Promise<void> {
  const repository = `clients/${mode}`
  // Lower case only (podman names an image pulled from oci:DIR after DIR) and short (podman's runroot
  // must be under 50 characters).
  const work = join(tmpdir(), `portier-rc-${randomBytes(4).toString('hex')}`)
  await mkdir(work)
  t.teardown(() => rm(work, { recursive: true, force: true }))
  const registry = await registryFixture(t)
  const htpasswd = join(work, 'htpasswd')
  await writeFile(htpasswd, `alice:${await hashPassword('alice-password', 5)}\n`)
  // Token mode: alice pushes with credentials; anyone pulls with an anonymous token.
  const auth =
    mode === 'none'
      ? { mode: 'none' }
      : {
          mode: 'token',
          htpasswd: { path: htpasswd },
          token: { key: join(work, 'keys', 'token.key'), cert: join(work, 'keys', 'token.crt'), anonymous: true },
          acl: [
            { match: { account: 'alice' }, actions: ['*'] },
            { match: { account: '' }, actions: ['pull'] },
          ],
        }
  const gateway = await gatewayFixture(t, { config: { upstreams: [{ url: registry.url }], auth } })
  const creds = mode === 'none' ? undefined : 'alice:alice-password'
  const tls = { destCertDir: gateway.certDir, srcCertDir: gateway.certDir, ...(creds ? { destCreds: creds } : {}) }
  /** What a request for `scope` needs: nothing without auth, else a Bearer token (alice's, or anonymous). */
  const authorization = async (scope: string, anonymous: boolean): Promise<string[]> => {
    if (mode === 'none') return []
    const asked = await curl(gateway.caFile, `${gateway.url}/auth/token?service=portier-registry&scope=${encodeURIComponent(scope)}`, anonymous ? [] : ['-u', creds as string])
    t.equal(asked.status, 200, `token for ${scope} (${anonymous ? 'anonymous' : 'alice'})`)
    return ['-H', `Authorization: Bearer ${((await asked.json()) as { token: string }).token}`]
  }
  // Node's fetch cannot take a CA per request; curl can, and is a real client besides. Reads are anonymous.
  const viaGateway = async (path: string): Promise<Response> => curl(gateway.caFile, `${gateway.url}${path}`, await authorization(`repository:${repository}:pull`, true))

  // The subject: an image pushed by skopeo.
  const image = await buildLayout(join(work, 'image'), 'v1', [{ layers: [2048] }])
  await skopeoCopy(`oci:${image.dir}:v1`, `docker://${gateway.host}/${repository}:v1`, tls)
  const subject = { mediaType: MT_OCI_MANIFEST, digest: image.digest, size: (await stat(join(image.dir, 'blobs', 'sha256', image.digest.slice(7)))).size }

  // 1. A signature-like artifact (empty config, artifactType, subject) made by hand, pushed by skopeo.
  const signature = await buildArtifactLayout(join(work, 'signature'), 'sig-skopeo', {
    artifactType: SIGNATURE_TYPE,
    blobs: [{ mediaType: SIGNATURE_BLOB, data: Buffer.from(JSON.stringify({ signed: image.digest, by: 'skopeo' })) }],
    subject,
    annotations: { 'org.example.signed-by': 'skopeo' },
  })
  await skopeoCopy(`oci:${signature.dir}:sig-skopeo`, `docker://${gateway.host}/${repository}:sig-skopeo`, tls)
  const stored = await fetch(`${registry.url}/v2/${repository}/manifests/${signature.digest}`, { headers: { accept: MT_OCI_MANIFEST } })
  t.equal(stored.status, 200, 'the artifact is in the registry under its digest')
  t.ok(Buffer.from(await stored.arrayBuffer()).equals(signature.manifest), 'skopeo pushed the manifest byte for byte (artifactType and subject kept)')

  // 2. The same blobs with other annotations, PUT by curl: the gateway answers OCI-Subject.
  const byCurl = Buffer.from(
    JSON.stringify({ ...(JSON.parse(signature.manifest.toString()) as Record<string, unknown>), annotations: { 'org.example.signed-by': 'curl' } }),
  )
  const curlFile = join(work, 'curl-manifest.json')
  await writeFile(curlFile, byCurl)
  const curlDigest = `sha256:${createHash('sha256').update(byCurl).digest('hex')}`
  const put = await run('curl', ['-sS', '-o', '/dev/null', '-D', '-', '--cacert', gateway.caFile, '-X', 'PUT', ...(await authorization(`repository:${repository}:pull,push`, false)), '-H', `Content-Type: ${MT_OCI_MANIFEST}`, '--data-binary', `@${curlFile}`, `${gateway.url}/v2/${repository}/manifests/${curlDigest}`])
  t.equal(put.code, 0, `curl ran (${put.stderr.trim()})`)
  const putHeaders = parseHeaders(put.stdout)
  t.equal(putHeaders.status, 201, 'manifest PUT: 201 Created')
  t.equal(putHeaders.headers['oci-subject'], image.digest, 'OCI-Subject names the subject (registry 2.8 sets none itself)')
  t.equal(putHeaders.headers['docker-content-digest'], curlDigest)

  // 3. podman: from its own storage (vfs), when podman can hold the artifact.
  const expected: Descriptor[] = [
    { mediaType: MT_OCI_MANIFEST, digest: signature.digest, size: signature.size, artifactType: SIGNATURE_TYPE, annotations: { 'org.example.signed-by': 'skopeo' } },
    { mediaType: MT_OCI_MANIFEST, digest: curlDigest, size: byCurl.length, artifactType: SIGNATURE_TYPE, annotations: { 'org.example.signed-by': 'curl' } },
  ]
  const podman = await podmanPush(t, work, { host: gateway.host, certDir: gateway.certDir, repository, creds, registryUrl: registry.url }, subject, signature.dir)
  if (podman !== undefined) expected.push(podman)

  // The referrers API through Portier.
  const listed = await viaGateway(`/v2/${repository}/referrers/${image.digest}`)
  t.equal(listed.status, 200)
  t.match(listed.headers.get('content-type') ?? '', MT_OCI_INDEX)
  const index = (await listed.json()) as Index
  t.equal(index.schemaVersion, 2)
  t.equal(index.mediaType, MT_OCI_INDEX)
  t.same([...index.manifests].sort(byDigest), [...expected].sort(byDigest), 'every pushed referrer, with its artifactType, size and annotations')

  const filtered = await viaGateway(`/v2/${repository}/referrers/${image.digest}?artifactType=${encodeURIComponent(SIGNATURE_TYPE)}`)
  t.equal(filtered.headers.get('oci-filters-applied'), 'artifactType')
  t.same(((await filtered.json()) as Index).manifests.map((entry) => entry.digest).sort(), [signature.digest, curlDigest].sort(), 'the filter keeps the signatures')

  // The fallback tag, read from the registry itself (no Portier): the same index.
  const fallback = await fetch(`${registry.url}/v2/${repository}/manifests/sha256-${image.digest.slice(7)}`, { headers: { accept: MT_OCI_INDEX } })
  t.equal(fallback.status, 200, 'the registry holds the fallback tag sha256-<hex>')
  t.match(fallback.headers.get('content-type') ?? '', MT_OCI_INDEX, 'as an image index')
  const stored2 = (await fallback.json()) as Index
  t.same([...stored2.manifests].sort(byDigest), [...expected].sort(byDigest), 'the fallback index lists what the referrers API lists')

  // The subject itself is untouched.
  const subjectNow = await fetch(`${registry.url}/v2/${repository}/manifests/v1`, { method: 'HEAD', headers: { accept: MT_OCI_MANIFEST } })
  t.equal(subjectNow.headers.get('docker-content-digest'), image.digest)
}

/** A fetch-like call through curl, trusting `caFile` (the gateway's self-signed certificate). */
async function curl(caFile: string, url: string, extra: string[] = []): Promise<Response> {
  const result = await run('curl', ['-sS', '-D', '-', '--cacert', caFile, ...extra, url])
  if (result.code !== 0) throw new Error(`curl ${url}: ${result.stderr}`)
  const split = result.stdout.indexOf('\r\n\r\n')
  const { status, headers } = parseHeaders(result.stdout.slice(0, split))
  return new Response(result.stdout.slice(split + 4), { status, headers })
}

function parseHeaders(text: string): { status: number; headers: Record<string, string> } {
  const lines = text.split('\r\n').filter((line) => line !== '')
  const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(lines[0] ?? '')?.[1])
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const at = line.indexOf(':')
    if (at > 0) headers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim()
  }
  return { status, headers }
}

/**
 * podman 4.3 stores only images: an artifact whose config is the empty descriptor is refused at
 * pull, and a pushed image is re-serialised by containers/image (layers compressed, `artifactType`
 * dropped, `subject` kept). So podman pushes a signature-like image (image config, one empty tar
 * layer) with a subject; its referrer entry takes the config's media type as its artifactType.
 */
async function podmanPush(
  t: Test,
  work: string,
  target: { host: string; certDir: string; repository: string; creds: string | undefined; registryUrl: string },
  subject: { mediaType: string; digest: string; size: number },
  emptyConfigArtifact: string,
): Promise<Descriptor | undefined> {
  const version = await run('podman', ['--version']).catch(() => undefined)
  if (version === undefined || version.code !== 0) {
    t.comment('podman is not installed: its push is not tested')
    return undefined
  }
  const authFile = join(work, 'podman-auth.json')
  await writeFile(authFile, '{}')
  const base = ['--root', join(work, 'podman-root'), '--runroot', join(work, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file']
  const env = { ...process.env, REGISTRY_AUTH_FILE: authFile }
  const podman = (args: string[]) => run('podman', [...base, ...args], { env, timeoutMs: 120_000 })

  const refused = await podman(['pull', `oci:${emptyConfigArtifact}:sig-skopeo`])
  t.not(refused.code, 0, `${version.stdout.trim()}: an artifact with the empty config cannot enter podman's storage`)
  t.match(refused.stderr, /unsupported image-specific operation on artifact/, 'containers/image says why')

  const emptyTar = Buffer.alloc(1024)
  const layout = await buildArtifactLayout(join(work, 'podman-layout'), 'sig-podman', {
    artifactType: SIGNATURE_TYPE,
    config: { mediaType: MT_OCI_CONFIG, data: Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(emptyTar).digest('hex')}`] } })) },
    blobs: [{ mediaType: MT_OCI_LAYER_TAR, data: emptyTar }],
    subject,
    annotations: { 'org.example.signed-by': 'podman' },
  })
  const pulled = await podman(['pull', '-q', `oci:${layout.dir}:sig-podman`])
  t.equal(pulled.code, 0, `podman pull oci: (${pulled.stderr.trim()})`)
  const id = pulled.stdout.trim().split('\n').pop() ?? ''
  const digestFile = join(work, 'podman-digest')
  const { host, certDir, repository, creds } = target
  const pushed = await podman(['push', '--cert-dir', certDir, ...(creds ? ['--creds', creds] : []), '--digestfile', digestFile, id, `docker://${host}/${repository}:sig-podman`])
  t.equal(pushed.code, 0, `podman push through Portier (${pushed.stderr.trim()})`)
  const pushedDigest = (await readFile(digestFile, 'utf8')).trim()
  t.match(pushedDigest, /^sha256:[0-9a-f]{64}$/)
  // Read back from the registry itself: what podman's push stored.
  const manifest = await run('curl', ['-sS', '-H', `Accept: ${MT_OCI_MANIFEST}`, `${target.registryUrl}/v2/${repository}/manifests/${pushedDigest}`])
  const body = JSON.parse(manifest.stdout) as { subject?: { digest?: string }; artifactType?: string; config: { mediaType: string }; annotations?: Record<string, string> }
  t.equal(body.subject?.digest, subject.digest, 'podman kept the subject')
  t.equal(body.artifactType, undefined, 'podman 4.3 (containers/image 5.23) drops artifactType when it re-serialises the manifest')
  return {
    mediaType: MT_OCI_MANIFEST,
    digest: pushedDigest,
    size: Buffer.byteLength(manifest.stdout),
    artifactType: body.config.mediaType,
    annotations: body.annotations ?? {},
  }
}
