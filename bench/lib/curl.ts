// Blob transfers with curl, as a client would make them: monolithic and chunked uploads, and downloads.
import { run } from '../../test/helpers/exec.js'
import type { BlobFile, Chunk, Credentials, Tls } from './fixtures.js'
import type { Target } from './targets.js'

export interface CurlResult {
  status: number
  seconds: number
  uploaded: number
  downloaded: number
  headers: Map<string, string>
}

export interface Client {
  tls: Tls
  credentials: Credentials
}

const WRITE_OUT = '\n@@curl %{http_code} %{time_total} %{size_upload} %{size_download}'

/** One curl request; headers are returned, the body is discarded. */
export async function curl(client: Client, target: Target, url: string, args: string[]): Promise<CurlResult> {
  const full = ['-sS', '-o', '/dev/null', '-D', '-', '-w', WRITE_OUT]
  if (target.tls) full.push('--cacert', client.tls.cert)
  if (target.auth) full.push('-u', `${client.credentials.user}:${client.credentials.password}`)
  full.push(...args, url)
  const result = await run('curl', full, { timeoutMs: 600_000 })
  const marker = result.stdout.lastIndexOf('@@curl ')
  if (result.code !== 0 || marker < 0) throw new Error(`curl ${args.join(' ')} ${url} failed (${result.code}): ${result.stderr.trim()}`)
  const [status, seconds, uploaded, downloaded] = result.stdout.slice(marker + 7).trim().split(' ').map(Number)
  const headers = new Map<string, string>()
  // With several responses (100 Continue), the last header block counts.
  for (const line of result.stdout.slice(0, marker).split('\r\n')) {
    if (line.startsWith('HTTP/')) headers.clear()
    const colon = line.indexOf(':')
    if (colon > 0) headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim())
  }
  return { status: status ?? 0, seconds: seconds ?? 0, uploaded: uploaded ?? 0, downloaded: downloaded ?? 0, headers }
}

function expect(result: CurlResult, status: number, what: string): void {
  if (result.status !== status) throw new Error(`${what}: expected ${status}, got ${result.status}`)
}

function absolute(target: Target, location: string | undefined, what: string): string {
  if (!location) throw new Error(`${what}: no Location`)
  return new URL(location, `${target.base}/`).toString()
}

function withDigest(location: string, digest: string): string {
  return `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`
}

async function startUpload(client: Client, target: Target, repository: string): Promise<string> {
  const started = await curl(client, target, `${target.base}/v2/${repository}/blobs/uploads/`, ['-X', 'POST', '-H', 'Content-Length: 0'])
  expect(started, 202, `${target.id} POST upload`)
  return absolute(target, started.headers.get('location'), `${target.id} POST upload`)
}

// No Expect: 100-continue (curl adds it above 1 MiB): registry clients such as docker and skopeo do not send it.
const octets = ['-H', 'Content-Type: application/octet-stream', '-H', 'Expect:']

/** POST, then one PUT ?digest= streaming the whole blob (curl -T). Returns the PUT's seconds. */
export async function monolithicUpload(client: Client, target: Target, repository: string, blob: BlobFile): Promise<number> {
  const location = await startUpload(client, target, repository)
  const put = await curl(client, target, withDigest(location, blob.digest), ['-T', blob.file, ...octets])
  expect(put, 201, `${target.id} PUT blob`)
  if (put.uploaded !== blob.size) throw new Error(`${target.id}: uploaded ${put.uploaded} of ${blob.size} bytes`)
  return put.seconds
}

/** POST, one PATCH per chunk with Content-Range, then an empty PUT ?digest=. Returns the wall time of all of it. */
export async function chunkedUpload(client: Client, target: Target, repository: string, blob: BlobFile, chunks: Chunk[]): Promise<number> {
  const begin = performance.now()
  let location = await startUpload(client, target, repository)
  for (const chunk of chunks) {
    const patch = await curl(client, target, location, ['-X', 'PATCH', '-T', chunk.file, ...octets, '-H', `Content-Range: ${chunk.start}-${chunk.end}`])
    expect(patch, 202, `${target.id} PATCH ${chunk.start}-${chunk.end}`)
    location = absolute(target, patch.headers.get('location'), `${target.id} PATCH`)
  }
  const put = await curl(client, target, withDigest(location, blob.digest), ['-X', 'PUT', '-H', 'Content-Length: 0'])
  expect(put, 201, `${target.id} PUT ?digest=`)
  return (performance.now() - begin) / 1000
}

/** GET the blob into /dev/null. Returns curl's total time. */
export async function download(client: Client, target: Target, repository: string, blob: BlobFile): Promise<number> {
  const got = await curl(client, target, `${target.base}/v2/${repository}/blobs/${blob.digest}`, [])
  expect(got, 200, `${target.id} GET blob`)
  if (got.downloaded !== blob.size) throw new Error(`${target.id}: downloaded ${got.downloaded} of ${blob.size} bytes`)
  return got.seconds
}
