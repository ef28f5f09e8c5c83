// What every target shares: one certificate, one bcrypt htpasswd file, and random blobs on disk (with their digests).
import { createHash, randomFill } from 'node:crypto'
import { once } from 'node:events'
import { createWriteStream, type WriteStream } from 'node:fs'
import { copyFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { runOk } from '../../test/helpers/exec.js'
import { MiB } from './stats.js'

function fillRandom(buffer: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => randomFill(buffer, (error, filled) => (error ? reject(error) : resolve(filled))))
}

export interface BlobFile {
  file: string
  size: number
  digest: string
}

export interface Chunk {
  file: string
  /** First and last byte offset, inclusive (Content-Range). */
  start: number
  end: number
}

export interface Credentials {
  user: string
  password: string
  /** Authorization header value. */
  header: string
}

export interface Tls {
  cert: string
  key: string
  /** A directory holding the certificate as ca.crt (skopeo --cert-dir). */
  certDir: string
}

export async function makeCertificate(dir: string): Promise<Tls> {
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  await runOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert])
  const certDir = join(dir, 'client-certs')
  await mkdir(certDir, { recursive: true })
  await copyFile(cert, join(certDir, 'ca.crt'))
  return { cert, key, certDir }
}

/** An htpasswd file with one bcrypt user, made by Apache's htpasswd like the recipe's users. */
export async function makeHtpasswd(file: string, cost: number): Promise<Credentials> {
  const user = 'bench'
  const password = 'bench-password'
  await runOk('htpasswd', ['-B', '-C', String(cost), '-b', '-c', file, user, password])
  return { user, password, header: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` }
}

async function write(out: WriteStream, data: Buffer): Promise<void> {
  if (!out.write(data)) await once(out, 'drain')
}

async function close(out: WriteStream): Promise<void> {
  out.end()
  await once(out, 'finish')
}

/** Writes `mib` MiB of random bytes to file (and, with chunkMiB, the same bytes split into chunk files). */
export async function makeBlob(file: string, mib: number, chunkMiB = 0): Promise<{ blob: BlobFile; chunks: Chunk[] }> {
  const out = createWriteStream(file)
  const hash = createHash('sha256')
  const chunks: Chunk[] = []
  let chunkOut: WriteStream | undefined
  for (let offset = 0; offset < mib; offset++) {
    const data = await fillRandom(Buffer.allocUnsafe(MiB))
    hash.update(data)
    await write(out, data)
    if (chunkMiB > 0) {
      if (offset % chunkMiB === 0) {
        if (chunkOut) await close(chunkOut)
        const chunkFile = `${file}.part${chunks.length}`
        chunks.push({ file: chunkFile, start: offset * MiB, end: Math.min(offset + chunkMiB, mib) * MiB - 1 })
        chunkOut = createWriteStream(chunkFile)
      }
      await write(chunkOut as WriteStream, data)
    }
  }
  await close(out)
  if (chunkOut) await close(chunkOut)
  return { blob: { file, size: mib * MiB, digest: `sha256:${hash.digest('hex')}` }, chunks }
}
