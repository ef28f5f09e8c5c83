// Starts a real Debian `docker-registry` (distribution 2.8.2) on 127.0.0.1 with filesystem storage in temp dirs, and guarantees it is stopped.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { freePort } from './ports.js';

export const REGISTRY_BIN = process.env.PORTIER_REGISTRY_BIN ?? '/usr/bin/docker-registry';

export interface RegistryOptions {
  /** Use this storage root (kept on stop) instead of a fresh temp dir (removed on stop). */
  storageDir?: string;
  /** http.secret (signs upload state); random if omitted. Use the same one to restart on the same storage. */
  secret?: string;
  /** storage.delete.enabled, default true. */
  deleteEnabled?: boolean;
  /** Listen on this port (e.g. to restart a registry where a gateway expects it); a free one by default. */
  port?: number;
  /** Max time to wait for GET /v2/ == 200, default 10 000 ms. */
  readyTimeoutMs?: number;
  /** Configure registry:2's own token auth (auth.token); then GET /v2/ answering 401 means ready. */
  tokenAuth?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  /** Serve HTTPS (http.tls) with this certificate; with clientCas, clients must present a certificate from one of them. */
  tls?: RegistryTls;
  /** Configure registry:2's own basic auth (auth.htpasswd, bcrypt entries); then GET /v2/ answering 401 means ready. */
  htpasswd?: string;
  /** More top-level YAML for config.yml (e.g. "catalog:\n  maxentries: 2\n"), appended last. */
  extraConfig?: string;
}

export interface RegistryTls {
  /** PEM files: the server certificate (for 127.0.0.1) and its key. */
  certificate: string;
  key: string;
  /** CA files whose client certificates are required (http.tls.clientcas). */
  clientCas?: string[];
  /** For the readiness probe: the CA that signed `certificate`, and a client certificate when clientCas is set. */
  ca: string;
  clientCert?: string;
  clientKey?: string;
}

export interface RegistryHandle {
  /** Base URL without trailing slash, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  /** Filesystem storage root (storage.filesystem.rootdirectory). */
  storageDir: string;
  /** Combined stdout+stderr of the registry process. */
  logFile: string;
  configFile: string;
  child: ChildProcess;
  /** SIGTERM, SIGKILL after 3 s, wait for exit, remove temp dirs. Idempotent. */
  stop(): Promise<void>;
  /** Send a signal without cleaning up (crash simulation); stop() still works afterwards. */
  kill(signal?: NodeJS.Signals): void;
  /** Resolves when the process has exited. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Names of in-progress upload sessions of `repo` (e.g. "harness/test"): dirs holding `startedat` or `data`; [] when none. */
  uploadsOpen(repo: string): Promise<string[]>;
  /** Current content of logFile. */
  log(): Promise<string>;
}

const live = new Set<{ child: ChildProcess; tempDirs: string[] }>();
let exitHookInstalled = false;

