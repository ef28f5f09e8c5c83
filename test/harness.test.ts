// Proves the test harness (registry fixture, OCI layout builder, skopeo wrapper) with a skopeo push/pull round trip against a bare registry.
import t, { type Test } from 'tap';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './helpers/ports.js';
import { registryFixture, startRegistry } from './helpers/registry.js';
import { makeOciLayout, ociBlobPath, readOciLayout, sha256File, MT_OCI_MANIFEST } from './helpers/oci.js';
import { skopeoCopy } from './helpers/skopeo.js';

const MiB = 1024 * 1024;

async function workDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'portier-harness-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

t.test('freePort returns a bindable loopback port', async (t) => {
  const port = await freePort();
  t.ok(Number.isInteger(port) && port > 0 && port < 65536, `port ${port}`);
});

t.test('skopeo round trip oci: -> registry -> oci: keeps every digest', async (t) => {
  const reg = await registryFixture(t);
  const work = await workDir(t);
  const src = await makeOciLayout(join(work, 'src'), { layers: [1 * MiB, 2 * MiB, 3 * MiB] });

  // The hand-written layout is self-consistent.
  t.equal(src.layerDigests.length, 3);
  t.same(src.layerSizes, [1 * MiB, 2 * MiB, 3 * MiB]);
  for (const d of [src.manifestDigest, src.configDigest, ...src.layerDigests]) {
    t.equal(await sha256File(ociBlobPath(src.dir, d)), d, `blob ${d} hashes to its name`);
  }
  t.same(await readOciLayout(src.dir, 'latest'), src, 'readOciLayout reads back what makeOciLayout wrote');

  const ref = `docker://127.0.0.1:${reg.port}/harness/test:latest`;
  const push = await skopeoCopy(`oci:${src.dir}:latest`, ref, { destTlsVerify: false });
  t.comment(`push: skopeo ${push.args.join(' ')} (${push.ms} ms)`);

  // Registry side: the manifest is stored byte-for-byte (same digest, still OCI).
  const res = await fetch(`${reg.url}/v2/harness/test/manifests/latest`, { headers: { accept: MT_OCI_MANIFEST } });
  await res.arrayBuffer();
  t.equal(res.status, 200);
  t.equal(res.headers.get('docker-content-digest'), src.manifestDigest, 'registry serves the pushed manifest digest');
  t.equal(res.headers.get('content-type'), MT_OCI_MANIFEST);

  const dst = join(work, 'dst');
  const pull = await skopeoCopy(ref, `oci:${dst}:latest`, { srcTlsVerify: false });
  t.comment(`pull: skopeo ${pull.args.join(' ')} (${pull.ms} ms)`);

  const back = await readOciLayout(dst, 'latest');
  t.equal(back.manifestDigest, src.manifestDigest, 'manifest digest');
  t.equal(back.configDigest, src.configDigest, 'config digest');
  t.same(back.layerDigests, src.layerDigests, 'layer digests');
  t.same(back.layerSizes, src.layerSizes, 'layer sizes');
  for (const d of [back.configDigest, ...back.layerDigests]) {
    t.equal(await sha256File(ociBlobPath(dst, d)), d, `pulled blob ${d} content matches`);
  }

  t.same(await reg.uploadsOpen('harness/test'), [], 'no upload sessions left open');
  t.same(await reg.uploadsOpen('no/such/repo'), [], 'missing repo -> []');
  t.match(await reg.log(), /PUT \/v2\/harness\/test\/manifests\/latest/, 'access log captured in logFile');
});

t.test('registry handle: storageDir survives restart, deleteEnabled, stop cleans up', async (t) => {
  const work = await workDir(t);
  const storageDir = join(work, 'storage');
  const img = await makeOciLayout(join(work, 'img'), { layers: [64 * 1024], tag: 'v1' });

  const first = await startRegistry({ storageDir, secret: 'harness-secret' });
  t.teardown(() => first.stop());
  await skopeoCopy(`oci:${img.dir}:v1`, `docker://127.0.0.1:${first.port}/keep/me:v1`, { destTlsVerify: false });
  const configDir = join(first.configFile, '..');
  await first.stop();
  t.ok(first.child.exitCode !== null || first.child.signalCode !== null, 'process exited');
  t.notOk(await exists(configDir), 'config/log dir removed');
  t.ok(await exists(storageDir), 'caller-owned storageDir kept');
  await first.stop(); // idempotent

  const second = await startRegistry({ storageDir, secret: 'harness-secret', deleteEnabled: false });
  t.teardown(() => second.stop());
  const head = await fetch(`${second.url}/v2/keep/me/manifests/v1`, { method: 'HEAD', headers: { accept: MT_OCI_MANIFEST } });
  t.equal(head.status, 200, 'image still there after restart on the same storage');
  t.equal(head.headers.get('docker-content-digest'), img.manifestDigest);
  const del = await fetch(`${second.url}/v2/keep/me/manifests/${img.manifestDigest}`, { method: 'DELETE' });
  await del.arrayBuffer();
  t.equal(del.status, 405, 'DELETE refused when deleteEnabled is false');

  second.kill('SIGKILL');
  const ex = await second.exited();
  t.equal(ex.signal, 'SIGKILL', 'kill() delivers the signal');
  await second.stop(); // still cleans up after a kill
});
