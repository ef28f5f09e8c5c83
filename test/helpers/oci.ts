// Builds OCI image layouts by hand (random layers, streamed to disk) and reads existing ones back, so tests can compare digests.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';

export const MT_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MT_OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MT_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MT_OCI_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

export interface OciDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

export interface OciManifest {
  schemaVersion: 2;
  mediaType?: string;
  config: OciDescriptor;
  layers: OciDescriptor[];
  annotations?: Record<string, string>;
}

export interface OciImage {
  dir: string;
  tag: string;
  /** sha256:<hex> of the manifest bytes as stored in blobs/. */
  manifestDigest: string;
  manifestMediaType: string;
  configDigest: string;
  layerDigests: string[];
  layerSizes: number[];
  manifest: OciManifest;
}

const CHUNK = 1024 * 1024;

function blobPath(dir: string, digest: string): string {
  const [algo, hex] = digest.split(':');
  if (algo === undefined || hex === undefined) throw new Error(`bad digest ${digest}`);
  return join(dir, 'blobs', algo, hex);
}

function sha256(buf: Buffer | string): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/** Streaming sha256 of a file, as "sha256:<hex>". */
export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: CHUNK })) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Writes `size` random bytes in 1 MiB chunks, hashing on the way, then renames the file to its digest. */
async function writeRandomBlob(dir: string, size: number): Promise<string> {
  const tmp = join(dir, 'blobs', 'sha256', `.tmp-${randomBytes(8).toString('hex')}`);
  const out = createWriteStream(tmp);
  const h = createHash('sha256');
  try {
    let left = size;
    while (left > 0) {
      const chunk = randomBytes(Math.min(CHUNK, left));
      left -= chunk.length;
      h.update(chunk);
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
  } catch (e) {
    out.destroy();
    throw e;
  }
  const digest = `sha256:${h.digest('hex')}`;
  await rename(tmp, blobPath(dir, digest));
  return digest;
}

async function writeJsonBlob(dir: string, value: unknown): Promise<{ digest: string; size: number; bytes: Buffer }> {
  const bytes = Buffer.from(JSON.stringify(value));
  const digest = sha256(bytes);
  await writeFile(blobPath(dir, digest), bytes);
  return { digest, size: bytes.length, bytes };
}

/**
 * Creates an OCI image layout in `dir` (empty or missing) holding one image: random uncompressed "tar" layers of the given sizes, an amd64/linux config, one manifest
 * referenced from index.json with org.opencontainers.image.ref.name = tag.
 */
export async function makeOciLayout(dir: string, opts: { layers: number[]; tag?: string }): Promise<OciImage> {
  const tag = opts.tag ?? 'latest';
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));

  const layerDigests: string[] = [];
  for (const size of opts.layers) layerDigests.push(await writeRandomBlob(dir, size));
  const layerSizes = [...opts.layers];

  const config = {
    created: new Date().toISOString(),
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: layerDigests },
    history: layerDigests.map(() => ({ created_by: 'portier test harness' })),
  };
  const cfg = await writeJsonBlob(dir, config);

  const manifest: OciManifest = {
    schemaVersion: 2,
    mediaType: MT_OCI_MANIFEST,
    config: { mediaType: MT_OCI_CONFIG, digest: cfg.digest, size: cfg.size },
    layers: layerDigests.map((digest, i) => ({ mediaType: MT_OCI_LAYER_TAR, digest, size: layerSizes[i] ?? 0 })),
  };
  const man = await writeJsonBlob(dir, manifest);

  const index = {
    schemaVersion: 2,
    mediaType: MT_OCI_INDEX,
    manifests: [
      { mediaType: MT_OCI_MANIFEST, digest: man.digest, size: man.size, annotations: { [REF_NAME_ANNOTATION]: tag } },
    ],
  };
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));

  return {
    dir,
    tag,
    manifestDigest: man.digest,
    manifestMediaType: MT_OCI_MANIFEST,
    configDigest: cfg.digest,
    layerDigests,
    layerSizes,
    manifest,
  };
}

interface OciIndex {
  schemaVersion: number;
  manifests: OciDescriptor[];
}

/**
 * Reads the image tagged `tag` from an existing OCI layout (e.g. written by `skopeo copy … oci:DIR:tag`).
 * Without `tag`, the layout must hold exactly one manifest. Verifies the manifest blob's digest.
 */
export async function readOciLayout(dir: string, tag?: string): Promise<OciImage> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as OciIndex;
  const candidates =
    tag === undefined ? index.manifests : index.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag);
  if (candidates.length !== 1 || candidates[0] === undefined) {
    throw new Error(`${dir}/index.json: expected exactly one manifest${tag ? ` tagged ${tag}` : ''}, found ${candidates.length}`);
  }
  const desc = candidates[0];
  const bytes = await readFile(blobPath(dir, desc.digest));
  const actual = sha256(bytes);
  if (actual !== desc.digest) throw new Error(`${dir}: manifest blob ${desc.digest} actually hashes to ${actual}`);
  const manifest = JSON.parse(bytes.toString('utf8')) as OciManifest;
  return {
    dir,
    tag: desc.annotations?.[REF_NAME_ANNOTATION] ?? tag ?? '',
    manifestDigest: desc.digest,
    manifestMediaType: manifest.mediaType ?? desc.mediaType,
    configDigest: manifest.config.digest,
    layerDigests: manifest.layers.map((l) => l.digest),
    layerSizes: manifest.layers.map((l) => l.size),
    manifest,
  };
}

/** Path of a blob inside a layout, e.g. to hash it with sha256File or stream it in a test. */
export function ociBlobPath(dir: string, digest: string): string {
  return blobPath(dir, digest);
}
