// Runs `skopeo copy` (1.9.3) against real registries/gateways with explicit TLS, cert-dir and credential flags.
import { run } from './exec.js';

export const SKOPEO_BIN = process.env.PORTIER_SKOPEO_BIN ?? 'skopeo';

/** "user:password" or an object. */
export type SkopeoCreds = string | { username: string; password: string };

export interface SkopeoCopyOptions {
  srcCreds?: SkopeoCreds;
  destCreds?: SkopeoCreds;
  /** Directory with *.crt (extra CA roots) and optionally client.cert/client.key. */
  srcCertDir?: string;
  destCertDir?: string;
  /** false is required for plain-http registries (skopeo otherwise insists on HTTPS). Unset = skopeo default (true). */
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  /**
   * Pass --preserve-digests (default true): without it skopeo gzips uncompressed layers when
   * pushing to a registry and rewrites the manifest, so digests change.
   */
  preserveDigests?: boolean;
  /** --format oci|v2s2|v2s1 */
  format?: 'oci' | 'v2s2' | 'v2s1';
  /** Appended before src/dest verbatim. */
  extraArgs?: string[];
  /** Resolve instead of throwing when skopeo exits non-zero. */
  allowFailure?: boolean;
  /** Kill skopeo after this many ms (default 120 000). */
  timeoutMs?: number;
}

export interface SkopeoResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** The full argument list (credentials masked), handy in assertion messages. */
  args: string[];
}

function credArg(c: SkopeoCreds): string {
  return typeof c === 'string' ? c : `${c.username}:${c.password}`;
}

/** Builds the skopeo argv for copy; exported so tests can log/inspect it. */
export function skopeoCopyArgs(src: string, dest: string, opts: SkopeoCopyOptions = {}): string[] {
  // --insecure-policy: do not depend on /etc/containers/policy.json being present or permissive.
  const args = ['--insecure-policy', 'copy'];
  if (opts.preserveDigests ?? true) args.push('--preserve-digests');
  if (opts.format !== undefined) args.push('--format', opts.format);
  if (opts.srcTlsVerify !== undefined) args.push(`--src-tls-verify=${opts.srcTlsVerify}`);
  if (opts.destTlsVerify !== undefined) args.push(`--dest-tls-verify=${opts.destTlsVerify}`);
  if (opts.srcCertDir !== undefined) args.push('--src-cert-dir', opts.srcCertDir);
  if (opts.destCertDir !== undefined) args.push('--dest-cert-dir', opts.destCertDir);
  if (opts.srcCreds !== undefined) args.push('--src-creds', credArg(opts.srcCreds));
  if (opts.destCreds !== undefined) args.push('--dest-creds', credArg(opts.destCreds));
  if (opts.extraArgs !== undefined) args.push(...opts.extraArgs);
  args.push(src, dest);
  return args;
}

function masked(args: string[]): string[] {
  return args.map((a, i) => (args[i - 1] === '--src-creds' || args[i - 1] === '--dest-creds' ? a.replace(/:.*/, ':***') : a));
}

/**
 * `skopeo copy src dest`, e.g. src "oci:/tmp/x:latest", dest "docker://127.0.0.1:5000/a/b:latest".
 * Throws with stderr on a non-zero exit unless opts.allowFailure.
 */
export async function skopeoCopy(src: string, dest: string, opts: SkopeoCopyOptions = {}): Promise<SkopeoResult> {
  const args = skopeoCopyArgs(src, dest, opts);
  const r = await run(SKOPEO_BIN, args, { timeoutMs: opts.timeoutMs ?? 120_000 });
  const result: SkopeoResult = { code: r.code, stdout: r.stdout, stderr: r.stderr, ms: r.ms, args: masked(args) };
  if (r.code !== 0 && opts.allowFailure !== true) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 120_000} ms` : `exited with ${r.code ?? r.signal}`;
    throw new Error(`skopeo ${result.args.join(' ')} ${why} after ${r.ms} ms\n${r.stderr}`);
  }
  return result;
}
