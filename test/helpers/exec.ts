// Promise wrapper around child_process.spawn for test helpers: collects output, enforces a timeout, never rejects on a non-zero exit.
import { spawn } from 'node:child_process';

export interface RunOptions {
  /** Working directory for the child. */
  cwd?: string;
  /** Full environment for the child (defaults to process.env). */
  env?: NodeJS.ProcessEnv;
  /** Data written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  /** Kill the child with SIGKILL after this many ms (default 120 000). */
  timeoutMs?: number;
}

export interface RunResult {
  /** Exit code, or null when the child was ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall-clock duration in milliseconds. */
  ms: number;
  /** True when the child was killed because timeoutMs elapsed. */
  timedOut: boolean;
}

/**
 * Runs `cmd args` without a shell. Resolves with code/stdout/stderr whatever
 * the exit status; rejects only when the process cannot be started (ENOENT…).
 */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const started = performance.now();
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: Math.round(performance.now() - started),
        timedOut,
      });
    });
    // Ignore EPIPE when the child exits without reading its stdin.
    child.stdin.on('error', () => undefined);
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** Like run(), but rejects with the command line and stderr when the exit code is not 0. */
export async function runOk(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${opts.timeoutMs ?? 120_000} ms` : `exited with ${r.code ?? r.signal}`;
    throw new Error(`${cmd} ${args.join(' ')} ${why}\n--- stderr ---\n${r.stderr}\n--- stdout ---\n${r.stdout}`);
  }
  return r;
}