/** Last resort: never leave registries behind when the test process exits without teardown. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const entry of live) {
      if (entry.child.exitCode === null && entry.child.signalCode === null) entry.child.kill('SIGKILL');
      if (process.env.PORTIER_KEEP_TMP !== '1') {
        for (const d of entry.tempDirs) rmSync(d, { recursive: true, force: true });
      }
    }
  });
}

function configYaml(port: number, storageDir: string, secret: string, deleteEnabled: boolean): string {
  // JSON string literals are valid YAML scalars, so paths and secrets need no further quoting.
  return [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: text',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(storageDir)}`,
    '  delete:',
    `    enabled: ${deleteEnabled ? 'true' : 'false'}`,
    '  maintenance:',
    '    uploadpurging:',
    // Tests inspect _uploads themselves; the background purger would make that racy.
    // distribution 2.8.2 panics ("uploadpurging config key must contain additional keys") if only `enabled` is given.
    '      enabled: false',
    '      age: 168h',
    '      interval: 24h',
    '      dryrun: false',
    'http:',
    `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`,
    `  secret: ${JSON.stringify(secret)}`,
    '  headers:',
    '    X-Content-Type-Options: [nosniff]',
    '',
  ].join('\n');
}

/** GET url, resolve with the status code (body discarded). */
function getStatus(url: string, timeoutMs: number, tls?: RegistryTls): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const send = tls ? httpsRequest : request;
    const credentials = tls
      ? { ca: readFileSync(tls.ca), ...(tls.clientCert && tls.clientKey ? { cert: readFileSync(tls.clientCert), key: readFileSync(tls.clientKey) } : {}) }
      : {};
    const req = send(url, { method: 'GET', timeout: timeoutMs, agent: false, ...credentials }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function tail(file: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Environment without REGISTRY_* overrides, which would silently change the config we write. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v;
  return env;
}

async function startOnce(opts: RegistryOptions): Promise<RegistryHandle> {
  installExitHook();
  const configDir = await mkdtemp(join(tmpdir(), 'portier-registry-'));
  const tempDirs = [configDir];
  let storageDir = opts.storageDir;
  if (storageDir === undefined) {
    storageDir = await mkdtemp(join(tmpdir(), 'portier-registry-storage-'));
    tempDirs.push(storageDir);
  }
  const port = opts.port ?? (await freePort());
  const secret = opts.secret ?? `portier-test-${Math.random().toString(36).slice(2)}`;
  const configFile = join(configDir, 'config.yml');
  const logFile = join(configDir, 'registry.log');
  let configText = configYaml(port, storageDir, secret, opts.deleteEnabled ?? true);
  if (opts.tls) {
    const { certificate, key, clientCas } = opts.tls;
    configText += ['  tls:', `    certificate: ${JSON.stringify(certificate)}`, `    key: ${JSON.stringify(key)}`,
      ...(clientCas && clientCas.length > 0 ? ['    clientcas:', ...clientCas.map((ca) => `      - ${JSON.stringify(ca)}`)] : []), ''].join('\n');
  }
  if (opts.tokenAuth) {
    const { realm, service, issuer, rootcertbundle } = opts.tokenAuth;
    configText += ['', 'auth:', '  token:', `    realm: ${JSON.stringify(realm)}`, `    service: ${JSON.stringify(service)}`,
      `    issuer: ${JSON.stringify(issuer)}`, `    rootcertbundle: ${JSON.stringify(rootcertbundle)}`, ''].join('\n');
  }
  if (opts.htpasswd) {
    configText += ['', 'auth:', '  htpasswd:', '    realm: portier-test', `    path: ${JSON.stringify(opts.htpasswd)}`, ''].join('\n');
  }
  if (opts.extraConfig) configText += `\n${opts.extraConfig}\n`;
  await writeFile(configFile, configText);

  // The child writes straight into the log file, so nothing is lost if the test process stalls.
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(REGISTRY_BIN, ['serve', configFile], {
      cwd: configDir,
      env: cleanEnv(),
      stdio: ['ignore', logFd, logFd],
    });
  } finally {
    closeSync(logFd);
  }
  const entry = { child, tempDirs };
  live.add(entry);

  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let spawnError: Error | undefined;
  child.once('error', (e) => {
    spawnError = e;
  });
  let exitedFlag = false;
  void exitPromise.then(() => {
    exitedFlag = true;
  });

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exitedFlag && spawnError === undefined) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => {
          if (!exitedFlag) child.kill('SIGKILL');
        }, 3000);
        await exitPromise;
        clearTimeout(timer);
      }
      live.delete(entry);
      if (process.env.PORTIER_KEEP_TMP !== '1') {
        for (const d of tempDirs) await rm(d, { recursive: true, force: true });
      }
    })();
    return stopping;
  };

  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const handle: RegistryHandle = {
    url,
    port,
    storageDir,
    logFile,
    configFile,
    child,
    stop,
    kill: (signal: NodeJS.Signals = 'SIGKILL') => {
      if (!exitedFlag) child.kill(signal);
    },
    exited: () => exitPromise,
    uploadsOpen: async (repo: string) => {
      const dir = join(storageDir, 'docker/registry/v2/repositories', repo, '_uploads');
      try {
        const ents = await readdir(dir, { withFileTypes: true });
        const open: string[] = [];
        for (const e of ents) {
          if (!e.isDirectory()) continue;
          // A session the registry can still resume has `startedat` (and `data` once bytes arrived).
          // registry 2.8.2 leaves `<uuid>/hashstates/sha256/0` behind after every DELETE of an upload
          // (its Close after Cancel re-saves the hash state): inert, never resumable, not an open upload.
          const files = await readdir(join(dir, e.name)).catch(() => [] as string[]);
          if (files.includes('startedat') || files.includes('data')) open.push(e.name);
        }
        return open.sort();
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw e;
      }
    },
    log: () => readFile(logFile, 'utf8'),
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 10_000);
  let lastErr = 'not polled yet';
  for (;;) {
    if (spawnError !== undefined) {
      await stop();
      throw new Error(`docker-registry could not be started (${REGISTRY_BIN}): ${spawnError.message}`);
    }
    if (exitedFlag) {
      const log = await tail(logFile);
      const { code, signal } = await exitPromise;
      await stop();
      const err = new Error(`docker-registry exited during startup (code ${code}, signal ${signal})\n${log}`);
      (err as Error & { addrInUse?: boolean }).addrInUse = /address already in use/.test(log);
      throw err;
    }
    try {
      const status = await getStatus(`${url}/v2/`, 1000, opts.tls);
      if (status === 200 || ((opts.tokenAuth || opts.htpasswd) && status === 401)) return handle;
      lastErr = `GET /v2/ returned ${status}`;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      const log = await tail(logFile);
      await stop();
      throw new Error(`docker-registry on ${url} not ready within ${opts.readyTimeoutMs ?? 10_000} ms (${lastErr})\n${log}`);
    }
    await sleep(50);
  }
}

/** Starts a registry and waits until GET /v2/ returns 200. Retries with a new port if the picked one was taken meanwhile. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      if (attempt < 3 && opts.port === undefined && (e as Error & { addrInUse?: boolean }).addrInUse === true) continue;
      throw e;
    }
  }
}

/** Starts a registry bound to the test's lifetime: stopped in t.teardown even when the test fails. */
export async function registryFixture(t: Test, opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const reg = await startRegistry(opts);
  t.teardown(async () => {
    if (!t.passing()) {
      // Log dir is about to be removed; surface the tail for debugging (set PORTIER_KEEP_TMP=1 to keep it).
      console.error(`--- docker-registry ${reg.url} log tail ---\n${await tail(reg.logFile, 60)}`);
    }
    await reg.stop();
  });
  return reg;
}
